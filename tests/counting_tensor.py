"""`DeviceTensor`: a CPU tensor that plays a device tensor (``is_cpu`` is False) and counts every
copy to the host.

Any operation that reads a value out to the host (``.to(...)``, ``.cpu()``, ``.item()``,
``.tolist()``, ``.numpy()``, ``float(t)``...) adds one to `DeviceTensor.transfers` and returns a
plain `torch.Tensor` (or Python value): what crossed is host data. Every other operation
(``detach``, ``clone``, ``torch.cat``, ``reshape``...) stays a `DeviceTensor`, as it would stay
on a GPU.
"""

from __future__ import annotations

from typing import Any
from conftest import needs

torch = needs("torch")


HOST_READS = frozenset({"to", "cpu", "item", "tolist", "numpy", "__float__", "__int__", "__index__", "__bool__",
                        "__array__", "__format__", "__repr__"})


class DeviceTensor(torch.Tensor):
    transfers = 0

    @property
    def is_cpu(self) -> bool:  # it plays a tensor on a device: logging keeps it there until a flush point
        return False

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in HOST_READS:
            DeviceTensor.transfers += 1
            with torch._C.DisableTorchFunctionSubclass():
                result = func(*args, **kwargs)
                return result.as_subclass(torch.Tensor) if isinstance(result, torch.Tensor) else result
        return super().__torch_function__(func, types, args, kwargs)


def on_device(value: float, dtype: torch.dtype = torch.float32) -> DeviceTensor:
    """A scalar tensor "on the device"."""
    return torch.tensor(value, dtype=dtype).as_subclass(DeviceTensor)
