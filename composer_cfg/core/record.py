"""`Record`: one logged call, built once by the `Logger` and never changed; `RunFacts`: the run it
belongs to.

Every call a `Logger` takes (data, hyperparameters, a file artifact, an event) becomes one
`Record` before any destination sees it: its data normalised (`composer_cfg.core.values`), FIT
data and hyperparameters masked (`composer_cfg.core.secrets`), the timestamp and the wall-clock
time of the call taken at the call. The caller may change its dict, tensors or arrays the moment
the call returns: the record holds copies. Destinations read records and never modify them.

>>> from composer_cfg.core.log_level import LogLevel
>>> record = Record(Kind.DATA, LogLevel.BATCH, Timestamp(batch=3), 1700000000.0, {"loss": 0.25})
>>> record.kind.value, int(record.timestamp.batch), record.payload
('data', 3, {'loss': 0.25})
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from composer_cfg.core.dist import DistInfo
from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.timestamp import Timestamp


class Kind(str, Enum):
    """What a record holds (its `Record.payload`)."""

    DATA = "data"  # a dict of values, at `Record.level`
    HYPERPARAMETERS = "hyperparameters"  # a nested dict: the run's configuration
    ARTIFACT = "artifact"  # an `Artifact`: a file to publish
    EVENT = "event"  # an `EventPoint`: a point of the training loop
    PRINTED = "printed"  # a `Printed`: text the process wrote to stdout or stderr (a text log captures it)
    MEDIA = "media"  # an `Images`, `Table` or `Histogram` (`composer_cfg.core.media`), at BATCH level


class Artifact:
    """A file offered to every destination under `name` (relative, inside the artifact root).

    `path` is the Logger's own copy, made at the call (`composer_cfg.runtime.staging`): the
    caller's file (`source`) may change or vanish the moment the call returns. The copy is removed
    once no destination holds this artifact any more."""

    __slots__ = ("name", "path", "overwrite", "source", "__weakref__")

    def __init__(self, name: str, path: Path, overwrite: bool, source: Path | None = None) -> None:
        self.name = name
        self.path = path
        self.overwrite = overwrite
        self.source = path if source is None else source

    def __repr__(self) -> str:
        return f"Artifact({self.name!r}, {str(self.path)!r}, overwrite={self.overwrite})"


class EventPoint(NamedTuple):
    """A training event, with what the loop knew at it (progress bars size their bars with these)."""

    event: Event
    dataloader_len: int | None = None
    eval_dataloader_len: int | None = None


class Printed(NamedTuple):
    """Text a thread wrote to a captured stream."""

    stream: str  # "stdout" or "stderr"
    text: str
    thread: int  # `threading.get_ident()` of the writer: each thread's lines are assembled apart


class Record(NamedTuple):
    """One call, as every destination receives it (see the module's docstring)."""

    kind: Kind
    level: LogLevel | None  # DATA: its level; FIT for hyperparameters and artifacts; None for events and prints
    timestamp: Timestamp  # where the run was at the call
    time: float  # wall-clock seconds (Unix time) of the call
    payload: Any


class RunFacts(NamedTuple):
    """What names a run and this process's place in it: what templates are filled with.

    >>> RunFacts("demo", DistInfo()).template_fields(Timestamp(epoch=2))["epoch"]
    2
    """

    run_name: str
    dist: DistInfo
    directory: Path | None = None  # where the run's relative paths resolve; None: the working directory

    @property
    def rank(self) -> int:
        return self.dist.rank

    def path(self, name: str | Path) -> Path:
        """`name` as an absolute path: a relative one under `directory`.

        >>> str(RunFacts("demo", DistInfo(), Path("/jobs/1")).path("demo/logs.txt"))
        '/jobs/1/demo/logs.txt'
        """
        return (self.directory or Path()).absolute() / name

    def template_fields(self, timestamp: Timestamp | None = None) -> dict[str, Any]:
        """The run name and rank facts, and the fields of `timestamp` when one is given."""
        fields: dict[str, Any] = {"run_name": self.run_name, **self.dist.template_fields()}
        if timestamp is not None:
            fields.update(timestamp.template_fields())
        return fields

