"""Segmentation masks as pictures, for trackers that have no masks of their own (TensorBoard,
MLflow): class id ``c`` drawn in colour ``c mod 256`` of the PASCAL VOC palette (0 black,
1 dark red, 2 dark green, 3 olive...), the colours segmentation tools use.

>>> import numpy as np
>>> mask_colours(np.array([[0, 1, 2, 3, 255, -1]])).tolist()
[[[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [224, 224, 192], [224, 224, 192]]]
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def mask_colours(mask: np.ndarray) -> np.ndarray:
    """An H x W class-id mask (any integer type) as H x W x 3 uint8 colours (see the module's docstring)."""
    import numpy as np

    return palette()[np.asarray(mask, dtype=np.int64) % 256]


@functools.cache
def palette() -> np.ndarray:
    """The 256 colours: bit ``3j + k`` of the id sets bit ``7 - j`` of channel ``k``."""
    import numpy as np

    ids = np.arange(256)
    colours = np.zeros((256, 3), dtype=np.uint8)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= (((ids >> (3 * bit + channel)) & 1) << (7 - bit)).astype(np.uint8)
    colours.flags.writeable = False
    return colours
