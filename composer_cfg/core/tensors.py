"""Whether a value is a torch tensor, without importing torch (``import composer_cfg`` stays light).

`tensor_class` is torch's ``Tensor`` once torch is imported, else None. While another thread is
still importing torch, its module is already in ``sys.modules`` but has no ``Tensor`` yet: that is
None too (no tensor can exist before its class does), never an error.

>>> import sys
>>> tensor_class() is (sys.modules["torch"].Tensor if "torch" in sys.modules else None)
True
"""

from __future__ import annotations

import sys


def tensor_class() -> type | None:
    """torch's ``Tensor`` if torch is imported (whole), else None."""
    return getattr(sys.modules.get("torch"), "Tensor", None)
