"""`TensorStage`: device tensors cross to the host once per flush point, for everything logged since.

Reading a device tensor on the host waits for the device; doing it once per logged value costs a
synchronisation per value. So a logged tensor that lives on a device (not the CPU) is copied *on
its device* at the call (the caller may change its tensor afterwards) and its record waits here,
with every record logged after it (so each destination still sees calls in order), until the
next flush point: an event after which a destination flushes, a checkpoint, `Logger.flush`,
`Logger.close`, or `MAX_WAITING` records waiting. There every waiting tensor is flattened and
concatenated per (device, dtype), copied to the host with one ``non_blocking`` transfer per
group, each device is synchronised once, and the records go on to their channels in their
order, with host tensors of the original shapes and dtypes.

CPU tensors are copied at the call: there is nothing to wait for. A tensor that can not be
batched (sparse, nested) is copied at the call too; a meta tensor, which holds no values, is an
error naming its key. If a batched copy fails, each tensor is copied alone; a record whose tensor
still fails is not delivered, and the error names its key: the other records go on.

On rank 0, a record whose values are combined across ranks (`composer_cfg.runtime.reduction`)
waits here too, with every record after it, until a reduction barrier: a flush point that is not one
delivers only what was logged before it (the tensors of the rest cross to the host meanwhile).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from composer_cfg.core.record import Record
from composer_cfg.core.templates import preview
from composer_cfg.core.values import BadLogData, host_copy

#: Records waiting after which the stage is emptied without waiting for a flush point (bounds memory).
MAX_WAITING = 10_000
#: ``send(channels, record)``: deliver one record; the failures (channel, what, error).
Send = Callable[[Sequence[Any], Record], list]
#: ``settle(records)``: the records that waited for the reduction, as they are to be delivered.
Settle = Callable[[list[Record]], list[Record]]


class Held:
    """A tensor kept on its device; `host` is its host copy once transferred (`failure` if it failed)."""

    __slots__ = ("device", "host", "path", "failure")

    def __init__(self, device: Any, path: str) -> None:
        self.device = device
        self.path = path
        self.host: Any = None
        self.failure: Exception | None = None


class TensorStage:
    """The records of one `Logger` waiting for their device tensors (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[tuple[Sequence[Any], Record, bool]] = []  # (channels, record, waits for the reduction)
        self._held: list[Held] = []
        self._delivering = 0  # deliveries in progress: a record logged meanwhile waits behind them
        self.waiting = False  # anything waits or is being delivered (read without the lock: the hot path asks)

    @staticmethod
    def keeper(held: list[Held]) -> Callable[[Any, str], Any]:
        """What `composer_cfg.core.values.normalise` makes of a tensor: a device copy kept in `held`
        (to wait here), or a host copy now."""

        def keep(tensor: Any, path: str) -> Any:
            if tensor.is_meta:
                raise BadLogData(f"log data value for key {preview(path)} is a meta tensor: it has no values to log")
            if tensor.is_cpu or tensor.is_nested or tensor.layout is not _strided():
                return host_copy(tensor)
            kept = Held(tensor.detach().clone(), path)
            held.append(kept)
            return kept

        return keep

    def wait(self, channels: Sequence[Any], record: Record, held: list[Held], reduced: bool = False) -> bool:
        """Keep `record` here if it holds device tensors, waits for the reduction (`reduced`) or
        anything waits already; whether it was kept. True with `MAX_WAITING` records waiting: the
        caller empties the stage (`deliver`)."""
        with self._lock:
            if not held and not reduced and not self._waiting and not self._delivering:
                return False
            self._waiting.append((channels, record, reduced))
            self._held.extend(held)
            self.waiting = True
            return True

    @property
    def full(self) -> bool:
        return len(self._waiting) >= MAX_WAITING

    def deliver(self, send: Send, settle: Settle | None = None) -> list[Any]:
        """Transfer every waiting tensor and send the waiting records, in order: the failures (a
        record whose tensor could not be copied is one, its key named). With `settle` (a reduction
        barrier, or a full stage), every record, those that waited for the reduction as `settle`
        makes them; without, only those logged before the first of them."""
        with self._lock:
            waiting, held = self._waiting, self._held
            cut = len(waiting) if settle is not None else next(
                (index for index, (_, _, reduced) in enumerate(waiting) if reduced), len(waiting))
            if cut:
                self._waiting, self._held = waiting[cut:], []
                waiting = waiting[:cut]
                self._delivering += 1
        if not cut:  # nothing to deliver now (tensors wait with their records); a barrier still meets the others
            if settle is not None:
                settle([])
            return []
        try:
            if held:  # the tensors of records left waiting cross too: they hold their host copies
                _transfer(held)
            failures: list[Any] = []
            ready = []
            for channels, record, reduced in waiting:
                try:
                    payload = _resolve(record.payload)
                except _Failed as failed:
                    failures.append((None, "a tensor's copy to the host", failed.error))
                    continue
                ready.append((channels, record._replace(payload=payload), reduced))
            interrupted = None
            if settle is not None:
                try:
                    settled = iter(settle([record for _, record, reduced in ready if reduced]))
                    ready = [(channels, next(settled) if reduced else record, reduced)
                             for channels, record, reduced in ready]
                except BaseException as error:  # noqa: BLE001 - a Ctrl-C: what was taken is still delivered, as it is
                    interrupted = error
            for channels, record, _ in ready:
                failures += send(channels, record)
            if interrupted is not None:
                raise interrupted
            return failures
        finally:
            with self._lock:
                self._delivering -= 1
                self.waiting = bool(self._waiting) or bool(self._delivering)


def _strided() -> Any:
    return sys.modules["torch"].strided


class _Failed(Exception):
    def __init__(self, error: Exception) -> None:
        self.error = error


def _transfer(held: list[Held]) -> None:
    """Set every `Held.host`: one copy per (device, dtype) group, one synchronisation per device; a
    group whose batched copy fails is copied tensor by tensor."""
    import torch  # a Held exists only once torch is imported

    groups: dict[tuple[Any, Any], list[Held]] = {}
    for item in held:
        groups.setdefault((item.device.device, item.device.dtype), []).append(item)
    copies = []
    for (device, _), items in groups.items():
        try:
            flat = torch.cat([item.device.reshape(-1) for item in items])
            copies.append((device, items, flat.to("cpu", non_blocking=True)))
        except Exception:  # noqa: BLE001 - copied one by one below
            _one_by_one(items)
    for device in {device for device, _, _ in copies}:
        backend = getattr(torch, device.type, None) if device.type != "cpu" else None
        if backend is not None and hasattr(backend, "synchronize"):
            backend.synchronize(device)  # the non_blocking copies are complete after this
    for _, items, host in copies:
        for item, piece in zip(items, host.split([item.device.numel() for item in items])):
            item.host, item.device = piece.view(item.device.shape), None


def _one_by_one(items: list[Held]) -> None:
    for item in items:
        try:
            item.host = host_copy(item.device)
        except Exception as error:  # noqa: BLE001 - this record is reported, the others go on
            item.failure = BadLogData(f"log data value for key {preview(item.path)}: its tensor could not be "
                                      f"copied to the host: {type(error).__name__}: {error}")
        item.device = None


def _resolve(value: Any) -> Any:
    """`value` with each `Held` replaced by its host copy (containers are the normaliser's own)."""
    kind = type(value)
    if kind is Held:
        if value.failure is not None:
            raise _Failed(value.failure)
        return value.host
    if kind is dict:
        return {key: _resolve(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return kind(_resolve(item) for item in value)
    if kind is set or kind is frozenset:
        return kind(_resolve(item) for item in value)
    return value
