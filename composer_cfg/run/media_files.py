"""Media in the JSON Lines format: an image, table or histogram record as one line, with its
payload in files beside the records file, and read back.

A media record has the header of every record (``level``, ``run_name``, ``rank``, ``epoch``,
``batch``...) and, instead of ``data``, ``"media"``:

* images: ``{"kind": "images", "name": ..., "images": [{"file": "media/<hash>.npy", "masks":
  {<mask name>: "media/<hash>.npy"}}...], "mask_class_labels": {"1": "cat"} or null,
  "use_table": true}``, each file a numpy ``.npy`` array (H x W x C uint8 pixels; H x W class ids);
* a table: ``{"kind": "table", "name": ..., "file": "media/<hash>.json"}``, the file holding
  ``{"columns": [...], "rows": [[...]...]}`` (non-finite floats as ``NaN``, ``Infinity``);
* a histogram: ``{"kind": "histogram", "name": ..., "counts": [...], "edges": [...], "count": ...,
  "min": ..., "max": ..., "sum": ..., "sum_squares": ...}`` (small: no file).

Files are named by the SHA-256 of their content, in a ``media/`` folder beside the records file,
paths relative to it: a resumed run, a spool, or a sync that writes the same image again writes
no second copy. Each file appears whole (written aside, then renamed). A JSON Lines logger makes
the files it wrote durable when it makes its records durable (fsync at its flush points), and
publishes each file its records use as an artifact beside its own (``<its folder>/media/<hash>.npy``),
once per attempt, so an artifact store holds the run's media too.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer_cfg.core.media import Histogram, Image, Images, Media, Table
from composer_cfg.core.record import Record
from composer_cfg.run.records import encode_data, record_header

if TYPE_CHECKING:
    import numpy as np

FOLDER = "media"


def media_line(run_name_json: str, rank: int, record: Record, directory: Path,
               used: Callable[[Path, bool], None] | None = None) -> str:
    """`record` (a MEDIA record) as its line, newline included (`run_name_json` is
    ``json.dumps(run_name)``); its files written into ``directory/media`` first (unless there,
    whole), ``used(path, written)`` called for each."""
    header = record_header(record.level, run_name_json, rank, record.timestamp, record.time)
    files = _Files(directory, used)
    return f'{{{header}, "media": {encode_data(_described(record.payload, files))}}}\n'


def load_media(record: dict[str, Any], directory: str | Path) -> Media:
    """The item a media record (a line read back, `composer_cfg.run.records.read_records`) holds,
    its files read from `directory` (the records file's folder)."""
    directory = Path(directory)
    media = record["media"]
    kind = media["kind"]
    if kind == "images":
        labels = media.get("mask_class_labels")
        return Images(media["name"], tuple(
            Image(_read_array(directory, image["file"]),
                  {name: _read_array(directory, file) for name, file in image.get("masks", {}).items()})
            for image in media["images"]), None if labels is None else {int(k): v for k, v in labels.items()},
            bool(media.get("use_table", True)))
    if kind == "table":
        content = json.loads(_payload(directory, media["file"], ".json").read_text(encoding="utf-8"))
        return Table(media["name"], tuple(content["columns"]), tuple(tuple(row) for row in content["rows"]))
    if kind == "histogram":
        return Histogram(media["name"], tuple(media["counts"]), tuple(media["edges"]), media["count"], media["min"],
                         media["max"], media["sum"], media["sum_squares"])
    raise ValueError(f"a media record of unknown kind {kind!r} (this version reads images, table, histogram)")


def _described(item: Media, files: _Files) -> dict[str, Any]:
    if isinstance(item, Images):
        return {"kind": "images", "name": item.name,
                "images": [{"file": files.array(image.pixels),
                            "masks": {name: files.array(mask) for name, mask in image.masks.items()}}
                           for image in item.images],
                "mask_class_labels": None if item.mask_class_labels is None
                else {str(k): v for k, v in item.mask_class_labels.items()},
                "use_table": item.use_table}
    if isinstance(item, Table):
        # NaN and infinities as JSON's common extension (Python, pandas and JavaScript's JSON5 read
        # them): a cell holding the string "NaN" stays a string.
        content = json.dumps({"columns": list(item.columns), "rows": [list(row) for row in item.rows]})
        return {"kind": "table", "name": item.name, "file": files.stored(content.encode(), ".json")}
    return {"kind": "histogram", "name": item.name, "counts": list(item.counts), "edges": list(item.edges),
            "count": item.count, "min": item.minimum, "max": item.maximum, "sum": item.total,
            "sum_squares": item.total_squares}


def sync_files(paths: list[Path]) -> None:
    """fsync each file, then the folders that hold them (their names survive the machine too)."""
    for path in [*paths, *{path.parent for path in paths}]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class _Files:
    """The payload files of one record, in ``directory/media``."""

    def __init__(self, directory: Path, used: Callable[[Path, bool], None] | None) -> None:
        self._directory = directory
        self._used = used

    def array(self, array: np.ndarray) -> str:
        import numpy as np  # (only where there are images: `import composer_cfg` stays light)

        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self.stored(buffer.getvalue(), ".npy")

    def stored(self, content: bytes, suffix: str) -> str:
        """Write `content` as ``media/<its hash><suffix>`` unless it is there whole; its relative path."""
        relative = f"{FOLDER}/{hashlib.sha256(content).hexdigest()[:32]}{suffix}"
        path = self._directory / relative
        try:
            written = path.stat().st_size != len(content)  # (cut short by a crash of the machine: again)
        except FileNotFoundError:
            written = True
        if written:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".partial-", delete=False) as partial:
                partial.write(content)
            os.replace(partial.name, path)
        if self._used is not None:
            self._used(path, written)
        return relative


def _read_array(directory: Path, relative: str) -> np.ndarray:
    import numpy as np

    array = np.load(_payload(directory, relative, ".npy"), allow_pickle=False)
    array.flags.writeable = False
    return array


def _payload(directory: Path, relative: Any, suffix: str) -> Path:
    """The payload file a record names, which must be one of ours (``media/<hash><suffix>``): a
    records file edited by hand never makes a sync read (and send) another file."""
    if not isinstance(relative, str) or not re.fullmatch(rf"{FOLDER}/[0-9a-f]{{32}}{re.escape(suffix)}", relative):
        raise ValueError(f"a media record names {relative!r}, not a payload file ({FOLDER}/<hash>{suffix})")
    return directory / relative
