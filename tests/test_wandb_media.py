"""WandBLogger shows images, tables and histograms as W&B's own types, offline; what W&B wrote
(the run file, the image and table files under the run's files/media) is read back."""

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composer_cfg import Logger, State, WandBLogger, build_logger
from composer_cfg.core.media import KINDS
from composer_cfg.run.records import read_records
from composer_cfg.run.sync import sync
from wandb_records import offline_run
from conftest import needs

needs("wandb")
Image = needs("PIL.Image")

BATCH = np.linspace(0, 1, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # two RGB 4x5 images, NCHW floats
GRAY = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20  # one grayscale 3x4 image, HW
MASK = np.array([[0, 1, 1, 2]] * 3)
LABELS = {0: "background", 1: "cat", 2: "dog"}
FINE = np.arange(1000.0)  # in 1000 bins: more than W&B's 512


def log_media(logger: Logger) -> None:
    logger.log_metrics({"loss": 0.5}, step=2)
    logger.log_images(BATCH, name="samples", step=2)
    logger.log_images(GRAY, name="segmentation", step=3, masks={"prediction": MASK}, mask_class_labels=LABELS)
    logger.log_table(["prompt", "score", "note"], [["2+2", 4, None], ["hi", 0.5, "kind"]], name="generations",
                     step=3)
    logger.log_histogram("weights", [0.0, 0.25, 0.5, 0.5, 1.0], step=4, bins=2)
    logger.log_histogram("fine", FINE, step=4, bins=1000)


def rgb(image: np.ndarray) -> list:
    return np.rint(image.transpose(1, 2, 0) * 255).astype(np.uint8).tolist()


EXPECTED = {
    2: {"samples": [{"image": ("RGB", rgb(BATCH[0])), "masks": {}}, {"image": ("RGB", rgb(BATCH[1])), "masks": {}}]},
    3: {"segmentation": [{"image": ("L", GRAY.tolist()), "masks": {"prediction": ("L", MASK.tolist())}}],
        "generations": {"columns": ["prompt", "score", "note"], "data": [["2+2", 4, None], ["hi", 0.5, "kind"]]}},
    4: {"weights": {"values": [2, 3], "bins": [0.0, 0.5, 1.0]},
        "fine": {"values": [2] * 500, "bins": np.histogram(FINE, bins=1000)[1][::2].tolist()}},
}


def shown(run: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """step -> name -> what W&B shows of each media value, from the files it wrote."""
    return {step: {name: _content(run["files"], value) for name, value in values.items()}
            for step, values in run["media"].items()}


def _content(files: Path, value: dict[str, Any]) -> Any:
    if value["_type"] == "images/separated":
        masks = value.get("all_masks") or [None] * value["count"]
        return [{"image": _pixels(files / name),
                 "masks": {key: _pixels(files / mask["path"]) for key, mask in (masks_of_one or {}).items()}}
                for name, masks_of_one in zip(value["filenames"], masks)]
    if value["_type"] == "table-file":
        return json.loads((files / value["path"]).read_text())
    assert value["_type"] == "histogram"
    return {"values": value["values"], "bins": value["bins"]}


def _pixels(path: Path) -> tuple[str, list]:
    with Image.open(path) as image:
        return image.mode, np.asarray(image).tolist()


def test_images_masks_tables_and_histograms_are_w_and_b_media_at_their_steps(caplog):
    assert WandBLogger.shows_media == frozenset(KINDS)
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        with Logger(State("wb_media"), WandBLogger()) as logger:
            log_media(logger)
            void = np.full((3, 4), -1)  # an "ignore" class id: outside W&B's 0..255
            for step in (5, 6):
                logger.log_images(GRAY, name="ignored", step=step, masks={"void": void})
    report = logger.report()["WandBLogger"]
    assert (report["delivered"], report["failed"], "media_not_shown" in report) == (8, 0, False)
    run = offline_run(Path("wandb"))
    gray_alone = [{"image": ("L", GRAY.tolist()), "masks": {}}]
    assert shown(run) == {**EXPECTED, 5: {"ignored": gray_alone}, 6: {"ignored": gray_alone}}
    assert run["history"][2]["loss"] == 0.5  # in the same row as the images of step 2
    samples = run["media"][2]["samples"]
    assert (samples["count"], samples["width"], samples["height"]) == (2, 5, 4)
    labels = run["wandb_config"]["mask/class_labels"]["segmentation_wandb_delimeter_prediction"]["value"]
    assert labels == {str(k): v for k, v in LABELS.items()}
    assert [m for m in caplog.messages if "mask" in m] == [
        "WandBLogger: mask 'void' of images 'ignored' is left out: its class ids run from -1 to -1, W&B shows 0 to 255"]


@pytest.mark.slow
def test_a_json_lines_run_synced_to_w_and_b_shows_the_same_media():
    with build_logger(overrides=["run_name=run", "logger/destinations=[jsonl]"]) as logger:
        log_media(logger)
    records = list(read_records(Path("run/metrics-rank0.jsonl")))
    assert [s.sent for s in sync("run", ["wandb"])] == [len(records)]
    run = offline_run(Path("wandb"))
    assert shown(run) == EXPECTED
    assert run["history"][2]["loss"] == 0.5
