"""`SystemMetrics`: the machine's own metrics, sampled off the training thread, logged as data.

``Logger(system_metrics={"every_seconds": 30})`` starts one thread at INIT that wakes at each
multiple of `every_seconds` of the wall clock (so the ranks of a run sample at the same ticks),
samples, and logs at BATCH level at the step the run is at:

* ``system/cpu_percent``: this process's CPU use since the last sample, in percent of one CPU
  (up to 100 times the number of CPUs);
* ``system/memory_rss_bytes``: this process's resident memory;
* ``system/host_memory_percent``: the host's memory in use;
* per visible GPU ``i`` (``CUDA_VISIBLE_DEVICES`` order), with NVIDIA's management library
  (``nvidia-ml-py``) and a driver: ``system/gpu<i>/utilization_percent`` and
  ``system/gpu<i>/memory_used_bytes``.

The host's figures come from ``psutil`` (``pip install 'composer_cfg[system]'``, which brings
``nvidia-ml-py`` too). The thread stops when the Logger closes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from composer_cfg.config.params import SYSTEM_METRICS
from composer_cfg.runtime import workers

LOG = logging.getLogger("composer_cfg")


class SystemMetrics:
    """The sampler of one `Logger` (see the module's docstring); off with `settings` None.

    >>> sampler = SystemMetrics({"every_seconds": 30})
    >>> sorted(sampler.sample())
    ['system/cpu_percent', 'system/host_memory_percent', 'system/memory_rss_bytes']
    """

    def __init__(self, settings: Mapping[str, Any] | None) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.every_seconds = None if settings is None else SYSTEM_METRICS.check("system_metrics", settings)
        if self.every_seconds is None:
            return  # off: `start` does nothing
        import psutil

        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading starts the count
        self._host_memory = psutil.virtual_memory
        self._gpus = _gpus()

    def sample(self) -> dict[str, float | int]:
        """The figures now (CPU use since the last sample)."""
        figures: dict[str, float | int] = {
            "system/cpu_percent": self._process.cpu_percent(None),
            "system/memory_rss_bytes": self._process.memory_info().rss,
            "system/host_memory_percent": self._host_memory().percent,
        }
        for index, read in enumerate(self._gpus):
            utilization, used = read()
            figures[f"system/gpu{index}/utilization_percent"] = utilization
            figures[f"system/gpu{index}/memory_used_bytes"] = used
        return figures

    def start(self, log: Callable[[dict[str, float | int]], None]) -> None:
        """Call `log` with a sample at every tick, on a thread of its own, until `stop` (off: nothing)."""
        if self.every_seconds is None:
            return

        every = self.every_seconds

        def run() -> None:
            while not self._stop.wait(every - time.time() % every):
                try:
                    log(self.sample())
                except RuntimeError:  # the Logger closed meanwhile
                    return
                except Exception as error:  # noqa: BLE001 - a sampler never ends a run
                    LOG.warning("system metrics: sampling failed (%s: %s); no more samples", type(error).__name__,
                                error)
                    return

        self._thread = workers.start("system-metrics", run)

    def stop(self) -> None:
        """Stop sampling; a sample being logged is finished first."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def forget(self) -> None:
        """In a forked child: the thread is the parent's; nothing to stop."""
        self._thread = None
        self._stop.set()


def _gpus() -> list[Callable[[], tuple[float, int]]]:
    """A reader of (utilization percent, memory used in bytes) per visible GPU; none without
    NVIDIA's library or a driver (said once when torch sees GPUs)."""
    try:
        import pynvml
    except ImportError:
        _say_without_gpus("NVIDIA's management library is not installed (pip install 'composer_cfg[system]')")
        return []
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except pynvml.NVMLError as error:
        _say_without_gpus(f"NVIDIA's management library found no driver ({error})")
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        handles = [_visible(pynvml, handles, item.strip()) for item in visible.split(",") if item.strip()]
        handles = [handle for handle in handles if handle is not None]

    def reader(handle: Any) -> Callable[[], tuple[float, int]]:
        def read() -> tuple[float, int]:
            return (float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    int(pynvml.nvmlDeviceGetMemoryInfo(handle).used))

        return read

    return [reader(handle) for handle in handles]


def _visible(pynvml: Any, handles: list[Any], item: str) -> Any:
    """The handle `item` of ``CUDA_VISIBLE_DEVICES`` names (an index or a UUID), or None."""
    if item.isdigit():
        return handles[int(item)] if int(item) < len(handles) else None
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(item)
    except pynvml.NVMLError:
        return None


def _say_without_gpus(why: str) -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        LOG.warning("system metrics: no GPU metrics: %s", why)
