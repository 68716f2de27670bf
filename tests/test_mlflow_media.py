"""MLFlowLogger shows images, tables and histograms as MLflow does, logged through the `Logger`
into a real SQLite store (live, and by composer-cfg-sync from a JSON Lines run), read back with
MlflowClient: the images' pixels, the tables' cells, the histograms' counts."""

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composer_cfg import JSONLinesLogger, Logger, MLFlowLogger, State
from composer_cfg.run.sync import sync
from conftest import needs

MlflowClient = needs("mlflow").MlflowClient
Image = needs("PIL.Image")

#: MLflow's file of an image logged with a key (its lossless PNG; a smaller WebP sits beside it).
IMAGE_FILE = re.compile(r"(?P<key>.+)[+%]step[+%](?P<step>\d+)[+%]timestamp[+%](?P<time>\d+)[+%][-0-9a-f]+\.png")
#: The PASCAL VOC colours of class ids 0, 1, 2.
VOC = {0: [0, 0, 0], 1: [128, 0, 0], 2: [0, 128, 0]}
RNG = np.random.default_rng(7)
BATCH = RNG.random((2, 3, 4, 5))  # two 3-channel 4x5 images, NCHW floats in [0, 1)
GRAY = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
RGBA = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
MASK = RNG.integers(0, 3, (4, 5))
ROWS = [["2+2", 0.5, True, None], ["é", float("nan"), False, "x"], ["", 1 / 3, None, 7]]
WEIGHTS = RNG.normal(size=1000)


@pytest.fixture(scope="module")
def store(empty_store, tmp_path_factory) -> str:
    """The URI of one store the module's live runs share (each in a run of its own)."""
    directory = tmp_path_factory.mktemp("store")
    shutil.copyfile(empty_store, directory / "mlflow.db")
    return f"sqlite:///{directory / 'mlflow.db'}"


def log_media(logger: Logger) -> None:
    """Images (a float batch, a grayscale one, an RGBA one with a mask), a table and a histogram,
    with metrics before, between and after them."""
    logger.log_metrics({"loss": 1.0}, step=3)
    logger.log_images(BATCH, name="samples", step=3)
    logger.log_images(GRAY, name="gray", step=4)
    logger.log_metrics({"loss": 0.5}, step=4)
    logger.log_images(RGBA, name="eval/seg", channels_last=True, step=5, masks={"truth": MASK},
                      mask_class_labels={1: "cat", 2: "dog"})
    logger.log_table(["prompt", "score", "flag", "note"], ROWS, name="eval/answers", step=6)
    logger.log_histogram("weights", WEIGHTS, step=6, bins=8)
    logger.log_metrics({"loss": 0.25}, step=6)


def shown(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """What the run shows: (image key, step) -> pixels, and each JSON file of the media by path."""
    root = Path(client.download_artifacts(run_id, "", str(Path(f"shown-{run_id}").absolute())))
    found: dict[str, Any] = {}
    for file in sorted((root / "images").glob("*.png")):
        match = IMAGE_FILE.fullmatch(file.name)
        assert match is not None, file.name
        found[match["key"], int(match["step"])] = np.asarray(Image.open(file)).tolist()
    for folder in ("tables", "histograms", "masks"):
        found.update({str(file.relative_to(root)): json.loads(file.read_text()) for file in (root / folder).rglob("*.json")})
    return found


@pytest.mark.slow
def test_each_kind_of_media_is_shown_at_its_step_and_reads_back_as_logged(store):
    destination = MLFlowLogger(tracking_uri=store)
    with Logger(State("media"), destination) as logger:
        log_media(logger)
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(destination.run_id)
    found = shown(client, destination.run_id)

    samples = np.rint(BATCH * 255).astype(np.uint8).transpose(0, 2, 3, 1)  # NHWC
    table = found.pop("tables/eval/answers/step6.json")
    histogram = found.pop("histograms/weights/step6.json")
    assert found == {
        ("samples.0", 3): samples[0].tolist(),
        ("samples.1", 3): samples[1].tolist(),
        ("gray", 4): GRAY.tolist(),  # one channel: a grayscale PNG
        ("eval_seg-a1afea02", 5): RGBA.tolist(),  # "/" is no key character: the name is changed, and marked
        ("eval_seg-a1afea02.mask.truth", 5): [[VOC[c] for c in row] for row in MASK.tolist()],
        "masks/eval/seg/classes.json": {"1": {"label": "cat", "color": VOC[1]}, "2": {"label": "dog", "color": VOC[2]}},
    }
    assert table["columns"] == ["prompt", "score", "flag", "note"]
    assert table["data"] == [["2+2", 0.5, True, None], ["é", None, False, "x"],  # NaN: null, as MLflow writes it
                             ["", pytest.approx(1 / 3, abs=1e-10), None, 7]]
    counts, edges = np.histogram(WEIGHTS, bins=8)
    assert histogram == {"name": "weights", "step": 6, "counts": counts.tolist(), "edges": pytest.approx(edges.tolist()),
                         "count": 1000, "min": WEIGHTS.min(), "max": WEIGHTS.max(),
                         "sum": pytest.approx(WEIGHTS.sum()), "sum_squares": pytest.approx(np.dot(WEIGHTS, WEIGHTS))}
    # MLflow's UI finds the images and the table by these tags.
    assert run.data.tags["mlflow.loggedImages"] == "True"
    assert {"path": "tables/eval/answers/step6.json", "type": "table"} in json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert [(m.step, m.value) for m in client.get_metric_history(destination.run_id, "loss")] == [(3, 1.0), (4, 0.5),
                                                                                                  (6, 0.25)]


def test_an_item_mlflow_can_not_take_is_a_value_error_naming_it_and_the_rest_is_sent_once(store):
    destination = MLFlowLogger(tracking_uri=store)
    with pytest.raises(ValueError) as raised:
        with Logger(State("refused"), destination) as logger:  # one write: the failed one is written again
            logger.log_table(["a", "b"], [[1, 2]], name="fine", step=1)
            logger.log_images(GRAY, name="gray", step=1)
            logger.log_table(["a", "a"], [[1, 2]], name="twice a", step=1)
            logger.log_metrics({"loss": 0.5}, step=1)
    assert str(raised.value) == ("MLflow did not get the table 'twice a': ValueError: MLflow's tables need distinct "
                                 "column names, got ['a', 'a']")
    client = MlflowClient(tracking_uri=store)
    found = shown(client, destination.run_id)
    assert found == {"tables/fine/step1.json": {"columns": ["a", "b"], "data": [[1, 2]]}, ("gray", 1): GRAY.tolist()}
    assert len(client.list_artifacts(destination.run_id, "images")) == 2  # one PNG, one WebP: not sent twice
    assert [(m.step, m.value) for m in client.get_metric_history(destination.run_id, "loss")] == [(1, 0.5)]


def test_a_json_lines_run_synced_into_a_fresh_store_shows_the_same_media(store, empty_store):
    live = MLFlowLogger(tracking_uri=store)
    with Logger(State("run"), {"jsonl": JSONLinesLogger(), "mlflow": live}) as logger:
        log_media(logger)
    shutil.copyfile(empty_store, "mlflow.db")  # the project's store, where sync sends by default: fresh
    (synced,) = sync("run", ["mlflow"])
    assert synced.refused == []
    fresh = MlflowClient(tracking_uri=f"sqlite:///{Path('mlflow.db').resolve()}")
    (run,) = fresh.search_runs([fresh.get_experiment_by_name("composer_cfg").experiment_id])
    assert shown(fresh, run.info.run_id) == shown(MlflowClient(tracking_uri=store), live.run_id)
    assert [(m.step, m.value) for m in fresh.get_metric_history(run.info.run_id, "loss")] == [(3, 1.0), (4, 0.5),
                                                                                             (6, 0.25)]
