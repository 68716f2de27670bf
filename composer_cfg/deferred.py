"""`DeferredValues`: tensors stay on their device until a flush point, then cross to the host in one copy.

A training loop that logs a device tensor every batch would otherwise wait for the device once
per value (every host copy is a synchronisation). With ``Logger(..., defer_tensors=True)``:

* a call whose data holds a tensor is checked at once (`composer_cfg.core.values.normalise`, so a
  bad key still raises at the call; FIT data redacted, as without deferral) and queued, its tensors kept as detached copies *on their
  device* (a device-side copy: the caller may change its tensor afterwards), with the level,
  the routes, and a copy of the state carrying the call's timestamp and wall-clock time;
* while anything is queued (or being delivered), later calls queue behind it, so destinations
  see calls in order, from several threads too;
  a call without tensors and nothing queued is delivered at once, as without deferral;
* at the next flush point (an event after which a destination's `flush_schedule` flushes,
  `Logger.flush`, `Logger.close`, or `MAX_PENDING` queued calls) every queued tensor is
  flattened and concatenated per (device, dtype), copied to the host with one
  ``non_blocking`` transfer per group, the device is synchronised once, and the calls are
  delivered in their original order with host tensors of the original shapes and dtypes.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from composer_cfg.core.log_level import LogLevel
    from composer_cfg.core.state import State

#: Queued calls after which the queue is delivered even without a flush point (bounds memory).
MAX_PENDING = 10_000
Send = Callable[[Any, "State", "LogLevel", dict], list]
Check = Callable[["LogLevel", Any, Callable[[Any], Any]], dict]


class Held:
    """A tensor kept on its device in queued data; `host` is its host copy once transferred."""

    __slots__ = ("device", "host")

    def __init__(self, device: Any) -> None:
        self.device = device
        self.host: Any = None


class DeferredValues:
    """The queue of one `Logger` in deferred mode (see the module's docstring).

    `check(level, data, tensor)` makes a call's data what destinations receive, a tensor becoming
    `tensor(it)`; `send(routes, state, level, data)` delivers one call and returns its failures.
    """

    def __init__(self, check: Check, send: Send) -> None:
        self._check = check
        self._send = send
        self._calls: list[tuple[Any, State, LogLevel, dict[str, Any]]] = []
        self._held: list[Held] = []
        self._lock = threading.Lock()
        self._delivering = 0  # deliveries in progress: a call made meanwhile queues, so it stays behind them

    def __len__(self) -> int:
        return len(self._calls)

    def log(self, state: State, level: LogLevel, routes: Any, data: Any) -> list[Any]:
        """Deliver the call now (no tensor in it, nothing queued) or queue it: the failures of what was delivered."""
        held: list[Held] = []

        def hold(tensor: Any) -> Held:
            kept = Held(tensor.detach().clone())
            held.append(kept)
            return kept

        checked = self._check(level, data, hold)
        with self._lock:
            if not held and not self._calls and not self._delivering:
                queued = False
            else:
                queued = True
                snapshot = copy.copy(state)
                if snapshot.log_time is None:
                    snapshot.log_time = time.time()
                # the normaliser passes a dict of plain scalars through: copy it, the caller may reuse it
                self._calls.append((routes, snapshot, level, dict(checked) if checked is data else checked))
                self._held.extend(held)
                full = len(self._calls) >= MAX_PENDING
        if not queued:
            return self._send(routes, state, level, checked)
        return self.deliver() if full else []

    def deliver(self) -> list[Any]:
        """Transfer every queued tensor to the host and deliver the queued calls in order: their failures."""
        with self._lock:
            calls, held = self._calls, self._held
            if not calls:
                return []
            self._calls, self._held = [], []
            self._delivering += 1
        try:
            try:
                _transfer(held)
            except Exception as error:  # the device failed: the queued calls are lost, for each destination they had
                members = {id(member): member for routes, _, _, _ in calls for member, _ in routes}
                return [(member, "log_data", error) for member in members.values()]
            failures: list[Any] = []
            for routes, state, level, data in calls:
                failures += self._send(routes, state, level, _resolve(data))
            return failures
        finally:
            with self._lock:
                self._delivering -= 1


def _transfer(held: list[Held]) -> None:
    """Set every `Held.host`: one copy per (device, dtype) group, one synchronisation per device."""
    import torch  # a Held exists only once torch is imported

    groups: dict[tuple[Any, Any], list[Held]] = {}
    for item in held:
        groups.setdefault((item.device.device, item.device.dtype), []).append(item)
    copies = []
    for (device, _), items in groups.items():
        flat = torch.cat([item.device.reshape(-1) for item in items])
        copies.append((device, items, flat.to("cpu", non_blocking=True)))
    for device in {device for device, _, _ in copies}:
        backend = getattr(torch, device.type, None) if device.type != "cpu" else None
        if backend is not None and hasattr(backend, "synchronize"):
            backend.synchronize(device)  # the non_blocking copies are complete after this
    for _, items, host in copies:
        for item, piece in zip(items, host.split([item.device.numel() for item in items])):
            item.host, item.device = piece.view(item.device.shape), None


def _resolve(value: Any) -> Any:
    """`value` with each `Held` replaced by its host copy (containers are the normaliser's fresh ones)."""
    kind = type(value)
    if kind is Held:
        return value.host
    if kind is dict:
        return {key: _resolve(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return kind(_resolve(item) for item in value)
    if kind is set or kind is frozenset:
        return kind(_resolve(item) for item in value)
    return value
