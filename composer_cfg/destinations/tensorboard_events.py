"""`EventFile`: one TensorBoard event file, written on the caller's thread (tensorboardX's records).

tensorboardX's `SummaryWriter` hands every event to a writer thread through a process queue,
one event per scalar, and its ``flush`` only flushes what that thread has already taken: nothing
says an event logged before a flush is on disk after it. Here the file is written with
tensorboardX's own `RecordWriter` (what its `SummaryWriter` writes through, so the records are
the same), fed directly: a data call is one event holding all its scalars, written when logged,
and `flush` puts everything written so far on disk (tensorboardX's flush ends with an fsync).
The file's name is TensorBoard's, with one difference (see `EventFile`).

Media are tensorboardX's records too: images as PNG image summaries (encoded with Pillow, as
tensorboardX's `make_image` does), histograms as `histogram_raw` writes them, text as `add_text`.
"""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import RecordWriter
from tensorboardX.summary import histogram_raw, scalar, text

from composer_cfg.core.media import Histogram
from composer_cfg.runtime import forks


class EventFile:
    """``events.out.tfevents.<second>.<host><filename_suffix>`` in `directory` (created if need be).

    Readers take a directory's event files in name order, so `<second>` is now or, if later, one
    after the newest file already there: an attempt's file comes after those of the attempts
    before it, whatever their clocks said (another node's may run ahead).
    """

    def __init__(self, directory: Path, filename_suffix: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        second = max([int(time.time()), *(_second(path) + 1 for path in directory.glob("*tfevents*"))])
        self.path = str(directory / f"events.out.tfevents.{second:010d}.{socket.gethostname()}{filename_suffix}")
        self._file = RecordWriter(self.path)
        forks.own(self._file._writer)  # tensorboardX's file object: never a child's
        self._file.write(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        self._file.flush()  # a reader finds a valid event file (its version record) from the start
        self._tags: dict[str, str] = {}

    def tag(self, key: str) -> str:
        """The tag `SummaryWriter.add_scalar` gives `key` (tensorboardX replaces characters
        TensorBoard's names do not allow: ``acc@1`` is ``acc_1``), learnt once per key."""
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = scalar(key, 0.0).value[0].tag
        return tag

    def scalars(self, values: Iterable[tuple[str, float]], step: int, wall_time: float | None) -> None:
        """One event with a value per (key, number); `wall_time` None: now."""
        value = Summary.Value
        summary = Summary(value=[value(tag=self.tag(key), simple_value=number) for key, number in values])
        self._write(summary, step, wall_time)

    def text(self, tag: str, content: str, step: int, wall_time: float | None) -> None:
        """A text summary (tag ``<tag>/text_summary``), as `SummaryWriter.add_text` writes it."""
        self._write(text(tag, content), step, wall_time)

    def images(self, values: Iterable[tuple[str, np.ndarray]], step: int, wall_time: float | None) -> None:
        """One event with an image value per (tag, H x W x C uint8 pixels, C in 1, 3, 4)."""
        summary = Summary(value=[Summary.Value(tag=tag, image=png(pixels)) for tag, pixels in values])
        self._write(summary, step, wall_time)

    def histogram(self, tag: str, histogram: Histogram, step: int, wall_time: float | None) -> None:
        """A histogram summary: TensorBoard's bucket limits are right edges (the first bucket
        starts at the minimum), so the limits are the edges after the first."""
        self._write(histogram_raw(tag, histogram.minimum, histogram.maximum, histogram.count, histogram.total,
                                  histogram.total_squares, list(histogram.edges[1:]), list(histogram.counts)),
                    step, wall_time)

    def _write(self, summary: Summary, step: int, wall_time: float | None) -> None:
        when = time.time() if wall_time is None else wall_time
        self._file.write(Event(summary=summary, step=step, wall_time=when).SerializeToString())

    def flush(self) -> None:
        """Every event written so far is in the file, on disk."""
        self._file.flush()

    def close(self) -> None:
        self._file.flush()
        self._file.close()


def _second(path: Path) -> int:
    """The second an event file's name gives (0 if it gives none)."""
    parts = path.name.split(".")
    return int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0


def png(pixels: np.ndarray) -> Summary.Image:
    """H x W x C uint8 pixels as a PNG image value: grayscale (C 1), RGB (3) or RGBA (4)."""
    from PIL import Image  # (tensorboard's dependency, as for tensorboardX's own images)

    height, width, channels = pixels.shape
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(buffer, format="PNG")
    return Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=buffer.getvalue())
