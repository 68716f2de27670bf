"""What a caller gives as images, a table or a histogram, checked and copied once, at the call,
into the form every destination reads (`composer_cfg.core.media`).

* Images: numpy arrays or torch tensors, one image (HW; CHW, or HWC with ``channels_last``), a
  batch (NCHW / NHWC) or a sequence of images; uint8, bool, or floats in [0, 1]; 1, 3 or 4
  channels. Each becomes a read-only H x W x C uint8 array (floats scaled by 255 and rounded).
  Masks: a mapping of mask names to class ids (integers, H x W per image), with optional
  `mask_class_labels` (class id -> label).
* Tables: column names (strings) and rows of numbers, strings, booleans or None, each row as long
  as the columns.
* Histograms: any numbers (NaN and infinity refused), counted into `bins` equal bins (default 64)
  between their minimum and maximum.

What does not fit is a `MediaError` naming the item and what is allowed, raised before anything
is recorded.

>>> image = images(np.zeros((2, 3, 4, 5)), "samples")     # two 3-channel 4x5 images, NCHW
>>> len(image.images), image.images[0].pixels.shape, image.images[0].pixels.dtype
(2, (4, 5, 3), dtype('uint8'))
>>> table(["prompt", "score"], [["hi", 0.5]], "generations").rows
(('hi', 0.5),)
>>> histogram([1.0, 2.0, 2.0, 3.0], "weights", bins=2).counts
(1, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from composer_cfg.core.media import Histogram, Image, Images, MediaError, Table
from composer_cfg.core.templates import preview
from composer_cfg.core.tensors import tensor_class

#: Bins of a histogram when none are given.
DEFAULT_BINS = 64
#: Images in one call, cells in one table, bins in one histogram: more is refused.
MAX_IMAGES, MAX_CELLS, MAX_BINS = 1024, 1_000_000, 10_000
CHANNELS = (1, 3, 4)
#: The longest name, in UTF-8 bytes: trackers make file names of it (255 bytes at most, with their suffixes).
MAX_NAME_BYTES = 128
_CELL_TYPES = (str, int, float, bool, type(None))


def images(values: Any, name: str = "Images", *, channels_last: bool = False,
           masks: Mapping[str, Any] | None = None, mask_class_labels: Mapping[int, str] | None = None,
           use_table: bool = True) -> Images:
    """`values` as `Images` (see the module's docstring); Composer's `log_images` arguments."""
    name = _name(name, "images")
    arrays = _image_arrays(values, name, channels_last)
    masks_by_image: list[dict[str, np.ndarray]] = [{} for _ in arrays]
    for mask_name, mask_values in _mapping(masks, name, "masks").items():
        _name(mask_name, f"images {name!r}: mask")
        for index, mask in enumerate(_mask_arrays(mask_values, name, mask_name, [a.shape[:2] for a in arrays])):
            masks_by_image[index][mask_name] = mask
    labels = None
    if mask_class_labels is not None:
        labels = {}
        for key, label in _mapping(mask_class_labels, name, "mask_class_labels").items():
            if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not isinstance(label, str):
                raise MediaError(f"images {name!r}: mask_class_labels maps class ids (integers) to labels (strings), "
                                 f"got {key!r}: {label!r}")
            labels[int(key)] = label
    return Images(name, tuple(Image(pixels, masks) for pixels, masks in zip(arrays, masks_by_image)), labels,
                  bool(use_table))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], name: str = "Table") -> Table:
    """`columns` and `rows` as a `Table` (see the module's docstring); Composer's `log_table` arguments."""
    name = _name(name, "table")
    if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
        raise MediaError(f"table {name!r}: columns must be a non-empty list of names, got {_short(columns)}")
    if not all(isinstance(column, str) for column in columns):
        raise MediaError(f"table {name!r}: every column name must be a string, got {_short(list(columns))}")
    if isinstance(rows, str) or not isinstance(rows, Sequence):
        raise MediaError(f"table {name!r}: rows must be a list of rows, got {_short(rows)}")
    if len(rows) * len(columns) > MAX_CELLS:
        raise MediaError(f"table {name!r}: {len(rows)} rows x {len(columns)} columns is more than "
                         f"{MAX_CELLS:,} cells; log a sample, or save it to a file and upload the file")
    kept = []
    for number, row in enumerate(rows):
        if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != len(columns):
            raise MediaError(f"table {name!r}: row {number} has {_length(row)} value(s), the table has "
                             f"{len(columns)} column(s) ({', '.join(columns)}): every row must have one value per column")
        kept.append(tuple(_cell(value, name, number, columns[index]) for index, value in enumerate(row)))
    return Table(name, tuple(columns), tuple(kept))


def histogram(values: Any, name: str, bins: int | None = None) -> Histogram:
    """The histogram of `values` (numbers, an array or a tensor) in `bins` equal bins (default 64)."""
    name = _name(name, "histogram")
    bins = DEFAULT_BINS if bins is None else bins
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 1 <= bins <= MAX_BINS:
        raise MediaError(f"histogram {name!r}: bins must be a whole number from 1 to {MAX_BINS:,}, got {bins!r}")
    given = np.asarray(_host(values, name, "histogram"))
    if not (np.issubdtype(given.dtype, np.integer) or np.issubdtype(given.dtype, np.floating)
            or given.dtype == np.bool_):
        raise MediaError(f"histogram {name!r}: values must be real numbers (a list, an array or a tensor), "
                         f"got values of type {given.dtype}: {_short(values)}")
    numbers = given.astype(np.float64).ravel()
    if numbers.size == 0:
        raise MediaError(f"histogram {name!r}: no values to count")
    if not np.isfinite(numbers).all():
        raise MediaError(f"histogram {name!r}: {int((~np.isfinite(numbers)).sum())} of {numbers.size} values are "
                         f"NaN or infinite; a histogram counts finite numbers only (filter them, or log their count)")
    with np.errstate(over="ignore", invalid="ignore"):
        moments = float(numbers.sum()), float(np.dot(numbers, numbers))
        low, high = float(numbers.min()), float(numbers.max())
        try:
            counts, edges = np.histogram(numbers, bins=int(bins))
        except ValueError:  # bins too narrow for a float to tell apart (1e16 and 1e16 + 4): one bin
            counts, edges = np.array([numbers.size]), np.array([low, high])
    if not all(map(math.isfinite, (*moments, high - low))):
        raise MediaError(f"histogram {name!r}: the values' sum, sum of squares or range is beyond what a float "
                         f"holds (values from {numbers.min():.6g} to {numbers.max():.6g}); scale them first")
    return Histogram(name, tuple(int(c) for c in counts), tuple(float(e) for e in edges), int(numbers.size),
                     float(numbers.min()), float(numbers.max()), *moments)


# -- images ----------------------------------------------------------------------------------


def _image_arrays(values: Any, name: str, channels_last: bool) -> list[np.ndarray]:
    """Each image of `values` as a read-only H x W x C uint8 array."""
    if isinstance(values, (list, tuple)):
        if not values:
            raise MediaError(f"images {name!r}: no images given")
        arrays = [_image(_array(value, name), name, channels_last, f"image {i}") for i, value in enumerate(values)]
    else:
        array = _array(values, name)
        if array.ndim == 4:
            if array.shape[0] == 0:
                raise MediaError(f"images {name!r}: no images given (a batch of 0)")
            arrays = [_image(array[i], name, channels_last, f"image {i}") for i in range(array.shape[0])]
        else:
            arrays = [_image(array, name, channels_last, "the image")]
    if len(arrays) > MAX_IMAGES:
        raise MediaError(f"images {name!r}: {len(arrays)} images in one call; at most {MAX_IMAGES} (log a sample)")
    return arrays


def _image(array: np.ndarray, name: str, channels_last: bool, which: str) -> np.ndarray:
    layout = "HWC" if channels_last else "CHW"
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        if not channels_last:
            array = np.moveaxis(array, 0, -1)
    else:
        raise MediaError(f"images {name!r}: {which} has shape {tuple(array.shape)}; an image is HW or {layout} "
                         f"(channels_last={channels_last}), a batch N{layout}")
    height, width, channels = array.shape
    if channels not in CHANNELS or height == 0 or width == 0:
        raise MediaError(f"images {name!r}: {which} is {height}x{width} with {channels} channel(s) as {layout} "
                         f"(channels_last={channels_last}); an image has 1, 3 or 4 channels and at least one pixel")
    pixels = _pixels(array, name, which)
    pixels.flags.writeable = False
    return pixels


def _pixels(array: np.ndarray, name: str, which: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.array(array, copy=True, order="C")
    if array.dtype == np.bool_:
        return np.multiply(array, 255, dtype=np.uint8, order="C")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array).all()
        if not finite or array.min() < 0 or array.max() > 1:
            seen = "NaN or infinity" if not finite else f"values from {float(array.min()):.6g} to {float(array.max()):.6g}"
            raise MediaError(f"images {name!r}: {which} has {seen}; float pixels must be in [0, 1] "
                             f"(or give uint8 pixels in 0..255)")
        return np.rint(array * 255).astype(np.uint8, order="C")  # rows of pixels: what encoders read
    raise MediaError(f"images {name!r}: {which} has pixels of type {array.dtype}; allowed: uint8, bool, "
                     f"or floats in [0, 1]")


def _mask_arrays(values: Any, name: str, mask: str, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """One read-only H x W class-id array per image, each the size of its image."""
    if isinstance(values, (list, tuple)):
        arrays = [_array(value, name) for value in values]
    else:
        array = _array(values, name)
        arrays = list(array) if array.ndim == 3 else [array]  # a batch N x H x W, or one H x W
    if len(arrays) != len(shapes):
        raise MediaError(f"images {name!r}: mask {mask!r} has {len(arrays)} mask(s) for {len(shapes)} image(s)")
    kept = []
    for index, (array, shape) in enumerate(zip(arrays, shapes)):
        if array.shape != shape:
            raise MediaError(f"images {name!r}: mask {mask!r} of image {index} has shape {tuple(array.shape)}; "
                             f"it must be its image's height x width, {shape}")
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise MediaError(f"images {name!r}: mask {mask!r} has values of type {array.dtype}; a mask holds class "
                             f"ids (integers)")
        if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
            raise MediaError(f"images {name!r}: mask {mask!r} has class id {int(array.max())}; at most 2**63 - 1")
        array = np.array(array, dtype=np.int64 if array.dtype != np.bool_ else np.uint8, copy=True)
        array.flags.writeable = False
        kept.append(array)
    return kept


def _array(value: Any, name: str) -> np.ndarray:
    array = _host(value, name, "images")
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except (TypeError, ValueError):
            array = None
        if array is None or array.dtype == object:
            raise MediaError(f"images {name!r}: an image is a numpy array or a torch tensor, got {_short(value)}")
    return array


def _host(value: Any, name: str, what: str) -> Any:
    """A torch tensor as a numpy array on the host (one copy); anything else as it is."""
    tensor_type = tensor_class()
    if tensor_type is None or not isinstance(value, tensor_type):
        return value
    import torch

    if value.is_meta or value.is_nested:
        raise MediaError(f"{what} {name!r}: a {'meta' if value.is_meta else 'nested'} tensor has no values to log")
    copy = value.detach()
    if copy.layout != torch.strided:
        copy = copy.to_dense()
    if copy.dtype == torch.bfloat16:
        copy = copy.float()
    return copy.cpu().numpy()


# -- tables and names ------------------------------------------------------------------------


def _cell(value: Any, name: str, row: int, column: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if type(value) not in _CELL_TYPES:
        if isinstance(value, _CELL_TYPES):  # a subclass of str, int, float: the plain value
            value = next(kind for kind in (bool, int, float, str) if isinstance(value, kind))(value)
        else:
            raise MediaError(f"table {name!r}: row {row}, column {column!r} holds {_short(value)}; a cell is a "
                             f"number, a string, a boolean or None")
    return value


def _name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise MediaError(f"{what}: name must be a non-empty string, got {_short(name)}")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES or not name.isprintable():
        found = f"{size} bytes of UTF-8" + ("" if name.isprintable() else " with unprintable characters")
        raise MediaError(f"{what}: name {preview(name)} is {found}; a name is printable and at most "
                         f"{MAX_NAME_BYTES} bytes (trackers make file names of it)")
    return str(name)


def _mapping(value: Any, name: str, key: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MediaError(f"images {name!r}: {key} must be a mapping, got {_short(value)}")
    return value


def _length(value: Any) -> str:
    return str(len(value)) if isinstance(value, Sequence) and not isinstance(value, str) else "not a list of"


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"
