"""TensorBoard shows images, tables and histograms as its own dashboards read them: each logged
through the Logger (or replayed by composer-cfg-sync), read back from the event file with
TensorBoard's reader, pixels decoded from the PNGs."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np

from composer_cfg import Logger, State, TensorboardLogger, TrainingLoop, build_logger
from composer_cfg.run.sync import sync
from conftest import needs

torch = needs("torch")
Image = needs("PIL.Image")
ea = needs("tensorboard.backend.event_processing.event_accumulator")
tensor_util = needs("tensorboard.util.tensor_util")

RNG = np.random.default_rng(7)
BATCH = RNG.random((2, 3, 4, 5))  # NCHW floats in [0, 1]: two 4x5 RGB images
GRAY = torch.tensor(RNG.integers(0, 256, (6, 7)), dtype=torch.uint8)  # HW
RGBA = RNG.integers(0, 256, (2, 3, 2, 4), dtype=np.uint8)  # NHWC, channels_last=True
CLASSES = np.array([[[0, 1], [2, 3], [-1, 1]], [[3, 3], [0, 0], [1, 2]]])  # N x H x W class ids
VOC = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), -1: (224, 224, 192)}  # PASCAL VOC's colours
VALUES = np.array([0.0, 1.0, 1.5, 2.0, 2.5, 4.0])


def read(directory: str | Path) -> ea.EventAccumulator:
    accumulator = ea.EventAccumulator(str(directory), size_guidance={ea.IMAGES: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0,
                                                                     ea.SCALARS: 0})
    return accumulator.Reload()


def pixels(image: ea.ImageEvent) -> np.ndarray:
    """The PNG of an image event, decoded, as H x W x C (C 1 for grayscale)."""
    decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    assert decoded.shape[:2] == (image.height, image.width)
    return decoded[:, :, None] if decoded.ndim == 2 else decoded


def text(event: ea.TensorEvent) -> str:
    (content,) = tensor_util.make_ndarray(event.tensor_proto)
    return content.decode()


def shown(directory: str | Path) -> dict:
    """Every image, histogram and text of the event files: tag -> [(step, wall time, content)]."""
    events = read(directory)
    tags = events.Tags()
    return {
        **{tag: [(i.step, i.wall_time, pixels(i).tolist()) for i in events.Images(tag)] for tag in tags["images"]},
        **{tag: [(h.step, h.wall_time, h.histogram_value) for h in events.Histograms(tag)] for tag in tags["histograms"]},
        **{tag: [(t.step, t.wall_time, text(t)) for t in events.Tensors(tag)] for tag in tags["tensors"]},
    }


def as_tensorboard_shows(markdown: str) -> str:
    """The HTML TensorBoard's text dashboard makes of `markdown`."""
    with warnings.catch_warnings():  # its vendored html5lib warns as it is imported
        warnings.simplefilter("ignore", DeprecationWarning)
        from tensorboard.plugin_util import markdown_to_safe_html
    return markdown_to_safe_html(markdown)


def log_media(logger: Logger, step: int | None = None) -> None:
    logger.log_images(BATCH, name="batch", step=step)
    logger.log_images(GRAY, name="gray", step=step)
    logger.log_images(RGBA, name="segmented", channels_last=True, step=step,
                      masks={"prediction": CLASSES, "truth": CLASSES == 1}, mask_class_labels={1: "cat"})
    logger.log_table(["prompt", "score", "note"], [["a|b", math.nan, None], ["x\\|y", 0.25, "two\nlines"]],
                     name="generations", step=step)
    logger.log_histogram("weights", torch.tensor(VALUES), step=step, bins=4)


def test_images_tables_and_histograms_read_back_with_their_tags_steps_pixels_counts_and_text():
    with Logger(State("run"), TensorboardLogger()) as logger:
        logger.log_metrics({"loss": 0.5}, step=3)
        log_media(logger, step=3)
    assert logger.report()["TensorboardLogger"].get("media_not_shown") is None
    events = read("run/tensorboard")
    assert sorted(events.Tags()["images"]) == [
        "batch/0", "batch/1", "gray/0",
        "segmented/0", "segmented/0/mask/prediction", "segmented/0/mask/truth",
        "segmented/1", "segmented/1/mask/prediction", "segmented/1/mask/truth"]
    assert events.Tags()["histograms"] == ["weights"] and events.Tags()["tensors"] == ["generations/text_summary"]
    images = {tag: events.Images(tag) for tag in events.Tags()["images"]}
    assert {tag: [(i.step, i.width, i.height) for i in shown] for tag, shown in images.items()} == {
        **{f"batch/{n}": [(3, 5, 4)] for n in (0, 1)}, "gray/0": [(3, 7, 6)],
        **{f"segmented/{n}{mask}": [(3, 2, 3)] for n in (0, 1) for mask in ("", "/mask/prediction", "/mask/truth")}}
    for n in (0, 1):
        assert pixels(images[f"batch/{n}"][0]).tolist() == np.rint(BATCH[n].transpose(1, 2, 0) * 255).tolist()
        assert pixels(images[f"segmented/{n}"][0]).tolist() == RGBA[n].tolist()  # RGBA kept
        assert pixels(images[f"segmented/{n}/mask/prediction"][0]).tolist() == [
            [list(VOC[c]) for c in row] for row in CLASSES[n].tolist()]
        assert pixels(images[f"segmented/{n}/mask/truth"][0]).tolist() == [
            [list(VOC[int(c == 1)]) for c in row] for row in CLASSES[n].tolist()]
    assert pixels(images["gray/0"][0]).tolist() == GRAY[:, :, None].tolist()  # one channel: a grayscale PNG

    (histogram,) = events.Histograms("weights")
    value = histogram.histogram_value
    assert (histogram.step, value.min, value.max, value.num, value.sum, value.sum_squares) == (
        3, 0.0, 4.0, 6, 11.0, 29.5)
    assert (value.bucket_limit, value.bucket) == ([1.0, 2.0, 3.0, 4.0], [1, 2, 2, 1])  # right edges; bins of 1

    (table,) = events.Tensors("generations/text_summary")
    assert table.step == 3
    assert text(table) == ("| prompt | score | note |\n|---|---|---|\n"
                           "| a\\|b | nan |  |\n"
                           "| x\\\\\\|y | 0.25 | two<br>lines |\n")
    html = as_tensorboard_shows(text(table))
    assert html.count("<tr>") == 3 and html.count("<td>") == 6
    assert "<td>a|b</td>" in html and "<td>x\\|y</td>" in html and "<td>two<br>lines</td>" in html
    assert [(s.step, s.value) for s in events.Scalars("loss")] == [(3, 0.5)]


def test_a_composer_callback_logging_without_a_step_shows_its_media_at_the_batch_of_its_metrics():
    with Logger(State("run"), TensorboardLogger()) as logger:
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for batch in loop.batches(3):
                logger.log_metrics({"loss": float(batch)})  # Composer 0.32's calls, as its callbacks make them
                if batch % 2 == 0:
                    logger.log_images(images=RGBA[:1], name="samples", channels_last=True, masks={"m": CLASSES[:1]})
                    logger.log_table(columns=["batch"], rows=[[batch]], name="table")
                    logger.log_histogram(name="weights", values=VALUES + batch)
    events = read("run/tensorboard")
    assert [s.step for s in events.Scalars("loss")] == [0, 1, 2]
    for tag in ("samples/0", "samples/0/mask/m"):
        assert [i.step for i in events.Images(tag)] == [0, 2]
    assert [(t.step, text(t)) for t in events.Tensors("table/text_summary")] == [
        (0, "| batch |\n|---|\n| 0 |\n"), (2, "| batch |\n|---|\n| 2 |\n")]
    assert [(h.step, h.histogram_value.min, h.histogram_value.num, sum(h.histogram_value.bucket))
            for h in events.Histograms("weights")] == [(0, 0.0, 6, 6), (2, 2.0, 6, 6)]


def test_a_sync_of_a_json_lines_run_shows_the_same_media_as_the_run_showed_live():
    with build_logger(overrides=["run_name=run", "logger/destinations=[jsonl,tensorboard]"]) as logger:
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for batch in loop.batches(2):
                logger.log_metrics({"loss": float(batch)})
                log_media(logger)
    live = shown("run/tensorboard")
    assert len(live) == 11 and all([step for step, _, _ in points] == [0, 1] for points in live.values())
    (synced,) = sync("run", ["tensorboard"], ["logger.destinations.tensorboard.log_dir=synced"])
    assert (synced.sent, synced.refused) == (2 * 6, [])  # per batch: one data call, five media calls
    assert shown("synced") == live  # tags, steps, wall times, pixels, histograms and text alike
    assert [s.sent for s in sync("run", ["tensorboard"], ["logger.destinations.tensorboard.log_dir=synced"])] == [0]
    assert shown("synced") == live


def test_a_later_sync_sends_the_images_and_tables_of_a_name_logged_again_at_the_step_it_reached():
    from composer_cfg import JSONLinesLogger, Timestamp

    logger = Logger(State("run", timestamp=Timestamp(batch=5)), {"jsonl": JSONLinesLogger(flush_interval=1)})
    synced = ["logger.destinations.tensorboard.log_dir=synced"]
    logger.log_images(np.zeros((2, 2), np.uint8), name="Images/Eval")  # an evaluation's first batch
    logger.log_table(["x"], [[1]], name="gen")
    logger.flush()
    assert [s.sent for s in sync("run", ["tensorboard"], synced)] == [2]
    logger.log_images(np.full((2, 2), 255, np.uint8), name="Images/Eval")  # its second batch: the same step
    logger.log_table(["x"], [[2]], name="gen")
    logger.close()
    assert [s.sent for s in sync("run", ["tensorboard"], synced)] == [2]
    assert [s.sent for s in sync("run", ["tensorboard"], synced)] == [0]
    events = read("synced")
    assert [int(pixels(image).max()) for image in events.Images("Images/Eval/0")] == [0, 255]
    assert len(events.Tensors("gen/text_summary")) == 2


def test_a_later_sync_sends_what_was_logged_after_a_call_with_a_higher_explicit_step():
    from composer_cfg import JSONLinesLogger, Timestamp

    logger = Logger(State("run"), {"jsonl": JSONLinesLogger(flush_interval=1)})
    synced = ["logger.destinations.tensorboard.log_dir=synced"]

    def batches(steps):
        for batch in steps:
            logger.state.timestamp = Timestamp(batch=batch)
            logger.log_metrics({"loss": float(batch)})
            if batch == 2:
                logger.log_images(np.zeros((2, 2), np.uint8), name="eval", step=1000)  # a step of its own kind

    batches(range(5))
    logger.flush()
    assert [s.sent for s in sync("run", ["tensorboard"], synced)] == [6]
    batches(range(5, 10))
    logger.close()
    assert [s.sent for s in sync("run", ["tensorboard"], synced)] == [5]
    assert [event.step for event in read("synced").Scalars("loss")] == list(range(10))
