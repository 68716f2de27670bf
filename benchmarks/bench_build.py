"""What the configuration layer costs on top of Hydra, measured in one process.

Run: ``python benchmarks/bench_build.py``

* `build_logger` (compose, validate every key, instantiate, fire INIT) against bare Hydra:
  ``initialize_config_module`` + ``compose`` + ``instantiate`` of the same config.
* Cold start of ``composer-cfg --help`` against ``python -c "import hydra"``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OVERRIDES = ["run_name=bench", "logger.destinations.file.overwrite=true",
             "logger.destinations.file.capture_stdout=false", "logger.destinations.file.capture_stderr=false"]


def bare_hydra() -> None:
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from composer_cfg import State

    with initialize_config_module("composer_cfg.conf", version_base="1.3"):
        cfg = compose("config", overrides=OVERRIDES)
    node = OmegaConf.masked_copy(cfg.logger, [key for key in cfg.logger if key != "allowed_modules"])  # build_logger's key
    instantiate(node, State("bench"), _convert_="all").close()


def composer_cfg_build() -> None:
    from composer_cfg import build_logger

    build_logger(overrides=OVERRIDES).close()


def best_ms(function, repeat: int) -> float:
    function()  # warm: imports and Hydra's caches
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings) * 1e3


def cold_start_ms(command: list[str], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        timings.append(time.perf_counter() - start)
    return min(timings) * 1e3


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        rows = {}
        for _ in range(3):  # interleave the two, keep each one's best
            for name, function in (("bare Hydra compose + instantiate", bare_hydra),
                                   ("build_logger (compose, validate, instantiate, INIT)", composer_cfg_build)):
                rows[name] = min(rows.get(name, float("inf")), best_ms(function, 10))
        command = str(Path(sys.executable).parent / "composer-cfg")
        rows['python -c "import hydra" (cold process)'] = cold_start_ms([sys.executable, "-c", "import hydra"], 7)
        rows["composer-cfg --help (cold process)"] = cold_start_ms([command, "--help"], 7)
    width = max(map(len, rows))
    for name, millis in rows.items():
        print(f"{name:<{width}}  {millis:8.1f} ms")
    names = list(rows)
    print(f"\nbuild_logger / bare Hydra:            {rows[names[1]] / rows[names[0]]:.2f}x")
    print(f"composer-cfg --help / import hydra:    {rows[names[3]] / rows[names[2]]:.2f}x")


if __name__ == "__main__":
    main()
