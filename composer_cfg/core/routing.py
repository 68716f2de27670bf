"""How a `Logger` reaches its destinations, decided once when it is built: their names, one channel
each (of the kind each declares), and the tables that say which channels take a record.

A destination whose threshold excludes a level, that is `rank_zero_only` on another rank, or that
acts at no event and has no flush due at one, is in no table for it: such a call costs it nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS
from composer_cfg.core.sink import CHANNELS, Policies, SinkContext
from composer_cfg.runtime.channel import Channel, SpoolFactory
from composer_cfg.runtime.inline_channel import InlineChannel
from composer_cfg.runtime.keyed_channel import KeyedChannel
from composer_cfg.runtime.meter import Meter
from composer_cfg.runtime.thread_channel import ThreadChannel

DestinationsGiven = Policies | Sequence[Policies | None] | Mapping[str, Policies | None] | None
LOG = logging.getLogger("composer_cfg")
_KINDS: dict[str, type[Channel]] = {"inline": InlineChannel, "thread": ThreadChannel, "keyed": KeyedChannel}


class Member(NamedTuple):
    """A destination as its Logger holds it."""

    name: str
    destination: Policies
    channel: Channel
    meter: Meter | None


def named(destinations: DestinationsGiven) -> list[tuple[str, Policies]]:
    """(name, destination) pairs: a mapping's keys, else each class's name (``FileLogger``, then
    ``FileLogger#2``...: a name says which one); None values left out."""
    if destinations is None:
        items: Iterable[tuple[str | None, Any]] = ()
    elif isinstance(destinations, Policies):
        items = [(None, destinations)]
    elif isinstance(destinations, Mapping):
        items = destinations.items()
    elif isinstance(destinations, Sequence) and not isinstance(destinations, str):
        items = [(None, destination) for destination in destinations]
    else:
        raise TypeError(f"destinations must be a LoggerDestination, a sequence or a mapping, got {destinations!r}")
    pairs = []
    for name, destination in items:
        if destination is None:
            continue
        if not isinstance(destination, Policies):
            raise TypeError(f"destination {name or len(pairs)} is not a LoggerDestination or a Sink: {destination!r}")
        if name is None:
            name = base = type(destination).__name__
            count = 1
            while any(name == taken for taken, _ in pairs):
                count += 1
                name = f"{base}#{count}"
        pairs.append((str(name), destination))
    return pairs


def threshold(name: str, destination: Policies) -> LogLevel | None:
    """The destination's `log_level`, parsed (it may be written as ``"epoch"``)."""
    level = destination.log_level
    try:
        return None if level is None else LogLevel.parse(level)
    except ValueError as error:
        raise ValueError(f"destination {name!r}: log_level: {error}") from None


def member(name: str, destination: Policies, *, context: Callable[[], SinkContext], spool: SpoolFactory | None,
           hold: bool, measure: bool) -> Member:
    """The destination with its channel, of the kind it declares (nothing is opened yet)."""
    kind = destination.channel_kind
    if kind not in CHANNELS:
        raise ValueError(f"destination {name!r}: channel_kind must be one of {', '.join(CHANNELS)}, got {kind!r}")
    options: dict[str, Any] = {"concurrency": destination.upload_workers} if kind == "keyed" else {}
    undelivered = spool if destination.delivery_policy.undelivered == "spool" else None
    channel = _KINDS[kind](name, destination, destination.sink(), context=context, spool=undelivered,
                           hold=hold and destination.holds_until_checkpoint, **options)
    attach = getattr(destination, "attach", None)
    if attach is not None:
        attach(channel)  # a destination driven by hand as well goes through the same channel
    meter = Meter() if measure else None
    if meter is not None:
        meter.attach(channel)
    return Member(name, destination, channel, meter)


class Routes:
    """Which channels take each kind of record (see the module's docstring)."""

    def __init__(self, members: Sequence[Member]) -> None:
        levels = [(m.channel, threshold(m.name, m.destination)) for m in members if m.destination.takes_data]
        self.data = {level: (level, tuple(c for c, t in levels if t is None or level <= t)) for level in LogLevel}
        self.events = {event: tuple(m.channel for m in members if _listens(m.channel, event)) for event in Event}
        self.artifacts = tuple(m.channel for m in members if m.destination.takes_artifacts())
        self.hyperparameters = tuple(m.channel for m in members
                                     if m.destination.takes_data and m.destination.takes_hyperparameters)
        self.everything = tuple(m.channel for m in members)
        batch = set(map(id, self.data[LogLevel.BATCH][1]))
        self.media = {kind: Shown(tuple(m.channel for m in members if id(m.channel) in batch and kind in _shows(m)),
                                  tuple(m.name for m in members if id(m.channel) in batch and kind not in _shows(m)))
                      for kind in KINDS}
        # Those that store no artifacts first (their last flush publishes files to those that do),
        # local ones before remote ones (a hung server never keeps a local file from its last
        # flush), artifact stores last.
        takes = set(map(id, self.artifacts))
        self.close_order = tuple(sorted(self.everything, key=lambda c: (id(c) in takes, c.destination.remote,
                                                                          c.kind == "keyed")))
        self.members = tuple(members)

    def identities(self, which: str | None = None) -> dict[str, Any]:
        """Who each destination is in its back end (`Sink.identity`), by name; with `which`, of
        those whose policy of that name is true (``writes_records``, ``rolls_back``: `Policies`)."""
        return {m.name: m.channel.identity() for m in self.members if which is None or getattr(m.destination, which)}

    def report(self) -> dict[str, dict[str, Any]]:
        """What each destination did so far, by name (`Logger.report`); those with nothing to say left out."""
        report = {}
        for m in self.members:
            figures = {**(m.meter.report() if m.meter is not None else {}), **m.channel.report()}
            not_shown = {kind: shown.missed[m.name] for kind, shown in self.media.items() if shown.missed.get(m.name)}
            if not_shown:
                figures["media_not_shown"] = not_shown
            if figures:
                report[m.name] = figures
        return report

    def overhead(self) -> dict[str, dict[str, Any]]:
        """With `measure_overhead`, what each destination cost the threads that logged; {} without."""
        return {m.name: m.meter.report() for m in self.members if m.meter is not None}


class Shown:
    """Where one kind of media goes: the channels of the destinations that show it, and the names
    of those that take data at its level but can not show it (each said once, then counted)."""

    def __init__(self, channels: tuple[Channel, ...], elsewhere: tuple[str, ...]) -> None:
        self.channels = channels
        self.elsewhere = elsewhere
        self.missed: dict[str, int] = {}

    def not_shown(self, kind: str) -> None:
        """Count an item of `kind` that the destinations in `elsewhere` did not get; say it the first time."""
        for destination in self.elsewhere:
            if destination not in self.missed:
                LOG.warning("destination %r can not show %s; they are left out of it (counted in its report: "
                            "media_not_shown)", destination, "images" if kind == "images" else f"{kind}s")
            self.missed[destination] = self.missed.get(destination, 0) + 1


def _shows(m: Member) -> frozenset[str]:
    return frozenset(m.destination.shows_media)


def _listens(channel: Channel, event: Event) -> bool:
    schedule = channel.schedule
    return event in channel.events or (schedule is not None and schedule.may_flush_at(event))
