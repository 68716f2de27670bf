"""Images, tables and histograms (`composer_cfg.core.media`) as MLflow shows them: each item made
into the `MlflowClient` requests that upload it (`uploads`), for `MLFlowLogger`'s sink to send.

* Images: `MlflowClient.log_image` with a key and the call's step (MLflow's per-step image view).
  The key is the item's name; when a call logs several images, ``<name>.0``, ``<name>.1``...
  Each segmentation mask is an image of its own, ``<image key>.mask.<mask name>``, class id ``c``
  drawn in colour ``c mod 256`` of the PASCAL VOC palette (0 black, 1 dark red, 2 dark green, 3
  olive...; `composer_cfg.destinations.mask_colours`); with `Images.mask_class_labels`, ``masks/<name>/classes.json`` maps
  each labelled id to its label and colour. Characters MLflow's image keys refuse (all but ASCII
  letters, digits, ``_-.`` and space), ``/`` (MLflow 3.1 to at least 3.10 writes the images of
  such a key where it can not read them back) and ``.`` (the separator above) become ``_``, and
  a name so changed gets ``-`` and 8 hex digits of its hash (``eval/a`` is ``eval_a-<hash>``:
  never ``eval_a``'s key; ``s.0`` never image 0 of ``s``).
  `Images.use_table` is W&B's: ignored. Needs Pillow.
* Tables: `MlflowClient.log_table` as ``tables/<name>/step<step>.json`` (MLflow's JSON, pandas'
  ``split`` form: floats rounded to 10 decimal places, so 1e-12 is 0.0; NaN, infinities and None
  are null). A second table of that name at the same step is appended to it, as MLflow does.
  Needs pandas.
* Histograms: `MlflowClient.log_dict` as ``histograms/<name>/step<step>.json``: ``counts``,
  ``edges``, ``count``, ``min``, ``max``, ``sum``, ``sum_squares`` (MLflow has no histogram view).

In artifact paths a name keeps its ``/`` (folders); each part is made a key as above, and a part
that is empty or only dots becomes ``_``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any

from composer_cfg.core.media import Images, Media, Table
from composer_cfg.destinations.mask_colours import mask_colours, palette

#: What MLflow's image keys may not hold (beyond ``/``, kept apart), made ``_``.
#: What a name may keep in an image key: MLflow's rule for keys, without "/" and "." (this module's
#: separators: ``<name>.<index>``, ``<key>.mask.<mask>``).
_REFUSED_IN_KEYS = re.compile(r"[^A-Za-z0-9_\- ]")
#: The package to install for a module MLflow's media need.
_PACKAGES = {"PIL": "pillow", "pandas": "pandas"}


class Refused(ValueError):
    """An item MLflow can not be given (not a failure of the store: sending it again would not help)."""


def uploads(client: Any, run_id: str, item: Media, step: int, timestamp_ms: int,
            legends: dict[str, Any]) -> list[Callable[[], None]]:
    """The requests that show `item` in the run, in order, all made before any is sent (what can
    not be made is `Refused`, naming the item). `legends`: per images name, the mask legend the
    run has (one is uploaded again only when it changes)."""
    try:
        if isinstance(item, Images):
            return _images(client, run_id, item, step, timestamp_ms, legends)
        if isinstance(item, Table):
            return [functools.partial(client.log_table, run_id, _frame(item),
                                      f"tables/{_folder(item.name)}/step{step}.json")]
        content = {"name": item.name, "step": step, "counts": list(item.counts), "edges": list(item.edges),
                   "count": item.count, "min": item.minimum, "max": item.maximum, "sum": item.total,
                   "sum_squares": item.total_squares}
        return [functools.partial(client.log_dict, run_id, content, f"histograms/{_folder(item.name)}/step{step}.json")]
    except Exception as error:  # noqa: BLE001 - the item, not the store: said, never sent again
        if isinstance(error, ImportError) and error.name in _PACKAGES:
            reason = f"it needs {error.name} (pip install {_PACKAGES[error.name]})"
        else:
            reason = f"{type(error).__name__}: {error}"
        raise Refused(f"MLflow did not get the {item.kind} {item.name!r}: {reason}") from error


def _images(client: Any, run_id: str, item: Images, step: int, timestamp_ms: int,
            legends: dict[str, Any]) -> list[Callable[[], None]]:
    from PIL import Image

    name = _key(item.name)
    pictures = []
    for index, image in enumerate(item.images):
        key = name if len(item.images) == 1 else f"{name}.{index}"
        pixels = image.pixels[:, :, 0] if image.pixels.shape[2] == 1 else image.pixels
        pictures.append((key, Image.fromarray(pixels)))
        pictures += [(f"{key}.mask.{_key(mask)}", Image.fromarray(mask_colours(ids))) for mask, ids in image.masks.items()]
    requests: list[Callable[[], None]] = [
        functools.partial(client.log_image, run_id, picture, key=key, step=step, timestamp=timestamp_ms,
                          synchronous=True)
        for key, picture in pictures]
    if item.mask_class_labels:
        legend = {str(id_): {"label": label, "color": palette()[id_ % 256].tolist()}
                  for id_, label in sorted(item.mask_class_labels.items())}

        def upload_legend() -> None:
            if legends.get(item.name) != legend:
                client.log_dict(run_id, legend, f"masks/{_folder(item.name)}/classes.json")
                legends[item.name] = legend

        requests.append(upload_legend)
    return requests


def _frame(item: Table) -> Any:
    import pandas

    if len(set(item.columns)) < len(item.columns):
        raise ValueError(f"MLflow's tables need distinct column names, got {list(item.columns)}")
    return pandas.DataFrame(list(item.rows), columns=list(item.columns), dtype=object)  # each cell as logged


def _key(name: str) -> str:
    """`name` as MLflow takes it in a key; a name it changes gets 8 hex digits of its hash, so two
    names (``eval/a``, ``eval_a``; two in Chinese) never share a key."""
    key = _REFUSED_IN_KEYS.sub("_", name.replace("/", "_"))
    return key if key == name else f"{key}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _folder(name: str) -> str:
    return "/".join(part if part.strip(". ") else "_" for part in map(_key, name.split("/")))
