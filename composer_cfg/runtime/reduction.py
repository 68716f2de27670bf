"""`Reduction`: keys logged on every rank, combined across ranks at a few barriers, not per call.

``Logger(reduce={"loss/*": "mean", "tokens": "sum", "grad_norm": "max"})``: the values of keys
that match a pattern (``fnmatch``: ``*``, ``?``, ``[...]``) are exchanged at the next reduction
barrier: a ``batch_end`` every `every` batches, ``epoch_end``, ``fit_end``, a checkpoint event,
`Logger.flush` and `Logger.close`, which every rank must reach in the same order. On rank 0 a
record holding such a key waits in the tensor stage until then, with every record after it (each
destination still sees calls in order), and is rewritten there: each value becomes the
combination over the ranks that logged it, and for ``min`` and ``max`` ``<key>/rank`` says which
rank held it (the lowest on a tie; a NaN wins both). Another rank notes its values at the call
and its records go on at once, with its own values. At a barrier every rank sends what it has
(device tensors crossed to the host with the stage's one batched copy) in one exchange over a
gloo group made at INIT: two ``all_gather`` calls (sizes, then the values), with the barrier's
name and number.

Values are matched across ranks by the record's batch (the sampling tick for the machine's own
metrics, `composer_cfg.runtime.system_metrics`), the key, and how many times the key was logged
at that batch since the last barrier. A rank that did not log a value is left out of that
value's combination (counted: ``missing``); a value rank 0 did not log is not recorded. A value
that is not one number is left as each rank logged it (said once per key).

Bounded: the gloo group's timeout is the barrier's deadline, and the wait for it is cut short by
a Ctrl-C or a SIGTERM. A rank that died or does not reach a barrier in time, ranks that reached
different barriers (an event fired on rank 0 only), a rank that ends other than FINISHED, or
10,000 values waiting on a rank (a loop that fires no events and never calls `flush`; those are
delivered as they are, counted: ``unreduced``; on rank 0 every record waiting behind a reduced
one counts): each turns the reduction off on every rank that
notices, said once, and from then on each rank records its own values. Without a process group,
or with one rank, the reduction is off from the start (said once).
"""

from __future__ import annotations

import datetime
import fnmatch
import logging
import math
import pickle
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from composer_cfg.config.params import POSITIVE, REDUCE, positive_int
from composer_cfg.core.events import Event
from composer_cfg.core.record import Kind, Record
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.runtime import exit_hooks
from composer_cfg.runtime.tensor_stage import MAX_WAITING, Held

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
        self._lock = threading.Lock()  # one barrier at a time
        self._noting = threading.Lock()  # the values noted at the call (ranks other than 0)
        self._pending: list[tuple[Slot, Any]] = []
        self._seen: dict[tuple[Any, str], int] = {}
        self._overflowed = False  # values went unreduced since the last barrier: the next one turns it off
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
        try:  # every rank of the default group must come: a Logger with reduce is built on every rank
            self._group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=self.timeout))
        except Exception as error:  # noqa: BLE001 - the run goes on, each rank with its own values
            self._say("off", "reduce: the logger's group across the %d ranks could not be made (%s: %s); every rank "
                      "logs its own values (build the logger on every rank)", dist.get_world_size(),
                      type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")
            return
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

    def keeps(self, record: Record) -> bool:
        """Whether `record` waits for the next barrier: on rank 0, one holding a key to combine
        (it is rewritten there). Another rank notes the values to send at the call, and its record
        goes on at once."""
        if not self.active or record.kind is not Kind.DATA:
            return False
        ops = self._ops
        if not any((ops[key] if key in ops else self.op_of(key)) is not None for key in record.payload):
            return False
        if self._rank == 0:
            return True
        with self._noting:
            if len(self._pending) >= MAX_WAITING:
                self._overflow(len(self._values_of(record, {})))
            else:
                self._pending.extend((slot, value) for slot, value, _ in self._values_of(record, self._seen))
        return False

    def due(self, event: Event, timestamp: Timestamp) -> bool:
        """Whether a barrier comes right before `event` is handed on (checkpoints barrier by themselves)."""
        return self.active and (event in BARRIER_EVENTS or event is Event.BATCH_END
                                and int(timestamp.batch) % self.every == 0)

    # -- at a barrier ------------------------------------------------------------------------

    def barrier(self, records: list[Record], name: str) -> list[Record]:
        """Every rank's values since the last barrier to every rank, in one gather, at the
        barrier `name`: on rank 0 the waiting `records` with each value combined; elsewhere, and
        once off, `records` as they are. A Ctrl-C or SIGTERM meanwhile turns it off (and is raised)."""
        if not self.active:
            return records
        if exit_hooks.terminating():  # the ranks end now, each at its own point: no barrier can meet
            self._off("the run is being terminated")
            return records
        if not self._lock.acquire(timeout=self.timeout):
            self._off("another barrier of this rank did not end")
            return records
        try:
            if not self.active:
                return records
            with self._noting:
                pending, self._pending, self._seen = self._pending, [], {}
                overflowed, self._overflowed = self._overflowed, False
            seen: dict[tuple[Any, str], int] = {}  # rank 0's records waited: their values are read here
            placed = [self._values_of(record, seen) for record in records]
            mine = {slot: value for values in placed for slot, value, _ in values}
            mine.update((slot, number) for slot, number in _numbers(pending))
            label = (self.counts["barriers"], name, overflowed)
            try:
                gathered = self._gather((label, mine))
            except _Abandoned as abandoned:
                self._off(str(abandoned))
                return records
            except Exception as error:  # noqa: BLE001 - a dead or late rank: each rank logs its own from now on
                self._off(f"a barrier across the {self._world_size} ranks failed ({type(error).__name__}: "
                          f"{str(error).splitlines()[0][:200] if str(error) else ''})")
                return records
            except BaseException as interrupt:  # Ctrl-C, SIGTERM: the group is out of step from now on
                self._off(f"a barrier was interrupted ({type(interrupt).__name__})")
                raise
            labels = [theirs for theirs, _ in gathered]
            return self._settled(records, placed, labels, [values for _, values in gathered], label)
        finally:
            self._lock.release()

    def overflowed(self, records: list[Record]) -> list[Record]:
        """Records delivered before a barrier (rank 0's stage was full): with this rank's own
        values, counted; the next barrier turns the reduction off on every rank."""
        if self.active:
            self._overflow(sum(len(self._values_of(record, {})) for record in records))
        return records

    def stop(self, why: str) -> None:
        """Off from now on (this rank will meet no other at a barrier), said once."""
        if self.active:
            self._off(why)

    def unmatched(self) -> list[str]:
        """The patterns that matched no key logged so far."""
        return [pattern for pattern in self.patterns if pattern not in self._matched]

    def close(self) -> None:
        """After the last barrier: say which patterns never matched a key; end the group (only
        after a barrier that met every rank: one that failed may leave it unusable)."""
        unmatched = self.unmatched()
        if unmatched and self.started:
            LOG.warning("reduce: no logged key matched %s", ", ".join(repr(p) for p in unmatched))
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():  # the script may have ended every group itself
                try:
                    dist.destroy_process_group(self._group)
                except Exception as error:  # noqa: BLE001 - the group is of no use any more either way
                    LOG.debug("reduce: ending the logger's group: %s: %s", type(error).__name__, error)
        self.active, self._group = False, None

    def report(self) -> dict[str, Any]:
        """What the reduction did: whether it `started`, its barriers, collective calls, values
        combined and missing, values delivered unreduced, patterns that matched nothing."""
        return {"started": self.started, **self.counts, "unmatched": self.unmatched() if self.started else []}

    # -- internals ---------------------------------------------------------------------------

    def _settled(self, records: list[Record], placed: list[list[tuple[Slot, Any, str]]], labels: list[Any],
                 values: list[dict[Slot, float | int]], label: tuple[int, str, bool]) -> list[Record]:
        """What the gathered `labels` and `values` make of `records`."""
        if any(overflowed for _, _, overflowed in labels):
            ranks = ", ".join(str(rank) for rank, (_, _, overflowed) in enumerate(labels) if overflowed)
            self._off(f"10,000 records waited for an exchange on rank(s) {ranks} (lower reduce_every, or fire "
                      f"batch_end or call logger.flush() on every rank)")
            return records
        if any(theirs[:2] != label[:2] for theirs in labels):
            self._off("the ranks reached different barriers (" + ", ".join(
                f"rank {rank}: {theirs[1]}" for rank, theirs in enumerate(labels)) + f", at barrier {label[0] + 1}"
                      "); fire the same events, and call flush, on every rank")
            return records
        if self._rank != 0:
            return records
        results = self._combine(values)
        return [self._rewritten(record, found, results) if found else record for record, found in zip(records, placed)]

    def _values_of(self, record: Record, seen: dict[tuple[Any, str], int]) -> list[tuple[Slot, Any, str]]:
        """The (slot, number, op) of each value of `record` to combine, in payload order (a
        device tensor's `Held` as it is); `seen` counts the values of each (place, key) met before
        (updated)."""
        if record.kind is not Kind.DATA:
            return []
        where = self._place_of(record)
        found = []
        for key, value in record.payload.items():
            op = self.op_of(key)
            if op is None:
                continue
            number = value if type(value) is Held else _number(value)
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

    def _gather(self, mine: Any) -> list[Any]:
        """`mine` of every rank, in rank order: two all-gathers (sizes, then the pickled values)
        that this thread waits for in short steps, so a Ctrl-C or a SIGTERM is not held up."""
        import torch
        import torch.distributed as dist  # started: torch.distributed is imported

        self.counts["barriers"] += 1
        self.counts["collectives"] += 2
        data = bytearray(pickle.dumps(mine, protocol=pickle.HIGHEST_PROTOCOL))
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self._world_size)]
        self._wait(dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64), group=self._group,
                                   async_op=True))
        longest = max(int(size) for size in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8)
        padded[:len(data)] = torch.frombuffer(data, dtype=torch.uint8)
        buffers = [torch.empty(longest, dtype=torch.uint8) for _ in range(self._world_size)]
        self._wait(dist.all_gather(buffers, padded, group=self._group, async_op=True))
        return [pickle.loads(buffer[:int(size)].numpy().tobytes()) for buffer, size in zip(buffers, sizes)]

    def _wait(self, work: Any) -> None:
        """Until `work` is done, looking in steps growing from 0.1 to 10 ms (not holding a core a
        rank may need); a SIGTERM gives it up."""
        pause = 0.0001
        while not work.is_completed():
            if exit_hooks.terminating():
                raise _Abandoned("the run is being terminated")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        work.wait()

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
            if key not in ops or ops[key][0] not in results:
                payload[key] = value
                continue
            slot, op = ops[key]
            payload[key], rank = results[slot]
            if op in ("min", "max"):
                payload[f"{key}/rank"] = rank
        return record._replace(payload=payload)

    def _overflow(self, values: int) -> None:
        self._overflowed = True
        self.counts["unreduced"] += values
        self._say("overflow", "reduce: records are delivered with this rank's own values: 10,000 waited for an "
                  "exchange (lower reduce_every, or fire batch_end or call logger.flush() on every rank); the next "
                  "exchange ends the reduction")

    def _off(self, why: str) -> None:
        self.active, self._group = False, None
        self._say("off", "reduce: %s; the reduction is off for the rest of the run and every rank logs its own "
                  "values", why)

    def _say(self, key: str, message: str, *args: Any) -> None:
        if key not in self._said:
            self._said.add(key)
            LOG.warning(message, *args)


class _Abandoned(Exception):
    """A barrier given up on this rank (the run is being terminated)."""


def _numbers(pending: list[tuple[Slot, Any]]) -> list[tuple[Slot, float | int]]:
    """The noted values, each device tensor's host copy read (it crossed before the barrier);
    one whose copy failed is left out."""
    numbers = []
    for slot, value in pending:
        if type(value) is Held:
            value = None if value.failure is not None or value.host is None else _number(value.host)
        if value is not None:
            numbers.append((slot, value))
    return numbers


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
    """`op` over the (rank, value) pairs: the value, and the rank holding it for min and max (a
    NaN wins both, at its lowest rank). Sums too large for a float are infinite, not errors."""
    numbers = [value for _, value in present]
    if op in ("min", "max"):
        nan = next(((rank, value) for rank, value in present if value != value), None)
        if nan is not None:
            return nan[1], nan[0]
        pick = min if op == "min" else max
        rank, value = pick(present, key=lambda pair: (pair[1], -pair[0]) if op == "max" else (pair[1], pair[0]))
        return value, rank
    if op == "sum" and all(type(n) is int for n in numbers):
        return sum(numbers), -1
    try:
        total = math.fsum(numbers)
    except (OverflowError, ValueError):  # inf - inf, or past the largest float: as float arithmetic says
        total = sum(_as_float(n) for n in numbers)
    return (total / len(numbers) if op == "mean" else total), -1


def _as_float(number: float | int) -> float:
    try:
        return float(number)
    except OverflowError:  # an int past the largest float
        return math.inf if number > 0 else -math.inf
