"""`import composer_cfg` stays light: no torch, no back ends, no Hydra machinery."""

import subprocess
import sys

HEAVY = ["torch", "tensorboard", "tensorboardX", "mlflow", "wandb", "hydra", "omegaconf", "numpy", "fsspec"]


def test_import_does_not_pull_heavy_modules():
    script = (
        "import sys, composer_cfg\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_core_objects_work_without_heavy_modules():
    script = (
        "import sys\n"
        "from composer_cfg import FileLogger, InMemoryLogger, Logger, State, TrainingLoop\n"
        "logger = Logger(State('r'), [InMemoryLogger(), FileLogger(capture_stdout=False, capture_stderr=False)])\n"
        "loop = TrainingLoop(logger)\n"
        "for e in loop.epochs(1):\n"
        "    for b in loop.batches(2):\n"
        "        logger.data_batch({'loss': 0.5})\n"
        "logger.close()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
