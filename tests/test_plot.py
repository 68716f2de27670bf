import struct
import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg import JSONLinesLogger, Logger, State, TrainingLoop
from conftest import ranks, needs

PLOT = [sys.executable, "-m", "composer_cfg.run.plot"]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def two_rank_run() -> None:
    for rank in range(2):
        logger = Logger(State("run", dist_info=ranks(2, rank=rank)), JSONLinesLogger())
        loop = TrainingLoop(logger)
        with logger:
            for epoch in loop.epochs(2):
                for batch in loop.batches(5):
                    logger.data_batch({"loss/train": 1.0 / (batch + 1 + rank), "phase": "train"})
                logger.data_epoch({"metrics/epoch/accuracy": 0.5 + 0.1 * epoch})


@pytest.mark.slow
def test_plot_every_metric_of_a_run_directory(tmp_path):
    two_rank_run()
    out = subprocess.run([*PLOT, "run"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "wrote run/metrics.png (2 panels: loss/train, metrics/epoch/accuracy)\n"
    assert png_size(tmp_path / "run" / "metrics.png") == (800, 500)  # 800 x 250 per panel


@pytest.mark.slow
def test_plot_chosen_metrics_of_one_file(tmp_path):
    two_rank_run()
    out = subprocess.run([*PLOT, "run/metrics-rank1.jsonl", "--metrics", "loss/train", "-o", "loss.png"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert png_size(tmp_path / "loss.png") == (800, 250)


def test_plot_unknown_metric_suggests_the_closest(tmp_path):
    two_rank_run()
    out = subprocess.run([*PLOT, "run", "--metrics", "loss/trian"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        "composer-cfg-plot: error: --metrics: no values logged for 'loss/trian'; did you mean 'loss/train'? "
        "logged: loss/train, metrics/epoch/accuracy"
    )
    assert not (tmp_path / "run" / "metrics.png").exists()


def test_plot_of_nothing_is_a_clear_error(tmp_path):
    out = subprocess.run([*PLOT, "nowhere"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 2 and out.stderr.splitlines()[-1] == "composer-cfg-plot: error: nowhere: no such file or directory"


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "composer-cfg-plot"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: composer-cfg-plot")


def test_a_value_logged_once_is_a_visible_point_and_the_title_clears_the_panels():
    from composer_cfg.run.plot import draw

    series = {"hparams/lr": {0: ([0], [0.1])}, "loss/train": {0: (list(range(100)), [1.0 / (b + 1) for b in range(100)])}}
    figure = draw(series, ["hparams/lr", "loss/train"], title="run")
    figure.canvas.draw()
    once, curve = (axis.lines[0] for axis in figure.axes)
    assert once.get_marker() == "o" and curve.get_marker() == "None"
    (title,) = (text.get_window_extent() for text in figure.texts)  # the suptitle
    assert title.y0 >= figure.axes[0].get_window_extent().y1  # above the first panel, not over it


def test_the_demo_plots_every_metric_logged_over_time(tmp_path):
    needs("matplotlib")
    from composer_cfg import InMemoryLogger
    from composer_cfg.cli.demo import plot_metrics, run_demo

    with Logger(State("demo"), InMemoryLogger()) as logger:
        run_demo(logger, epochs=2, batches_per_epoch=4)
    path = plot_metrics(logger)
    assert path == Path("demo/metrics-rank0.png").absolute()
    # loss/train, metrics/train/accuracy (per batch), epoch, loss/epoch, metrics/epoch/accuracy (per epoch);
    # not the hyperparameters, logged once
    assert png_size(path) == (800, 250 * 5)
