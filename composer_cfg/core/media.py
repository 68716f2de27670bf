"""Media: images, tables and histograms, in the one tracker-neutral form every destination reads
(`Images`, `Table`, `Histogram`: the payload of a ``Kind.MEDIA`` record). What a caller gives is
checked and copied into it by `composer_cfg.core.media_input`, once, at the call.

Pixels are read-only H x W x C uint8 arrays (C in 1, 3, 4), masks read-only H x W class ids; a
table's cells are numbers, strings, booleans or None; a histogram keeps its counts, edges and the
moments of its values (what TensorBoard's histogram needs), never the values themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np


class MediaError(ValueError):
    """An image, table or histogram that can not be logged; the message names it and what is allowed."""


class Image(NamedTuple):
    """One image: `pixels` H x W x C uint8 (C in 1, 3, 4); `masks` name -> H x W class ids."""

    pixels: np.ndarray
    masks: Mapping[str, np.ndarray]


class Images(NamedTuple):
    """What one `log_images` call logged, under `name`."""

    name: str
    images: tuple[Image, ...]
    mask_class_labels: Mapping[int, str] | None = None
    use_table: bool = True

    kind = "images"

    def nbytes(self) -> int:
        """About how much memory it holds."""
        return sum(image.pixels.nbytes + sum(mask.nbytes for mask in image.masks.values()) for image in self.images)

    def summary(self) -> str:
        shapes = sorted({"x".join(map(str, image.pixels.shape)) for image in self.images})
        masks = sorted({name for image in self.images for name in image.masks})
        return (f"{len(self.images)} image(s) {', '.join(shapes)}"
                + (f", masks {', '.join(masks)}" if masks else ""))


class Table(NamedTuple):
    """What one `log_table` call logged, under `name`."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    kind = "table"

    def nbytes(self) -> int:
        """About how much memory it holds (32 bytes a cell)."""
        return 32 * len(self.rows) * len(self.columns)

    def summary(self) -> str:
        return f"{len(self.rows)} row(s) x {len(self.columns)} column(s)"


class Histogram(NamedTuple):
    """What one `log_histogram` call logged, under `name`: the counts of ``len(counts)`` bins
    between consecutive `edges`, and the moments of the values."""

    name: str
    counts: tuple[int, ...]
    edges: tuple[float, ...]
    count: int
    minimum: float
    maximum: float
    total: float
    total_squares: float

    kind = "histogram"

    def nbytes(self) -> int:
        """About how much memory it holds."""
        return 16 * len(self.edges)

    def summary(self) -> str:
        return f"{self.count} value(s) in {len(self.counts)} bin(s) [{self.minimum:.6g}, {self.maximum:.6g}]"


Media = Images | Table | Histogram


def summary_line(item: Media, step: int, kept_by: tuple[str, ...] = ()) -> str:
    """The one line a text log or the console shows for an item, with the destinations that keep it.

    >>> summary_line(Table("samples", ("prompt", "answer"), (("2+2", "4"),)), 7, ("jsonl", "mlflow"))
    '[table][batch=7]: samples: 1 row(s) x 2 column(s), kept by jsonl, mlflow'
    """
    kept = f", kept by {', '.join(kept_by)}" if kept_by else ""
    return f"[{item.kind}][batch={step}]: {item.name}: {item.summary()}{kept}"
#: The kinds of media, as `Images.kind`, `Table.kind` and `Histogram.kind` name them.
KINDS = ("images", "table", "histogram")


def kept_by(context: Any) -> dict[str, tuple[str, ...]]:
    """For a sink that says a line of each item (`summary_line`): by kind, the destinations of its
    Logger that keep it (a `SinkContext`'s logger; none without one)."""
    logger = getattr(context, "logger", None)
    return {kind: logger.media_kept_by(kind) for kind in KINDS} if logger is not None else {}
