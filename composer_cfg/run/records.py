"""The JSON Lines record format: one object per logged call, and its reader.

A record: ``{"level": "BATCH", "run_name": ..., "rank": 0, "epoch": 0, "batch": 12,
"batch_in_epoch": 12, "sample": 384, "time": <unix seconds>, "data": {...}}``.

Values are made JSON-safe: numpy and torch scalars become numbers, arrays and tensors lists,
other objects their ``str``. Strict JSON has no NaN or infinity, so non-finite floats are written
as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (protobuf's JSON mapping);
`read_records` turns them back into floats (so a logged *string* ``"NaN"`` reads back as a float).

Images, tables and histograms are records with ``"media"`` instead of ``"data"``
(`composer_cfg.run.media_files`; `read_records` gives them ``"data": {}``).

A spool (`composer_cfg.run.spool`) also holds artifacts a tracker did not get: instead of
``"data"``, ``"artifact": {"name": ..., "file": ..., "overwrite": ...}`` (`read_records` gives
them ``"data": {}``).

A resumed run appends a resume record, ``{"resumed_at": {"epoch": 2, "batch": 32, "sample": 1024},
"kept_bytes": 5120, "run_name": ..., "rank": 0, "time": ...}``: of the lines before it, those
from byte ``kept_bytes`` on were written after the run's last checkpoint by an attempt that did
not finish, and `read_records` drops them, so a reader sees one series without duplicates and
exactly what the trackers of the run kept (they hold data until each checkpoint). Without
``kept_bytes`` (no checkpoint yet, or a file of an earlier version) the records at or after the
point (by epoch, then batch) are dropped.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from composer_cfg.core.formatting import MAX_TEXT
from composer_cfg.run.run_record import run_files
from composer_cfg.core.tensors import tensor_class

LOG = logging.getLogger("composer_cfg")
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_data(data: Mapping[str, Any]) -> str:
    """`data` (normalised: see `composer_cfg.core.values`) as strict JSON."""
    try:
        try:
            text = _ENCODER.encode(data)
        except ValueError:  # a non-finite float somewhere (strict JSON has none): walk the data once
            text = _ENCODER.encode(_finite(data))
    except ValueError as error:  # an integer with more digits than Python writes as text
        raise ValueError(f"log data value for key {_culprit(data)!r} can not be written as text: {error}") from None
    except Exception as error:  # a value whose __str__ (our last resort) raised
        raise TypeError(f"log data value for key {_culprit(data)!r} can not be turned into JSON: "
                        f"{type(error).__name__}: {error}") from None
    if len(text) > MAX_TEXT:
        raise ValueError(f"log data value for key {_culprit(data, MAX_TEXT)!r} is too large to log as text "
                         f"(at most {MAX_TEXT:,} characters): log a summary, or save it to a file and log a file artifact")
    return text


def _culprit(data: Mapping[str, Any], max_length: int | None = None) -> str:
    """The first key whose value alone fails to encode (or encodes longer than `max_length`)."""
    for key, value in data.items():
        try:
            if max_length is not None and len(_ENCODER.encode(_finite(value))) > max_length:
                return key
            if max_length is None:
                _ENCODER.encode(_finite(value))
        except Exception:  # noqa: BLE001 - this is the one
            return key
    return next(iter(data), "?")


def _json_safe(value: Any) -> Any:
    """What json.dumps calls for a value it does not know."""
    tensor_type = tensor_class()
    if tensor_type is not None and isinstance(value, tensor_type):
        return value.detach().cpu().tolist()
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()  # numpy scalars and arrays
    if isinstance(value, (set, frozenset, tuple, bytes)):
        return list(value)
    return str(value)


_ENCODER = json.JSONEncoder(allow_nan=False, default=_json_safe)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return _finite(_json_safe(value))  # numpy, torch...: their JSON form, walked the same way


def record_line(level: Any, run_name_json: str, rank: int, timestamp: Any, when: float, data: Mapping[str, Any]) -> str:
    """One record (see above) as its line, newline included; `run_name_json` is ``json.dumps(run_name)``."""
    return f'{{{record_header(level, run_name_json, rank, timestamp, when)}, "data": {encode_data(data)}}}\n'


def record_header(level: Any, run_name_json: str, rank: int, timestamp: Any, when: float) -> str:
    """The fields every record starts with, from ``"level"`` to ``"time"``, without braces."""
    return (f'"level": "{level.name}", "run_name": {run_name_json}, "rank": {rank}, '
            f'"epoch": {timestamp.epoch}, "batch": {timestamp.batch}, "batch_in_epoch": {timestamp.batch_in_epoch}, '
            f'"sample": {timestamp.sample}, "time": {when!r}')



def artifact_line(level: Any, run_name: str, rank: int, timestamp: Any, when: float, name: str, file: str,
                  overwrite: bool) -> str:
    """An artifact as a spool keeps it (see `composer_cfg.run.spool`): the record's header, then
    ``"artifact": {"name": ..., "file": <the file it was published from>, "overwrite": ...}``."""
    return json.dumps({"level": level.name, "run_name": run_name, "rank": rank, "epoch": int(timestamp.epoch),
                       "batch": int(timestamp.batch), "batch_in_epoch": int(timestamp.batch_in_epoch),
                       "sample": int(timestamp.sample), "time": when,
                       "artifact": {"name": name, "file": file, "overwrite": overwrite}}) + "\n"


def resume_record(run_name: str, rank: int, timestamp: Any, kept_bytes: int | None = None) -> str:
    """The line a resumed run appends before its first record (see above)."""
    point = {"epoch": int(timestamp.epoch), "batch": int(timestamp.batch), "sample": int(timestamp.sample)}
    kept = {} if kept_bytes is None else {"kept_bytes": int(kept_bytes)}
    return json.dumps({"resumed_at": point, **kept, "run_name": run_name, "rank": rank, "time": time.time()}) + "\n"


def read_records(source: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a ``.jsonl`` file, or of every records file of the runs under a directory
    (`composer_cfg.run.run_record.run_files`: never a tracker's copy of one, nor a spool), without
    those a resumed run replaced (see above).

    A last line cut short (a crash mid-write) is skipped with a warning; any other bad line is
    an error naming the file and line.
    """
    path = Path(source)
    files = run_files(path).records if path.is_dir() else [path]
    for file in files:
        for _, record in placed_records(file):
            yield record


def placed_records(file: Path) -> list[tuple[int, dict[str, Any]]]:
    """The records of `file` that stay (see `read_records`), each with the byte offset of its line."""
    records: list[tuple[int, dict[str, Any]]] = []
    lines = file.read_bytes().split(b"\n")
    offset = 0
    for number, line in enumerate(lines, start=1):
        start, offset = offset, offset + len(line) + 1
        if not line:
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            if number == len(lines):  # no newline after it: the write was cut short
                LOG.warning("%s: skipped the torn last line %d (%s)", file, number, error)
                continue
            raise ValueError(f"{file}:{number}: not a JSON record: {error}") from None
        resumed = record.get("resumed_at")
        if resumed is not None:
            kept = record.get("kept_bytes")  # a size the file no longer has (replaced, cut short): by point
            records = before(records, kept if kept is not None and kept <= start else None, resumed)
            continue
        record["data"] = _decode_non_finite(record.get("data", {}))
        records.append((start, record))
    return records


def before(placed: list[tuple[int, dict[str, Any]]], size: int | None,
           point: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """Of records with their offsets (`placed_records`), those written before byte `size` of their
    file; without a size, those before `point` (by epoch, then batch)."""
    if size is not None:
        return [(at, record) for at, record in placed if at < size]
    cut = point_of(point)
    return [(at, record) for at, record in placed if point_of(record) < cut]


def point_of(record: Mapping[str, Any]) -> tuple[int, int]:
    """Where a record (or a mark) is in the run: (epoch, batch), the order of the points."""
    return record["epoch"], record["batch"]


def _decode_non_finite(value: Any) -> Any:
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {key: _decode_non_finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_non_finite(item) for item in value]
    return value
