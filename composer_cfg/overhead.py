"""What logging costs the thread that logs: per destination, calls and time spent in them.

With ``Logger(..., measure_overhead=True)`` each destination's methods are called through a
`Meter`, which adds the time of every call (its wall-clock time on the calling thread, waiting
for the destination's lock included) to one of four totals: ``data`` (`log_data`), ``events``
(`run_event`, flushes included), ``artifacts`` (`log_file_artifact`), ``close`` (`close`,
`post_close`, `finalize`). Off by default: timing every call costs about 0.2 µs per destination
per call (``benchmarks/README.md``), a fifth of a fast call. Totals are exact for calls from one
thread; concurrent calls into one destination may lose an update now and then.

>>> meter = Meter()
>>> add = meter.timed("data", lambda x: x + 1)
>>> add(1), meter.calls["data"]
(2, 1)
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, Callable

#: Each total, and the destination methods whose calls it counts.
KINDS = {"data": ("log_data",), "events": ("run_event",), "artifacts": ("log_file_artifact",),
         "close": ("close", "post_close", "finalize")}
KIND_OF = {method: kind for kind, methods in KINDS.items() for method in methods}


class Meter:
    """Calls and seconds per kind of call, for one destination."""

    __slots__ = ("calls", "seconds")

    def __init__(self) -> None:
        self.calls = dict.fromkeys(KINDS, 0)
        self.seconds = dict.fromkeys(KINDS, 0.0)

    def timed(self, kind: str, method: Callable[..., Any]) -> Callable[..., Any]:
        """`method`, counting its calls and timing them under `kind`."""
        calls, seconds = self.calls, self.seconds

        def call(*args: Any, **kwargs: Any) -> Any:
            start = perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[kind] += perf_counter() - start
                calls[kind] += 1

        return call

    def report(self) -> dict[str, Any]:
        """Plain numbers: per kind, ``calls``, ``seconds``, ``us_per_call``; then the ``total`` seconds."""
        report: dict[str, Any] = {
            kind: {"calls": self.calls[kind], "seconds": self.seconds[kind],
                   "us_per_call": self.seconds[kind] / self.calls[kind] * 1e6 if self.calls[kind] else 0.0}
            for kind in KINDS
        }
        report["total_seconds"] = sum(self.seconds.values())
        return report


def summary_lines(overhead: dict[str, dict[str, Any]]) -> list[str]:
    """One line per destination, for the end of a run: its data calls, what they cost, and its total.

    >>> summary_lines({"file": {"data": {"calls": 4, "seconds": 2e-5, "us_per_call": 5.0}, "total_seconds": 0.5}})
    ['  file: 4 data calls, 5.0 µs per call; 500.0 ms on the logging thread in all']
    """
    return [f"  {name}: {report['data']['calls']} data calls, {report['data']['us_per_call']:.1f} µs per call; "
            f"{report['total_seconds'] * 1e3:.1f} ms on the logging thread in all"
            for name, report in overhead.items()]


def as_metrics(overhead: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The figures as flat ``logger/<destination>/<kind>_...`` metrics, to log like any other data.

    >>> as_metrics({"file": {"data": {"calls": 4, "seconds": 2e-5, "us_per_call": 5.0}, "total_seconds": 0.5}})
    {'logger/file/data_calls': 4, 'logger/file/data_us_per_call': 5.0, 'logger/file/total_seconds': 0.5}
    """
    metrics: dict[str, float] = {}
    for name, report in overhead.items():
        for kind, figures in report.items():
            if kind == "total_seconds":
                metrics[f"logger/{name}/total_seconds"] = figures
            else:
                metrics[f"logger/{name}/{kind}_calls"] = figures["calls"]
                metrics[f"logger/{name}/{kind}_us_per_call"] = figures["us_per_call"]
    return metrics
