"""Images, tables and histograms: checked at the call, recorded once in JSON Lines with their files,
kept in memory, summed up in the text log, and given to Composer-style destinations of 0.8 and 0.32."""

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from composer_cfg import FileLogger, InMemoryLogger, JSONLinesLogger, Logger, LoggerDestination, MediaError, State
from composer_cfg.core.media import Histogram
from composer_cfg.run.media_files import load_media
from composer_cfg.run.records import read_records
from conftest import needs

torch = needs("torch")

RECORDS = Path("run/metrics-rank0.jsonl")


def logged(**destinations):
    return Logger(State("run"), {"jsonl": JSONLinesLogger(), **destinations})


def media_records():
    return [record for record in read_records(RECORDS) if "media" in record]


def test_log_metrics_records_its_step_as_the_batch_and_defaults_to_the_states():
    memory = InMemoryLogger()
    with logged(memory=memory) as logger:
        logger.state.timestamp = logger.state.timestamp.copy(batch=4)
        logger.log_metrics({"loss": 0.5})
        logger.log_metrics({"loss": 0.25}, step=10)
        with pytest.raises(ValueError, match=r"step must be a whole number of batches, 0 or more, got -1"):
            logger.log_metrics({"loss": 0.0}, step=-1)
    assert [(r["level"], r["batch"], r["data"]) for r in read_records(RECORDS)] == [
        ("BATCH", 4, {"loss": 0.5}), ("BATCH", 10, {"loss": 0.25})]
    assert [(t.batch.value, v) for t, _, v in memory.data["loss"]] == [(4, 0.5), (10, 0.25)]


def test_each_kind_is_one_record_whose_files_read_back_as_what_was_logged():
    pixels = np.linspace(0, 1, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # NCHW floats in [0, 1]
    mask = np.arange(2 * 4 * 5).reshape(2, 4, 5) % 3
    with logged() as logger:
        logger.log_images(pixels, name="samples", masks={"pred": mask}, mask_class_labels={1: "cat", 2: "dog"}, step=3)
        logger.log_table(["prompt", "score", "note"], [["2+2", 0.5, None], ["a|b", math.nan, "NaN"]], name="gen", step=4)
        logger.log_histogram("weights", np.array([0.0, 1.0, 1.0, 3.0]), step=5, bins=3)
    images, table, histogram = media_records()
    assert [(r["batch"], r["media"]["kind"], r["media"]["name"]) for r in (images, table, histogram)] == [
        (3, "images", "samples"), (4, "table", "gen"), (5, "histogram", "weights")]
    read = load_media(images, RECORDS.parent)
    expected = np.rint(np.moveaxis(pixels, 1, -1) * 255).astype(np.uint8)
    assert [image.pixels.tolist() for image in read.images] == expected.tolist()
    assert [image.masks["pred"].tolist() for image in read.images] == mask.tolist()
    assert read.mask_class_labels == {1: "cat", 2: "dog"}
    read_table = load_media(table, RECORDS.parent)
    assert read_table.columns == ("prompt", "score", "note")
    assert read_table.rows[0] == ("2+2", 0.5, None) and read_table.rows[1][0] == "a|b"
    assert math.isnan(read_table.rows[1][1]) and read_table.rows[1][2] == "NaN"  # the string stays a string
    assert load_media(histogram, RECORDS.parent) == Histogram("weights", (1, 2, 1), (0.0, 1.0, 2.0, 3.0), 4, 0.0, 3.0,
                                                              5.0, 11.0)


def test_files_are_named_by_content_so_the_same_image_logged_again_is_stored_once():
    image = np.full((4, 4, 3), 7, dtype=np.uint8)
    with logged() as logger:
        for step in range(3):
            logger.log_images(image, name="same", channels_last=True, step=step)
        logger.log_images(image + 1, name="other", channels_last=True)
    files = sorted(path.name for path in (RECORDS.parent / "media").iterdir())
    assert len(files) == 2 and all(name.endswith(".npy") for name in files)
    assert len({r["media"]["images"][0]["file"] for r in media_records()}) == 2


def test_the_callers_arrays_and_rows_may_change_the_moment_the_call_returns():
    memory = InMemoryLogger()
    image, weights, rows = np.zeros((2, 2), dtype=np.uint8), torch.zeros(4), [["a", 1]]
    with logged(memory=memory) as logger:
        logger.log_images(image, name="image")
        logger.log_histogram("weights", weights, bins=1)
        logger.log_table(["name", "n"], rows)
        image[:] = 255
        weights += 9
        rows[0][1] = 2
    kept = [item for _, item in memory.media.values()]
    assert kept[0].images[0].pixels.max() == 0 and kept[1].total == 0.0 and kept[2].rows == (("a", 1),)
    assert [load_media(r, RECORDS.parent) for r in media_records()][2].rows == (("a", 1),)
    with pytest.raises(ValueError, match="read-only"):
        kept[0].images[0].pixels[0, 0, 0] = 1


@pytest.mark.parametrize("call, message", [
    (lambda logger: logger.log_images(np.zeros((2, 8, 8)), name="gray"),
     "images 'gray': the image is 8x8 with 2 channel(s) as CHW (channels_last=False); an image has 1, 3 or 4 "
     "channels and at least one pixel"),
    (lambda logger: logger.log_images(np.zeros((1, 2, 3, 4, 5)), name="5d"),
     "images '5d': the image has shape (1, 2, 3, 4, 5); an image is HW or CHW (channels_last=False), a batch NCHW"),
    (lambda logger: logger.log_images(np.full((3, 2, 2), 1.5), name="bright"),
     "images 'bright': the image has values from 1.5 to 1.5; float pixels must be in [0, 1] (or give uint8 pixels "
     "in 0..255)"),
    (lambda logger: logger.log_images(np.zeros((2, 2), dtype=np.int32), name="ints"),
     "images 'ints': the image has pixels of type int32; allowed: uint8, bool, or floats in [0, 1]"),
    (lambda logger: logger.log_images(np.zeros((2, 1, 4, 4)), name="m", masks={"seg": np.zeros((2, 4, 5), int)}),
     "images 'm': mask 'seg' of image 0 has shape (4, 5); it must be its image's height x width, (4, 4)"),
    (lambda logger: logger.log_images(np.zeros((1, 4, 4)), name="m", mask_class_labels={"cat": 1}),
     "images 'm': mask_class_labels maps class ids (integers) to labels (strings), got 'cat': 1"),
    (lambda logger: logger.log_table(["a", "b"], [[1, 2], [3]], name="ragged"),
     "table 'ragged': row 1 has 1 value(s), the table has 2 column(s) (a, b): every row must have one value per column"),
    (lambda logger: logger.log_table(["a"], [[{"x": 1}]], name="nested"),
     "table 'nested': row 0, column 'a' holds dict {'x': 1}; a cell is a number, a string, a boolean or None"),
    (lambda logger: logger.log_histogram("grad", [1.0, math.nan, math.inf]),
     "histogram 'grad': 2 of 3 values are NaN or infinite; a histogram counts finite numbers only (filter them, "
     "or log their count)"),
    (lambda logger: logger.log_histogram("grad", [1.0], bins=0),
     "histogram 'grad': bins must be a whole number from 1 to 10,000, got 0"),
    (lambda logger: logger.log_histogram("", [1.0]), "histogram: name must be a non-empty string, got str ''"),
    (lambda logger: logger.log_histogram("验证" * 22, [1.0]),
     f"histogram: name {'验证' * 22!r} is 132 bytes of UTF-8; a name is printable and at most 128 bytes (trackers "
     f"make file names of it)"),
    (lambda logger: logger.log_histogram("a\nb", [1.0]),
     "histogram: name 'a\\nb' is 3 bytes of UTF-8 with unprintable characters; a name is printable and at most 128 "
     "bytes (trackers make file names of it)"),
    (lambda logger: logger.log_histogram("c", np.array([1 + 2j])),
     "histogram 'c': values must be real numbers (a list, an array or a tensor), got values of type complex128: "
     "ndarray array([1.+2.j])"),
    (lambda logger: logger.log_histogram("big", [1e200, -1e200]),
     "histogram 'big': the values' sum, sum of squares or range is beyond what a float holds (values from -1e+200 to "
     "1e+200); scale them first"),
    (lambda logger: logger.log_histogram("meta", torch.zeros(3, device="meta")),
     "histogram 'meta': a meta tensor has no values to log"),
    (lambda logger: logger.log_images(np.zeros((0, 3, 4, 4)), name="none"),
     "images 'none': no images given (a batch of 0)"),
    (lambda logger: logger.log_images(np.zeros((1, 4, 4)), name="m", masks={0: np.zeros((4, 4), int)}),
     "images 'm': mask: name must be a non-empty string, got int 0"),
])
def test_bad_media_are_one_error_naming_the_item_and_what_is_allowed_and_nothing_is_lost(call, message):
    with logged() as logger:
        logger.log_metrics({"loss": 1.0})
        with pytest.raises(MediaError) as raised:
            call(logger)
        logger.log_metrics({"loss": 2.0})
    assert str(raised.value) == message
    assert [r["data"] for r in read_records(RECORDS)] == [{"loss": 1.0}, {"loss": 2.0}]
    assert not (RECORDS.parent / "media").exists()


def test_images_in_every_layout_become_hwc_bytes():
    memory = InMemoryLogger()
    with Logger(State("run"), memory) as logger:
        logger.log_images(np.ones((5, 6)), name="hw")
        logger.log_images(torch.ones(5, 6, 3, dtype=torch.bfloat16), name="hwc", channels_last=True)
        logger.log_images([np.zeros((4, 2, 3), dtype=bool), np.ones((4, 2, 3), dtype=bool)], name="list")
        logger.log_images(torch.zeros(2, 5, 6, 4), name="nhwc", channels_last=True)
    shapes = {item.name: [(image.pixels.shape, int(image.pixels.max())) for image in item.images]
              for _, item in memory.media.values()}
    assert shapes == {"hw": [((5, 6, 1), 255)], "hwc": [((5, 6, 3), 255)],
                      "list": [((2, 3, 4), 0), ((2, 3, 4), 255)], "nhwc": [((5, 6, 4), 0), ((5, 6, 4), 0)]}


def test_the_text_log_has_one_summary_line_per_item():
    text_log = FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False)
    with Logger(State("run"), text_log) as logger:
        logger.log_images(np.zeros((2, 3, 4, 5)), name="samples", masks={"pred": np.zeros((2, 4, 5), int)}, step=1)
        logger.log_table(["a", "b"], [[1, 2]], name="gen", step=2)
        logger.log_histogram("weights", [1, 2, 4], step=3, bins=4)
    assert Path("run/logs-rank0.txt").read_text().splitlines() == [
        "[images][batch=1]: samples: 2 image(s) 4x5x3, masks pred",
        "[table][batch=2]: gen: 1 row(s) x 2 column(s)",
        "[histogram][batch=3]: weights: 3 value(s) in 4 bin(s) [1, 4]",
    ]


class Composer032Destination(LoggerDestination):
    """Written against Composer 0.32's `LoggerDestination`: no levels, no state where 0.32 has none."""

    def __init__(self):
        self.calls = []

    def log_metrics(self, metrics, step=None):
        self.calls.append(("metrics", metrics, step))

    def log_hyperparameters(self, hyperparameters):
        self.calls.append(("hyperparameters", hyperparameters))

    def log_images(self, images, name="Images", channels_last=False, step=None, masks=None, mask_class_labels=None,
                   use_table=True):
        self.calls.append(("images", name, [image.shape for image in images], channels_last, step,
                           {k: [m.shape for m in v] for k, v in (masks or {}).items()}, mask_class_labels, use_table))

    def log_table(self, columns, rows, name="Table", step=None):
        self.calls.append(("table", columns, rows, name, step))

    def can_upload_files(self):
        return True

    def upload_file(self, state, remote_file_name, file_path, *, overwrite):
        self.calls.append(("upload", remote_file_name, Path(file_path).read_text(), overwrite))


def test_a_destination_written_for_composer_0_32_runs_unchanged(tmp_path):
    destination = Composer032Destination()
    (tmp_path / "notes.txt").write_text("hello")
    with Logger(State("run"), destination) as logger:
        logger.log_hyperparameters({"lr": 0.1})
        logger.log_metrics({"loss": 0.5}, step=2)
        logger.data_batch({"acc": 0.9})
        logger.log_images(np.zeros((2, 1, 3, 3)), name="x", masks={"m": np.zeros((2, 3, 3), int)},
                          mask_class_labels={0: "bg"}, step=5)
        logger.log_table(["a"], [[1]], name="t", step=6)
        assert logger.has_file_upload_destination()
        logger.upload_file("{run_name}/notes.txt", tmp_path / "notes.txt", overwrite=True)
    assert destination.calls == [
        ("hyperparameters", {"lr": 0.1}),
        ("metrics", {"loss": 0.5}, 2),
        ("metrics", {"acc": 0.9}, 0),
        ("images", "x", [(3, 3, 1), (3, 3, 1)], True, 5, {"m": [(3, 3), (3, 3)]}, {0: "bg"}, True),
        ("table", ["a"], [[1]], "t", 6),
        ("upload", "run/notes.txt", "hello", True),
    ]


def test_a_destination_that_can_not_show_a_kind_is_told_once_and_it_is_counted(caplog):
    class DataOnly(LoggerDestination):  # Composer 0.8: data, no media
        def log_data(self, state, log_level, data):
            pass

    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        with Logger(State("run"), {"old": DataOnly(), "memory": InMemoryLogger()}) as logger:
            for _ in range(3):
                logger.log_histogram("w", [1.0])
            logger.log_table(["a"], [[1]])
            report = logger.report()
    said = [message for message in caplog.messages if "can not show" in message]
    assert said == ["destination 'old' can not show histograms; they are left out of it (counted in its report: "
                    "media_not_shown)",
                    "destination 'old' can not show tables; they are left out of it (counted in its report: "
                    "media_not_shown)"]
    assert report["old"]["media_not_shown"] == {"histogram": 3, "table": 1}
    assert "media_not_shown" not in report.get("memory", {})
    assert not logger.has_file_upload_destination()


def test_media_after_close_are_refused_as_any_call():
    logger = Logger(State("run"), InMemoryLogger())
    logger.close()
    with pytest.raises(RuntimeError, match="this Logger is closed: it takes no more data"):
        logger.log_table(["a"], [[1]])


def test_media_in_a_records_file_are_json_lines_readers_can_skip():
    with logged() as logger:
        logger.log_histogram("w", [1.0, 2.0], bins=2)
        logger.log_metrics({"loss": 1.0})
    lines = [json.loads(line) for line in RECORDS.read_text().splitlines()]
    assert [("media" in line, line.get("data")) for line in lines] == [(True, None), (False, {"loss": 1.0})]
    assert [r["data"] for r in read_records(RECORDS)] == [{}, {"loss": 1.0}]
    assert isinstance(load_media(lines[0], RECORDS.parent), Histogram)


def test_an_artifact_store_gets_each_media_file_once_beside_the_records_file(tmp_path):
    from composer_cfg import ObjectStoreLogger

    image = np.full((3, 3), 9, dtype=np.uint8)
    with logged(store=ObjectStoreLogger(str(tmp_path / "store"))) as logger:
        for step in range(2):
            logger.log_images(image, name="same", step=step)
        logger.log_table(["a"], [["x"]])
    stored = sorted(str(path.relative_to(tmp_path / "store")) for path in (tmp_path / "store").rglob("*")
                    if path.is_file())
    local = sorted(f"run/media/{path.name}" for path in (RECORDS.parent / "media").iterdir())
    assert len(local) == 2 and stored == sorted(["run/metrics-rank0.jsonl", *local])
    for name in local:
        assert (tmp_path / "store" / name).read_bytes() == Path(name).read_bytes()


def test_a_resumed_run_shows_each_step_of_its_media_once_in_the_records_and_in_tensorboard():
    from tensorboard.backend.event_processing import event_accumulator as ea

    from composer_cfg import Event, RunStatus, TensorboardLogger, Timestamp

    def attempt(batches, checkpoint_at=None, status=RunStatus.FINISHED):
        logger = Logger(State("run", timestamp=Timestamp(batch=batches[0])),
                        {"jsonl": JSONLinesLogger(), "tb": TensorboardLogger(log_dir="tb")}, resume="auto")
        logger.run_event(Event.INIT)
        for batch in batches:
            logger.state.timestamp = Timestamp(batch=batch)
            if batch == checkpoint_at:
                logger.run_event(Event.BATCH_CHECKPOINT)
            logger.log_histogram("weights", [batch, batch + 1.0], bins=1)
            logger.log_images(np.full((2, 2), batch, dtype=np.uint8), name="sample")
        logger.close(status)

    attempt(range(5), checkpoint_at=3, status=RunStatus.KILLED)  # batches 3 and 4 come after its last checkpoint
    attempt(range(3, 6))
    assert [(r["batch"], r["media"]["kind"]) for r in media_records()] == [
        (batch, kind) for batch in range(6) for kind in ("histogram", "images")]
    events = ea.EventAccumulator("tb", size_guidance={ea.IMAGES: 0, ea.HISTOGRAMS: 0}).Reload()
    assert [event.step for event in events.Histograms("weights")] == list(range(6))
    assert [event.step for event in events.Images("sample/0")] == list(range(6))


def test_the_console_has_one_summary_line_per_item_at_the_levels_it_prints(capsys):
    from composer_cfg import ProgressBarLogger

    for level in ("batch", "epoch"):
        console = ProgressBarLogger(progress_bar=False, log_to_console=True, console_log_level=level, stream="stdout")
        with Logger(State(f"run-{level}"), console) as logger:
            logger.log_histogram("weights", [1, 2, 4], step=3, bins=4)
    assert capsys.readouterr().out.splitlines() == ["[histogram][batch=3]: weights: 3 value(s) in 4 bin(s) [1, 4]"]


def test_memory_keeps_the_last_item_of_each_name_only():
    memory = InMemoryLogger()
    with Logger(State("run"), memory) as logger:
        for step in range(50):
            logger.log_images(np.full((8, 8), step, dtype=np.uint8), name="samples", step=step)
            logger.log_histogram("samples", [step], step=step)
    assert sorted(memory.media) == [("histogram", "samples"), ("images", "samples")]
    timestamp, item = memory.media["images", "samples"]
    assert timestamp.batch.value == 49 and item.images[0].pixels.max() == 49


def test_images_held_for_a_checkpoint_wait_on_disk_past_the_bytes_bound_and_arrive_whole(monkeypatch):
    from composer_cfg import Event, Sink
    from composer_cfg.core.media import KINDS
    from composer_cfg.core.record import Kind
    from composer_cfg.runtime import channel

    class Tracker(Sink):
        channel_kind = "thread"
        holds_until_checkpoint = True
        shows_media = frozenset(KINDS)

        def __init__(self):
            self.shown = []

        def write(self, records):
            self.shown += [(r.timestamp.batch.value, int(r.payload.images[0].pixels.max()))
                           for r in records if r.kind is Kind.MEDIA]

    monkeypatch.setattr(channel, "HELD_BYTES_IN_MEMORY", 10 * 64 * 64 * 3)  # ten images' worth
    tracker = Tracker()
    logger = Logger(State("held"), {"tracker": tracker}, resume="auto")
    logger.run_event(Event.INIT)
    for step in range(35):
        logger.log_images(np.full((64, 64, 3), step, dtype=np.uint8), name="s", channels_last=True, step=step)
    hold = logger._members[0].channel._hold
    assert len(hold._records) < 10 and hold._spilled_count >= 25
    logger.run_event(Event.BATCH_CHECKPOINT)
    logger.close()
    assert tracker.shown == [(step, step) for step in range(35)]


def test_a_media_file_an_earlier_attempt_wrote_is_offered_to_the_artifact_stores_by_the_attempt_that_uses_it(tmp_path):
    from composer_cfg import ObjectStoreLogger, RunStatus

    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    first = Logger(State("run"), {"jsonl": JSONLinesLogger()}, resume="auto")
    first.run_event("init")
    first.log_images(image, name="fixed_sample", step=0)
    first.close(RunStatus.KILLED)
    with Logger(State("run"), {"jsonl": JSONLinesLogger(), "store": ObjectStoreLogger(str(tmp_path / "store"))},
                resume="auto") as second:
        second.run_event("init")
        second.log_images(image, name="fixed_sample", step=0)
    (local,) = (RECORDS.parent / "media").iterdir()
    assert (tmp_path / "store" / "run" / "media" / local.name).read_bytes() == local.read_bytes()


def test_values_too_close_for_bins_of_their_own_are_one_bin():
    memory = InMemoryLogger()
    with Logger(State("run"), memory) as logger:
        logger.log_histogram("steps", [1e16, 1e16 + 4], bins=8)
    histogram = memory.media["histogram", "steps"][1]
    assert (histogram.counts, histogram.edges, histogram.count) == ((2,), (1e16, 1e16 + 4), 2)


def test_the_text_logs_line_names_the_destinations_that_keep_the_item():
    text_log = FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False)
    with logged(text=text_log, memory=InMemoryLogger()) as logger:
        logger.log_table(["a"], [[1]], name="gen", step=2)
    assert Path("run/logs-rank0.txt").read_text().splitlines() == [
        "[table][batch=2]: gen: 1 row(s) x 1 column(s), kept by jsonl, memory"]


def test_a_media_record_naming_a_file_that_is_not_its_payload_is_refused(tmp_path):
    (tmp_path / "secret.json").write_text('{"columns": ["a"], "rows": [["secret"]]}')
    for hostile in ("../secret.json", str(tmp_path / "secret.json"), "media/../../secret.json"):
        with pytest.raises(ValueError, match="not a payload file"):
            load_media({"media": {"kind": "table", "name": "t", "file": hostile}}, tmp_path / "run")


def test_memory_shows_tables_as_composer_0_32s_in_memory_logger_did():
    memory = InMemoryLogger()
    with Logger(State("run"), memory) as logger:
        logger.log_table(["prompt", "score"], [["hi", 0.5], ["yo", None]], name="gen")
    assert json.loads(memory.tables["gen"]) == {"columns": ["prompt", "score"], "data": [["hi", 0.5], ["yo", None]]}
