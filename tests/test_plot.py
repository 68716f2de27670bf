import struct
import subprocess
import sys
from pathlib import Path

from composer_cfg import JSONLinesLogger, Logger, State, TrainingLoop
from conftest import ranks

PLOT = [sys.executable, "-m", "composer_cfg.plot"]


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


def test_plot_every_metric_of_a_run_directory(tmp_path):
    two_rank_run()
    out = subprocess.run([*PLOT, "run"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "wrote run/metrics.png (2 panels: loss/train, metrics/epoch/accuracy)\n"
    assert png_size(tmp_path / "run" / "metrics.png") == (800, 500)  # 800 x 250 per panel


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
