"""`Reduction`: keys logged on every rank, combined across ranks at a few barriers, not per call.

``Logger(reduce={"loss/*": "mean", "tokens": "sum", "grad_norm": "max"})``: a record holding a
key that matches a pattern (``fnmatch``: ``*``, ``?``, ``[...]``) waits in the tensor stage, with
every record after it (each destination still sees calls in order), until the next reduction
barrier: a ``batch_end`` every `every` batches, ``epoch_end``, ``fit_end``, a checkpoint event,
`Logger.flush` and `Logger.close`, which every rank must reach in the same order. There each
rank's values (device tensors crossed to the host with the stage's one batched copy) go to every
rank in one ``all_gather_object`` over a gloo group made at INIT (two collective calls inside
torch), with the barrier's name and number, and rank 0's records are rewritten: each value becomes the combination over the ranks that logged it, and for
``min`` and ``max`` ``<key>/rank`` says which rank held it (the lowest on a tie). Other ranks keep
their own values for their own destinations.

Values are matched across ranks by the record's batch (the sampling tick for the machine's own
metrics, `composer_cfg.runtime.system_metrics`), the key, and how many times the key was logged
at that batch before. A rank that did not log a value is left out of that value's combination
(counted: ``missing``); a value rank 0 did not log is not recorded. A value that is not one number
is left as each rank logged it (said once per key).

Bounded: the gloo group's timeout is the barrier's deadline. A rank that died or does not reach a
barrier in time, or ranks that reached different barriers (an event fired on rank 0 only), turn
the reduction off on every rank that notices (said once): each records its own values from then
on; after a SIGTERM there is no barrier at all. Without a process group, or with one rank, the reduction is off from
the start (said once). 10,000 records waiting on a rank (a loop that fires no events and never
calls `flush`) are delivered with that rank's own values (counted: ``unreduced``).
"""

from __future__ import annotations

import datetime
import fnmatch
import logging
import math
import sys
import threading
from collections.abc import Mapping
from typing import Any

from composer_cfg.config.params import POSITIVE, REDUCE, positive_int
from composer_cfg.core.events import Event
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.runtime import exit_hooks

LOG = logging.getLogger("composer_cfg")
#: Events a training loop fires on every rank, at which the reduction always happens (``batch_end``
#: only every `Reduction.every` batches; checkpoints, flush and close too). Not ``eval_end``: many
#: loops evaluate on rank 0 only.
BARRIER_EVENTS = frozenset({Event.EPOCH_END, Event.FIT_END})
#: The prefix of the machine's own metrics, matched across ranks by their sampling tick.
SYSTEM_PREFIX = "system/"
#: A value's place: (the record's batch, or ("tick", n) for the machine's metrics; key; occurrence).
Slot = tuple[Any, str, int]


class Reduction:
    """The reduction of one `Logger` (see the module's docstring); off until `start`.

    >>> reduction = Reduction({"loss/*": "mean", "tokens": "sum"})
    >>> reduction.op_of("loss/train"), reduction.op_of("tokens"), reduction.op_of("lr")
    ('mean', 'sum', None)
    """

    def __init__(self, patterns: Mapping[str, str], every: int = 10, timeout: float = 300.0,
                 tick_seconds: float | None = None) -> None:
        self.patterns = REDUCE.check("reduce", patterns)
        self.every = positive_int("reduce_every", every)
        self.timeout = float(POSITIVE.check("reduce_timeout", timeout))
        self.tick_seconds = tick_seconds
        self.active = False
        self.started = False  # whether it ran across ranks at all
        self._ops: dict[str, str | None] = {}  # key -> its op (None: no pattern matches): asked once per key
        self._matched: set[str] = set()
        self._group: Any = None
        self._rank = 0
        self._world_size = 1
        self._lock = threading.Lock()
        self._said: set[str] = set()
        self.counts = {"barriers": 0, "collectives": 0, "reduced": 0, "missing": 0, "unreduced": 0}

    # -- set up ------------------------------------------------------------------------------

    def start(self) -> None:
        """INIT: make the gloo group every barrier gathers over (a collective every rank calls), or
        say once why the reduction stays off."""
        dist = sys.modules.get("torch.distributed")
        if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() < 2:
            LOG.warning("reduce: there is no torch.distributed process group with several ranks (initialise it "
                        "before the logger); every rank logs its own values")
            return
        self._group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=self.timeout))
        self._rank, self._world_size = dist.get_rank(), dist.get_world_size()
        self.active = self.started = True

    def forget(self) -> None:
        """In a forked child: never take part in a collective of the parent's group."""
        self.active, self._group = False, None

    # -- on the hot path ---------------------------------------------------------------------

    def op_of(self, key: str) -> str | None:
        """The operation `key` is combined with, or None."""
        try:
            return self._ops[key]
        except KeyError:
            op = next((op for pattern, op in self.patterns.items() if fnmatch.fnmatchcase(key, pattern)), None)
            if op is not None:
                self._matched.update(p for p in self.patterns if fnmatch.fnmatchcase(key, p))
            self._ops[key] = op
            return op

    def wants(self, record: Record) -> bool:
        """Whether `record` waits for the next barrier (it holds a key to combine)."""
        if not self.active or record.kind is not Kind.DATA:
            return False
        ops = self._ops
        for key in record.payload:
            op = ops[key] if key in ops else self.op_of(key)
            if op is not None:
                return True
        return False

    def due(self, event: Event, timestamp: Timestamp) -> bool:
        """Whether a barrier comes right before `event` is handed on (checkpoints barrier by themselves)."""
        return self.active and (event in BARRIER_EVENTS or event is Event.BATCH_END
                                and int(timestamp.batch) % self.every == 0)

    # -- at a barrier ------------------------------------------------------------------------

    def barrier(self, records: list[Record], name: str) -> list[Record]:
        """Every rank's values of the waiting `records` to every rank, in one gather, at the
        barrier `name`: on rank 0 the records with each value combined; elsewhere, and once off,
        the records as they are."""
        with self._lock:
            if not self.active:
                return records
            if exit_hooks.terminating():  # the ranks end now, each at its own point: no barrier can meet
                self._off("the run is being terminated")
                return records
            seen: dict[tuple[Any, str], int] = {}
            placed = [self._values_of(record, seen) for record in records]
            mine = {slot: value for values in placed for slot, value, _ in values}
            label = (self.counts["barriers"], name)
            try:
                gathered = self._gather(label, mine)
            except Exception as error:  # noqa: BLE001 - a dead or late rank: each rank logs its own from now on
                self._off(f"a barrier across the {self._world_size} ranks failed ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:200] if str(error) else ''})")
                return records
            labels = [theirs for theirs, _ in gathered]
            if any(theirs != label for theirs in labels):
                self._off("the ranks reached different barriers (" + ", ".join(
                    f"rank {rank}: {theirs[1]}" for rank, theirs in enumerate(labels)) + f", at barrier {label[0] + 1}"
                          "); fire the same events, and call flush, on every rank")
                return records
            if self._rank != 0:
                return records
            results = self._combine([values for _, values in gathered])
            return [self._rewritten(record, values, results) if values else record
                    for record, values in zip(records, placed)]

    def overflowed(self, records: list[Record]) -> list[Record]:
        """Records delivered before a barrier (the stage was full): with this rank's own values, counted."""
        if self.active:
            count = sum(len(self._values_of(record, {})) for record in records)
            self.counts["unreduced"] += count
            self._say("overflow", "reduce: %d value(s) were delivered with this rank's own values: 10,000 records "
                      "waited for a barrier (fire batch_end or call logger.flush() on every rank)", count)
        return records

    def unmatched(self) -> list[str]:
        """The patterns that matched no key logged so far."""
        return [pattern for pattern in self.patterns if pattern not in self._matched]

    def close(self) -> None:
        """After the last barrier: say which patterns never matched a key."""
        unmatched = self.unmatched()
        if unmatched and self.started:
            LOG.warning("reduce: no logged key matched %s", ", ".join(repr(p) for p in unmatched))
        self.active, self._group = False, None

    def report(self) -> dict[str, Any]:
        """What the reduction did: whether it `started`, its barriers, collective calls, values
        combined and missing, values delivered unreduced, patterns that matched nothing."""
        return {"started": self.started, **self.counts, "unmatched": self.unmatched() if self.started else []}

    # -- internals ---------------------------------------------------------------------------

    def _values_of(self, record: Record, seen: dict[tuple[Any, str], int]) -> list[tuple[Slot, float | int, str]]:
        """The (slot, number, op) of each value of `record` to combine, in payload order; `seen`
        counts the values of each (place, key) met before (updated)."""
        if record.kind is not Kind.DATA:
            return []
        where = self._place_of(record)
        found = []
        for key, value in record.payload.items():
            op = self.op_of(key)
            if op is None:
                continue
            number = _number(value)
            if number is None:
                self._say(f"value {key}", "reduce: the value of %r is not one number; it is logged as each rank "
                          "has it", key)
                continue
            occurrence = seen.get((where, key), 0)
            seen[(where, key)] = occurrence + 1
            found.append(((where, key, occurrence), number, op))
        return found

    def _place_of(self, record: Record) -> Any:
        if self.tick_seconds is not None and all(k.startswith(SYSTEM_PREFIX) for k in record.payload):
            return ("tick", round(record.time / self.tick_seconds))
        return int(record.timestamp.batch)

    def _gather(self, label: tuple[int, str], mine: dict[Slot, float | int]) -> list[Any]:
        """(label, values) of every rank, in rank order."""
        import torch.distributed as dist  # started: torch.distributed is imported

        self.counts["barriers"] += 1
        gathered: list[Any] = [None] * self._world_size
        self.counts["collectives"] += 1
        dist.all_gather_object(gathered, (label, mine), group=self._group)
        return gathered

    def _off(self, why: str) -> None:
        self.active, self._group = False, None
        LOG.warning("reduce: %s; the reduction is off for the rest of the run and every rank logs its own values", why)

    def _combine(self, gathered: list[dict[Slot, float | int]]) -> dict[Slot, tuple[float | int, int]]:
        """(combined value, rank of the min or max) of every slot rank 0 holds."""
        results = {}
        for slot in gathered[0]:
            present = [(rank, values[slot]) for rank, values in enumerate(gathered) if slot in values]
            self.counts["missing"] += self._world_size - len(present)
            results[slot] = _combine(self.op_of(slot[1]) or "mean", present)
        self.counts["reduced"] += len(results)
        return results

    def _rewritten(self, record: Record, values: list[tuple[Slot, Any, str]],
                   results: dict[Slot, tuple[float | int, int]]) -> Record:
        ops = {slot[1]: (slot, op) for slot, _, op in values}
        payload: dict[str, Any] = {}
        for key, value in record.payload.items():
            if key not in ops:
                payload[key] = value
                continue
            slot, op = ops[key]
            payload[key], rank = results[slot]
            if op in ("min", "max"):
                payload[f"{key}/rank"] = rank
        return record._replace(payload=payload)

    def _say(self, key: str, message: str, *args: Any) -> None:
        if key not in self._said:
            self._said.add(key)
            LOG.warning(message, *args)


def _number(value: Any) -> float | int | None:
    """`value` as one Python number, or None (a string, a list, a tensor of several values...)."""
    kind = type(value)
    if kind is float or kind is int:
        return value
    size = getattr(value, "size", None)
    count = value.numel() if callable(getattr(value, "numel", None)) else size
    if count != 1 or not callable(getattr(value, "item", None)):
        return None
    number = value.item()
    return number if type(number) in (float, int) else None


def _combine(op: str, present: list[tuple[int, float | int]]) -> tuple[float | int, int]:
    """`op` over the (rank, value) pairs: the value, and the rank holding it for min and max."""
    numbers = [value for _, value in present]
    if op == "mean":
        return math.fsum(numbers) / len(numbers), -1
    if op == "sum":
        return (sum(numbers) if all(type(n) is int for n in numbers) else math.fsum(numbers)), -1
    pick = min if op == "min" else max
    rank, value = pick(present, key=lambda pair: (pair[1], -pair[0]) if op == "max" else (pair[1], pair[0]))
    return value, rank
