"""`State`: what destinations and templates read about the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from composer_cfg.core import dist
from composer_cfg.core.record import RunFacts
from composer_cfg.core.run_name import check_run_name
from composer_cfg.core.timestamp import Timestamp


class State:
    """The run's name, its position in time and the rank facts of this process.

    The run name names directories, so it is checked like one from any other source
    (`composer_cfg.core.run_name.check_run_name`): `ConfigError` for ``"../x"``, here and when it is
    assigned. Attributes are mutable; a loop advances time by replacing the timestamp:

    >>> state = State("demo")
    >>> state.timestamp = state.timestamp.to_next_batch()
    >>> int(state.timestamp.batch)
    1
    """

    def __init__(
        self,
        run_name: str,
        timestamp: Timestamp | None = None,
        dataloader_len: int | None = None,
        dist_info: dist.DistInfo | None = None,
        eval_dataloader_len: int | None = None,
        directory: str | Path | None = None,
    ) -> None:
        self.run_name = run_name
        self.timestamp = Timestamp() if timestamp is None else timestamp
        self.dataloader_len = dataloader_len
        self.eval_dataloader_len = eval_dataloader_len
        self.dist = dist.current() if dist_info is None else dist_info
        self.directory = directory
        #: The wall-clock time (Unix seconds) destinations record with what is logged now; None
        #: means the current time. A replay (``composer-cfg-sync``) sets each record's own.
        self.log_time: float | None = None
        #: Inside a `TrainingLoop` body: how the timestamp moves when that body (a batch, an epoch)
        #: ends. A checkpoint fired there marks the point after it, so a continued run does not
        #: do that body again.
        self.after_body: Callable[[Timestamp], Timestamp] | None = None

    @property
    def directory(self) -> Path | None:
        """Where relative paths of the run's files (logs, records, its run record) resolve, made
        absolute when set; None: the working directory. `instantiate_logger` sets a Hydra job's."""
        return self._directory

    @directory.setter
    def directory(self, directory: str | Path | None) -> None:
        self._directory = None if directory is None else Path(directory).absolute()

    @property
    def run_name(self) -> str:
        return self._run_name

    @run_name.setter
    def run_name(self, name: str) -> None:
        self._run_name = check_run_name(name)

    @classmethod
    def of(cls, run: RunFacts, timestamp: Timestamp | None = None) -> State:
        """A state of `run` (its name, ranks and directory) at `timestamp`: what a sink opened
        without a Logger gives the destination code that reads a state."""
        return cls(run.run_name, timestamp, dist_info=run.dist, directory=run.directory)

    def facts(self) -> RunFacts:
        """The run's name, rank facts and directory, as the destinations' sinks are given them."""
        return RunFacts(self.run_name, self.dist, self.directory)

    def path(self, name: str | Path) -> Path:
        """Where a relative path of the run's resolves, as its logs' do: under `directory` (in an
        app run by `composer_cfg.hydra_main`, the Hydra job's directory), else the working directory.

        >>> str(State("demo", directory="/jobs/1").path("demo/checkpoints/ep1.pt"))
        '/jobs/1/demo/checkpoints/ep1.pt'
        """
        return self.facts().path(name)

    def template_fields(self) -> dict[str, Any]:
        """What templates are filled with now: run name, rank facts and the timestamp's fields.

        >>> State("demo").template_fields()["run_name"]
        'demo'
        """
        return {"run_name": self.run_name, **self.dist.template_fields(), **self.timestamp.template_fields()}

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def local_rank(self) -> int:
        return self.dist.local_rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def local_world_size(self) -> int:
        return self.dist.local_world_size

    @property
    def node_rank(self) -> int:
        return self.dist.node_rank

    def __repr__(self) -> str:
        return f"State(run_name={self.run_name!r}, timestamp={self.timestamp!r}, dist={self.dist!r})"
