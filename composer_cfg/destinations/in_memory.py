"""`InMemoryLogger`: everything logged, kept in process in typed columns."""

from __future__ import annotations

import json
import threading
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from composer_cfg.compat.destination import SinkDestination
from composer_cfg.config.params import Level
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS, Media
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.sink import Sink
from composer_cfg.core.timestamp import COUNTERS, DURATIONS, FIELDS, Timestamp
from composer_cfg.destinations.columns import Series, TimeRows
from composer_cfg.runtime.channel import Channel
from composer_cfg.runtime.inline_channel import InlineChannel
from composer_cfg.core.tensors import tensor_class

_DATA, _HYPERPARAMETERS, _MEDIA = Kind.DATA, Kind.HYPERPARAMETERS, Kind.MEDIA


class InMemoryLogger(SinkDestination):
    """Keeps every logged value; for tests, notebooks and callbacks that read metrics back.

    Numbers are stored in typed arrays (about 8 bytes per value plus its share of the time
    point), other values as the `Logger` normalised them (host copies of tensors and arrays,
    copies of containers), so later changes by the caller do not alter the record. Written on
    the logging thread: what was logged is there when the call returns (a device tensor's value
    crosses to the host when it is first read, if no flush point came before).

    >>> from composer_cfg import Logger, State
    >>> memory = InMemoryLogger()
    >>> logger = Logger(State("demo"), memory)
    >>> for loss in (0.5, 0.25):
    ...     logger.data_batch({"loss": loss})
    ...     logger.state.timestamp = logger.state.timestamp.to_next_batch()
    >>> series = memory.get_timeseries("loss")
    >>> series["loss"].tolist(), series["batch"].tolist()
    ([0.5, 0.25], [0, 1])

    `most_recent_values` and `most_recent_timestamps` (key -> last value / its `Timestamp`)
    are built from the stored columns when read; `data` is brought up to date when read.
    `media`: the last image, table and histogram of each name, with its timestamp, by (kind, name)
    (``memory.media["images", "samples"]``; the last only: images kept for a whole run would
    fill the memory).
    """

    shows_media = frozenset(KINDS)

    def __init__(self, log_level: Level = LogLevel.BATCH) -> None:
        self.log_level = LogLevel.parse(log_level)
        self._lock: Any = threading.Lock()  # between the writer and readers on other threads (`attach`)
        self._series: dict[str, Series] = {}
        self._rows = TimeRows()  # one per distinct (timestamp, level) of a call
        self._last: tuple[Timestamp, LogLevel] | None = None
        self._row = -1
        self._data: dict[str, list[tuple[Timestamp, LogLevel, Any]]] = {}
        self._in_data: dict[str, int] = {}  # key -> how many of its values `data` has taken in
        self._times: dict[int, tuple[Timestamp, LogLevel]] = {}  # row -> its time point, once read
        self._settle: Callable[[], None] = _nothing
        self.hyperparameters: dict[str, Any] = {}
        self.media: dict[tuple[str, str], tuple[Timestamp, Media]] = {}

    def make_sink(self) -> Sink:
        return _MemorySink(self)

    def attach(self, channel: Channel) -> None:
        super().attach(channel)

        def settle() -> None:  # a read delivers first what waits for its device tensors
            logger = channel.context().logger
            if logger is not None:
                logger.deliver_waiting()

        self._settle = settle
        if isinstance(channel, InlineChannel):  # readers take the lock the channel writes under: one lock a call
            self._lock = channel.lock
            self.sink().write = self._keep_records  # type: ignore[method-assign]

    def _store(self, records: Sequence[Record]) -> None:
        """Keep `records` (the sink's write, on a channel that writes without `_lock`)."""
        with self._lock:
            self._keep_records(records)

    def _keep_records(self, records: Sequence[Record]) -> None:
        for record in records:
            kind = record.kind
            if kind is _DATA:
                self._keep(record.timestamp, record.level, record.payload)  # type: ignore[arg-type]
            elif kind is _HYPERPARAMETERS:
                self.hyperparameters.update(record.payload)
            elif kind is _MEDIA:
                item = record.payload
                self.media[item.kind, item.name] = (record.timestamp, item)

    def _keep(self, timestamp: Timestamp, log_level: LogLevel, data: dict[str, Any]) -> None:
        last = self._last
        if last is None or last[0] is not timestamp or last[1] is not log_level:
            self._row = self._rows.append(timestamp, log_level)
            self._last = (timestamp, log_level)
        row = self._row
        series_of = self._series
        for key, value in data.items():
            series = series_of.get(key)
            if series is None:
                series = series_of[key] = Series(value)
            if type(value) is series.exact_type:
                try:
                    series.values.append(value)
                    series.rows.append(row)
                except OverflowError:
                    series.add(row, value)
            else:
                series.add(row, value)

    def output_location(self) -> str:
        return f"in memory ({len(self._series)} keys)"

    @property
    def tables(self) -> dict[str, str]:
        """Composer 0.32's view of the tables: name -> the last table of that name, as the JSON
        pandas writes with ``to_json(orient="split", index=False)`` (``{"columns": [...], "data": [[...]]}``)."""
        self._settle()
        with self._lock:
            items = [item for (kind, _), (_, item) in self.media.items() if kind == "table"]
        return {item.name: json.dumps({"columns": list(item.columns), "data": [list(row) for row in item.rows]})
                for item in items}

    @property
    def most_recent_values(self) -> dict[str, Any]:
        """key -> the last value logged for it."""
        self._settle()
        with self._lock:
            return {key: series.values[-1] for key, series in self._series.items()}

    @property
    def most_recent_timestamps(self) -> dict[str, Timestamp]:
        """key -> the `Timestamp` of the last call that logged it."""
        self._settle()
        with self._lock:
            return {key: self._time(series.rows[-1])[0] for key, series in self._series.items()}

    @property
    def data(self) -> dict[str, list[tuple[Timestamp, LogLevel, Any]]]:
        """key -> ``[(Timestamp, LogLevel, value), ...]`` in call order, as Composer kept it.

        The same dict on every read, extended with what was logged since the last read: reading
        it every batch costs only the new entries, and changes made to it stay (a key deleted
        from it comes back with the entries logged after). Entries of one call share one
        `Timestamp` object.
        """
        self._settle()
        with self._lock:
            data, taken = self._data, self._in_data
            for key, series in self._series.items():
                start, end = taken.get(key, 0), len(series.values)
                if start < end:
                    entries = data.setdefault(key, [])
                    for row, value in zip(series.rows[start:end], series.values[start:end]):
                        entries.append((*self._time(row), value))
                    taken[key] = end
            return data

    def _time(self, row: int) -> tuple[Timestamp, LogLevel]:
        """The timestamp and level of a row (made once)."""
        time = self._times.get(row)
        if time is None:
            *fields, level = self._rows.row(row)
            time = self._times[row] = (Timestamp(**dict(zip(FIELDS, fields))), LogLevel(level))
        return time

    def get_timeseries(self, metric: str) -> dict[str, Any]:
        """Numpy arrays of `metric`'s values and of each timestamp field at which it was logged.

        Keys: `metric`, then ``epoch``, ``batch``, ``batch_in_epoch``, ``sample``,
        ``sample_in_epoch``, ``token``, ``token_in_epoch`` (int64) and ``total_wct``,
        ``epoch_wct``, ``batch_wct`` (float seconds).
        """
        import numpy as np

        self._settle()
        with self._lock:  # a buffer being read can not grow meanwhile
            series = self._series.get(metric)
            if series is None:
                known = ", ".join(sorted(self._series)) or "nothing yet"
                raise ValueError(f"no values were logged for {metric!r}; logged keys: {known}")
            rows = np.frombuffer(series.rows, dtype=np.uint32)
            result = {metric: _to_numpy(series.values)}
            table = self._rows.as_numpy(FIELDS)[rows]
            del rows
        for name in COUNTERS:
            result[name] = table[name].astype(np.int64)
        for name in DURATIONS:
            result[name] = table[name].copy()
        return result


def _to_numpy(values: Any) -> Any:
    import numpy as np

    if isinstance(values, array):
        return np.array(values, dtype=np.float64 if values.typecode == "d" else np.int64)
    tensor_type = tensor_class()
    if tensor_type is not None and values and all(isinstance(v, tensor_type) for v in values):
        import torch

        return torch.stack([v.detach().cpu() for v in values]).numpy()
    return np.array(values)


def _nothing() -> None:
    pass


class _MemorySink(Sink):
    """Writes into its `InMemoryLogger`'s columns."""

    def __init__(self, memory: InMemoryLogger) -> None:
        self._memory = memory
        self.write = memory._store  # type: ignore[method-assign] # one call less on every record

    def location(self) -> str:
        return self._memory.output_location()
