"""What logging costs the threads that log: per destination, calls and time spent in its channel.

With ``Logger(..., measure_overhead=True)`` every call into a destination's channel is timed (its
wall-clock time on the calling thread: writing inline, or queueing, and waiting at barriers) and
added to one of four totals by what the call carried: ``data`` (data, hyperparameters),
``events`` (events, flushes and checkpoints), ``artifacts``, ``close``. Off by default: timing
costs about 0.3 µs per destination per call (``benchmarks/README.md``). Totals are exact for calls
from one thread; concurrent calls into one destination may lose an update now and then.

>>> meter = Meter()
>>> add = meter.timed("data", lambda x: x + 1)
>>> add(1), meter.calls["data"]
(2, 1)
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, Callable

from composer_cfg.core.record import Kind

KINDS = ("data", "events", "artifacts", "close")
#: The total a record's kind counts under.
KIND_OF = {Kind.DATA: "data", Kind.HYPERPARAMETERS: "data", Kind.PRINTED: "data", Kind.EVENT: "events",
           Kind.ARTIFACT: "artifacts", Kind.MEDIA: "data"}


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

    def timed_put(self, put: Callable[[Any], None]) -> Callable[[Any], None]:
        """A channel's `put`, timed under the total of each record's kind."""
        calls, seconds = self.calls, self.seconds

        def call(record: Any) -> None:
            start = perf_counter()
            try:
                put(record)
            finally:
                kind = KIND_OF[record.kind]
                seconds[kind] += perf_counter() - start
                calls[kind] += 1

        return call

    def attach(self, channel: Any) -> None:
        """Time every call into `channel` from now on."""
        channel.put = self.timed_put(channel.put)
        for method, kind in (("open", "events"), ("flush", "events"), ("checkpoint", "events"), ("release", "events"), ("close", "close")):
            setattr(channel, method, self.timed(kind, getattr(channel, method)))

    def report(self) -> dict[str, Any]:
        """Plain numbers: per kind, ``calls``, ``seconds``, ``us_per_call``; then the ``total`` seconds."""
        report: dict[str, Any] = {
            kind: {"calls": self.calls[kind], "seconds": self.seconds[kind],
                   "us_per_call": self.seconds[kind] / self.calls[kind] * 1e6 if self.calls[kind] else 0.0}
            for kind in KINDS
        }
        report["total_seconds"] = sum(self.seconds.values())
        return report


def summary_lines(report: dict[str, dict[str, Any]]) -> list[str]:
    """One line per destination of a `Logger.report`, for the end of a run: its data calls and what
    they cost (when measured), bytes written, and what became of what it had to deliver.

    >>> summary_lines({"file": {"data": {"calls": 4, "seconds": 2e-5, "us_per_call": 5.0}, "total_seconds": 0.5,
    ...                         "bytes_written": 1234},
    ...                "mlflow": {"queued": 0, "peak_queued": 3, "delivered": 40, "spooled": 2, "dropped": 0}})
    ['  file: 4 data calls, 5.0 µs per call; 500.0 ms on the logging thread in all; 1,234 bytes written', '  mlflow: records: 40 delivered, 2 spooled, 0 dropped, 0 queued (at most 3)']
    """
    lines = []
    for name, figures in report.items():
        parts = []
        if "data" in figures:
            parts.append(f"{figures['data']['calls']} data calls, {figures['data']['us_per_call']:.1f} µs per call; "
                         f"{figures['total_seconds'] * 1e3:.1f} ms on the logging thread in all")
        if "bytes_written" in figures:
            parts.append(f"{figures['bytes_written']:,} bytes written")
        if "delivered" in figures or "uploaded" in figures:
            done = (f"records: {figures['delivered']} delivered, {figures['spooled']} spooled" if "delivered" in figures
                    else f"artifacts: {figures['uploaded']} uploaded, {figures['failed']} failed")
            parts.append(f"{done}, {figures['dropped']} dropped, {figures['queued']} queued "
                         f"(at most {figures['peak_queued']})")
        if "report_error" in figures:
            parts.append(f"no report: {figures['report_error']}")
        if parts:
            lines.append(f"  {name}: {'; '.join(parts)}")
    return lines


def as_metrics(report: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The numbers of a `Logger.report` (or `Logger.overhead`) as flat ``logger/<destination>/...``
    metrics, to log like any other data.

    >>> as_metrics({"file": {"data": {"calls": 4, "seconds": 2e-5, "us_per_call": 5.0}, "total_seconds": 0.5,
    ...                      "bytes_written": 1234, "spool": "a path"}})
    {'logger/file/data_calls': 4, 'logger/file/data_us_per_call': 5.0, 'logger/file/total_seconds': 0.5, 'logger/file/bytes_written': 1234}
    """
    metrics: dict[str, float] = {}
    for name, figures in report.items():
        for key, value in figures.items():
            if key in KINDS:
                metrics[f"logger/{name}/{key}_calls"] = value["calls"]
                metrics[f"logger/{name}/{key}_us_per_call"] = value["us_per_call"]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"logger/{name}/{key}"] = value
    return metrics
