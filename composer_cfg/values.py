"""Reading logged values: is this one number?"""

from __future__ import annotations

import sys
from typing import Any


def scalar(value: Any) -> float | None:
    """`value` as a float if it is one number (int, float, numpy scalar, one-element tensor)."""
    if isinstance(value, (int, float)):
        return float(value)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() == 1 else None
    if type(value).__module__ == "numpy" and getattr(value, "size", 0) == 1:
        return float(value.item()) if isinstance(value.item(), (int, float)) else None
    return None
