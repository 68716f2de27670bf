"""Lightning's and Composer 0.32's loggers doing `bench_loop.py`'s work, timed by the same loop.

Run by `bench_loop.py --peers-python PYTHON` with a Python that has ``lightning`` and
``mosaicml`` installed (see `benchmarks/README.md`); prints the figures as one JSON line. Each
library gets the five destinations of the benchmark, with its defaults, driven as its trainer
drives them:

* Lightning: `CSVLogger`, `TensorBoardLogger`, `MLFlowLogger`, and a JSON Lines and an in-memory
  logger written here on its `Logger` base (it ships neither). Per step, as its trainer does when
  it logs: tensors made scalars (`convert_tensors_to_scalars`), then each logger's `log_metrics`
  and `save`; `finalize("success")` at the end. (Its trainer logs every 50 steps by default; here
  every step, as the other two do.)
* Composer 0.32: `FileLogger`, `InMemoryLogger`, `TensorboardLogger`, `MLFlowLogger` (system
  metrics off: the others collect none), and a JSON Lines destination written here on its
  `LoggerDestination` base; its `Engine` fires the events on them, `Logger.log_metrics` logs.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loop_timing import BusyStep, SleepStep, floats, measure, zero_d_tensors  # noqa: E402


class TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Composer 0.32 imports torchvision at import time for image utilities no logger uses; the
    only torch here is a CPU build that no torchvision wheel on PyPI matches (their compiled ops
    need CUDA's libraries). This serves empty ``torchvision`` modules instead."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def stand_in(attribute: str) -> Any:
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            return type(attribute, (), {})

        module.__getattr__ = stand_in  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def lightning_loop(uri: str) -> Any:
    from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger
    from lightning.pytorch.loggers.logger import Logger as LightningLogger

    class JsonLines(LightningLogger):
        name, version = "jsonl", 0

        def __init__(self) -> None:
            super().__init__()
            self.file = open("metrics.jsonl", "w")  # noqa: SIM115 - closed at finalize

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.file.write(json.dumps({"step": step, "data": metrics}) + "\n")

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

        def finalize(self, status: str) -> None:
            self.file.close()

    class Memory(LightningLogger):
        name, version = "memory", 0

        def __init__(self) -> None:
            super().__init__()
            self.data: dict[str, list[tuple[int | None, float]]] = {}

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            for key, value in metrics.items():
                self.data.setdefault(key, []).append((step, value))

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    class Loop:
        def __init__(self) -> None:
            self.loggers = [CSVLogger("csv"), JsonLines(), Memory(), TensorBoardLogger("tb"),
                            MLFlowLogger(tracking_uri=uri)]
            self.step = 0

        def start(self) -> None:
            for logger in self.loggers:
                logger.log_hyperparams({"lr": 0.001})  # MLflow: creates the run

        def log(self, metrics: dict[str, Any]) -> None:
            scalars = convert_tensors_to_scalars(metrics)
            for logger in self.loggers:
                logger.log_metrics(scalars, step=self.step)
                logger.save()

        def after(self, step: int, epoch_ends: bool, last: bool) -> None:
            self.step += 1

        def close(self) -> None:
            for logger in self.loggers:
                logger.finalize("success")

    return Loop()


def composer_loop(uri: str) -> Any:
    sys.meta_path.append(TorchvisionStandIn())
    import torch
    from composer.core import Engine, Event, State
    from composer.devices import DeviceCPU
    from composer.loggers import FileLogger, InMemoryLogger, Logger, LoggerDestination, MLFlowLogger, TensorboardLogger

    class JsonLines(LoggerDestination):
        def init(self, state: State, logger: Logger) -> None:
            self.file = open("metrics.jsonl", "w")  # noqa: SIM115 - closed at close
            self.state = state

        def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
            data = {key: value.item() if isinstance(value, torch.Tensor) else value for key, value in metrics.items()}
            self.file.write(json.dumps({"step": step, "data": data}) + "\n")

        def close(self, state: State, logger: Logger) -> None:
            self.file.close()

    class Loop:
        def __init__(self) -> None:
            self.state = State(model=torch.nn.Linear(1, 1), rank_zero_seed=0, run_name="composer", device=DeviceCPU(),
                               max_duration="1000000ba", train_dataloader=[0] * 100, dataloader_len=100)
            self.state.set_dataloader([0] * 100, "train")
            destinations = [FileLogger(capture_stdout=False, capture_stderr=False), JsonLines(), InMemoryLogger(),
                            TensorboardLogger(log_dir="tb"), MLFlowLogger(tracking_uri=uri, log_system_metrics=False)]
            self.state.callbacks.extend(destinations)
            self.logger = Logger(self.state, destinations)
            self.engine = Engine(self.state, self.logger)

        def start(self) -> None:
            for event in (Event.INIT, Event.FIT_START, Event.EPOCH_START, Event.BATCH_START):
                self.engine.run_event(event)

        def log(self, metrics: dict[str, Any]) -> None:
            self.logger.log_metrics(metrics)

        def after(self, step: int, epoch_ends: bool, last: bool) -> None:
            state, engine = self.state, self.engine
            state.timestamp = state.timestamp.to_next_batch(samples=32)
            engine.run_event(Event.BATCH_END)
            if epoch_ends:
                state.timestamp = state.timestamp.to_next_epoch()
                engine.run_event(Event.EPOCH_END)
            if not last:
                if epoch_ends:
                    engine.run_event(Event.EPOCH_START)
                engine.run_event(Event.BATCH_START)

        def close(self) -> None:
            self.engine.run_event(Event.FIT_END)
            self.engine.close()

    return Loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("library", choices=["lightning", "composer"])
    parser.add_argument("--metrics", choices=["floats", "tensors"], default="floats")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--step", choices=["busy", "sleep"], default="busy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        loop = (lightning_loop if args.library == "lightning" else composer_loop)(args.tracking_uri)
        step = (BusyStep if args.step == "busy" else SleepStep)(args.step_ms / 1e3)
        figures = measure(loop, args.steps, step, zero_d_tensors if args.metrics == "tensors" else floats)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
