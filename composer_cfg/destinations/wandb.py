"""`WandBLogger`: metrics, config, media and artifacts in a Weights & Biases run (offline by default)."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Mapping, Sequence

from composer_cfg.compat.destination import SinkDestination
from composer_cfg.config.params import (
    DIRECTORY,
    POSITIVE,
    Level,
    PositiveFloat,
    PositiveInt,
    Undelivered,
    WhenFull,
    checked_delivery,
)
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.media import KINDS, Histogram, Images, Media, Table
from composer_cfg.core.record import Kind, Record, RunFacts
from composer_cfg.core.secrets import redact, redact_override
from composer_cfg.core.sink import Sink, SinkContext
from composer_cfg.core.status import RunStatus
from composer_cfg.destinations.steps import refused_step, storable
from composer_cfg.destinations.wandb_params import check_init_params

LOG = logging.getLogger("composer_cfg")
MAX_TAG = 64
#: The most bins W&B shows in a histogram; a histogram of more is shown with neighbouring bins merged.
MAX_BINS = 512
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class WandBLogger(SinkDestination):
    """Logs to a W&B run: EPOCH and BATCH data with ``step=batch``, FIT data into the run's config,
    media as W&B's own types at their step (see "Media" below).

    Args (the first eight in Composer 0.8's order):
        project, group, name, entity, tags: the run's W&B fields; `name` defaults to the run
            name. With `rank_zero_only` False every rank has a run, named ``<name> [RANK_<r>]``
            and grouped under `group` (default: the run name).
        log_artifacts: also store file artifacts as single-file W&B artifacts, aliased
            ``latest`` and ``ep<epoch>-ba<batch>``; names are reduced to ``[a-zA-Z0-9_.-]``.
        init_kwargs: any other ``wandb.init`` keyword arguments (they win); `init_params` is
            its Composer 0.7 name, accepted too (not both).
        mode: ``offline`` (default: nothing leaves the machine; ``wandb sync`` uploads later),
            ``online`` or ``disabled``.
        dir: where the run directory is written (default: the run's directory, `State.directory`,
            else the working directory).
        timeout: the longest, in seconds, the training thread waits for W&B: to start the run at
            `Event.INIT`, for room in a full queue, at a checkpoint, and at close (delivering what
            is left, then finishing the run).
        queue_size, when_full, undelivered: the delivery queue, as for `MLFlowLogger`; the spool
            is ``{run_name}/undelivered-<name>-rank<rank>.jsonl``.

    Media, under their name, at their record's batch (``step=`` of `Logger.log_images`...):

    * images: a list of ``wandb.Image`` (W&B's image panel, with a step slider), each with its
      masks and `mask_class_labels`; a mask with class ids outside 0..255 (W&B's range) is left
      out, with a warning. Composer's ``use_table`` is not followed: W&B keeps a table of images as
      a run artifact, with a copy of each image outside the run directory (in offline mode never
      cleaned up), where a list is W&B's own way to show images over steps;
    * a table: a ``wandb.Table`` of its columns and rows (a column may mix types);
    * a histogram: ``wandb.Histogram(np_histogram=(counts, edges))``; more than 512 bins (W&B's
      most) are shown with neighbouring bins merged.

    W&B keeps every ``log`` of one step in one row, so media and metrics of a step go together; a
    value logged at a step below one it was given already is dropped by W&B, with its warning.
    Every call into W&B (starting the run, logging, artifacts, finishing) runs in order on a
    thread of the destination's own: logging only queues. The run is finished with exit code 0
    when the run FINISHED, else 1 (FAILED, KILLED).
    Secrets are masked in the ``config`` of `init_kwargs` (`composer_cfg.core.secrets`); W&B records
    the command line in its run metadata, so when the command line holds a secret, that metadata
    is not collected (W&B's ``x_disable_meta`` setting).
    """

    hyperparameters_as_fit_data = True
    channel_kind = "thread"
    remote = True
    holds_until_checkpoint = True  # W&B keeps every point of a step logged twice
    shows_media = frozenset(KINDS)
    requires = {"wandb": "wandb", "PIL": "wandb"}  # PIL: images (wandb.Image)
    aliases = {"init_params": "init_kwargs"}  # Composer 0.7's name

    def __init__(
        self,
        project: str | None = None,
        group: str | None = None,
        name: str | None = None,
        entity: str | None = None,
        tags: Sequence[str] | None = None,
        log_artifacts: bool = False,
        rank_zero_only: bool = True,
        init_kwargs: Mapping[str, Any] | None = None,
        *,
        mode: str = "offline",
        dir: Annotated[str, DIRECTORY] | None = None,  # noqa: A002 - wandb.init's own name
        log_level: Level = LogLevel.BATCH,
        init_params: Mapping[str, Any] | None = None,
        timeout: PositiveFloat = 60.0,
        queue_size: PositiveInt = 10_000,
        when_full: WhenFull = "drop",
        undelivered: Undelivered = "spool",
    ) -> None:
        self.check_config({"init_kwargs": init_kwargs, "init_params": init_params}, 1)
        extra = init_kwargs or init_params
        self.init_kwargs: dict[str, Any] = {
            "project": project, "entity": entity, "group": group, "name": name,
            "tags": list(tags) if tags else None, "mode": mode, "dir": dir, **dict(extra or {}),
        }
        self.log_artifacts = bool(log_artifacts)
        self.rank_zero_only = bool(rank_zero_only)
        self.log_level = LogLevel.parse(log_level)
        self.timeout = float(POSITIVE.check("timeout", timeout))
        self.delivery_policy = checked_delivery(queue_size, when_full, undelivered, self.timeout)

    @classmethod
    def check_config(cls, params: Mapping[str, Any], world_size: int) -> None:
        """`init_kwargs` and its old name `init_params` are one parameter: not both; then W&B's
        own rules for the run's fields and those keyword arguments (see `check_init_params`)."""
        if params.get("init_kwargs") and params.get("init_params"):  # see `aliases`
            raise ConfigError("init_params: give init_kwargs or init_params (its Composer 0.7 name), not both",
                              key="init_params")
        check_init_params(params)

    def can_log_file_artifacts(self) -> bool:
        return self.log_artifacts

    def sync_target(self, run: RunFacts) -> str:
        """Entity, project, mode (as given, else from W&B's environment variables, as the run takes
        them: `_from_environment`) and directory."""
        kwargs = _from_environment(self.init_kwargs)
        directory = run.path(kwargs["dir"]) if kwargs.get("dir") else run.path("wandb")
        return f"{kwargs.get('entity') or ''}/{kwargs.get('project') or ''} {kwargs.get('mode')} {directory}"

    def join_sweep(self, sweep: str, overrides: Sequence[str]) -> None:
        """The sweep is the run's group (unless one is configured); each override is a tag (W&B
        keeps tags up to 64 characters)."""
        self.init_kwargs["group"] = self.init_kwargs.get("group") or sweep
        self.init_kwargs["tags"] = [*(self.init_kwargs.get("tags") or []), *(o[:MAX_TAG] for o in overrides)]

    @property
    def run(self) -> Any:
        """The W&B run, while it runs."""
        return self.sink().run  # type: ignore[attr-defined]

    def refuses(self, record: Record) -> str | None:
        return refused_step(record)

    def make_sink(self) -> Sink:
        return WandBSink(self)


class WandBSink(Sink):
    """Gives a `WandBLogger`'s records to W&B, on its channel's thread (see there)."""

    def __init__(self, settings: WandBLogger) -> None:
        self._settings = settings
        self.run: Any = None
        self._location: str | None = None  # the run's directory, once it has one
        self._id: str | None = None  # the W&B run's id, once it has one
        self._process_hooks: tuple[tuple[Any, Any], tuple[Any, Any]] | None = None  # (before, wandb's)
        self._said: set[str] = set()  # warnings given (once each)

    def open(self, context: SinkContext) -> None:
        import wandb

        params = self._init_params(context)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            before = sys.exit, sys.excepthook
            self.run = wandb.init(**params)
            self._process_hooks = before, (sys.exit, sys.excepthook)
        self._location, self._id = self.run.dir, self.run.id

    def write(self, records: Sequence[Record]) -> None:
        run = self.run
        if run is None:
            raise RuntimeError("there is no W&B run: starting it failed")
        for record in filter(storable, records):
            if record.kind is Kind.HYPERPARAMETERS or (record.kind is Kind.DATA and record.level is LogLevel.FIT):
                run.config.update(record.payload, allow_val_change=True)
            elif record.kind is Kind.DATA:
                run.log(record.payload, step=int(record.timestamp.batch))
            elif record.kind is Kind.MEDIA:
                run.log({record.payload.name: self._shown(record.payload)}, step=int(record.timestamp.batch))
            elif record.kind is Kind.ARTIFACT:
                self._log_artifact(record)

    def close(self, status: RunStatus) -> None:
        """Finish the W&B run, exit code 0 for FINISHED, else 1; undo wandb's process-wide patches."""
        run, self.run = self.run, None
        try:
            if run is not None:
                run.finish(status.exit_code)
        finally:
            self._restore_process_hooks()

    def identity(self) -> dict[str, Any]:
        return {"id": self._id} if self._id else {}

    def location(self) -> str | None:
        return self._location

    def _shown(self, item: Media) -> Any:
        """`item` as the W&B value that shows it (see `WandBLogger`)."""
        import wandb

        if isinstance(item, Table):
            return wandb.Table(columns=list(item.columns), data=[list(row) for row in item.rows],
                               allow_mixed_types=True)
        if isinstance(item, Histogram):
            return wandb.Histogram(np_histogram=_merged_bins(item.counts, item.edges))
        return [wandb.Image(_picture(image.pixels), masks=self._masks(item, image.masks) or None)
                for image in item.images]

    def _masks(self, item: Images, masks: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """``wandb.Image``'s `masks` argument: those of `masks` whose class ids W&B can show."""
        shown = {}
        for name, mask in masks.items():
            if mask.size and (mask.min() < 0 or mask.max() > 255):
                self._say_once(f"mask {item.name}/{name}", "WandBLogger: mask %r of images %r is left out: its "
                               "class ids run from %d to %d, W&B shows 0 to 255", name, item.name, mask.min(),
                               mask.max())
                continue
            shown[name] = {"mask_data": mask}
            if item.mask_class_labels is not None:
                shown[name]["class_labels"] = dict(item.mask_class_labels)
        return shown

    def _say_once(self, what: str, message: str, *args: Any) -> None:
        if what not in self._said:
            self._said.add(what)
            LOG.warning(message, *args)

    def _log_artifact(self, record: Record) -> None:
        import wandb

        artifact, timestamp = record.payload, record.timestamp
        name = _UNSAFE.sub(".", artifact.name)
        if name != artifact.name:
            LOG.warning("WandBLogger: artifact %r is stored as %r (W&B allows [a-zA-Z0-9_.-])", artifact.name, name)
        kind = name.rpartition(".")[2] if "." in name else "file"
        stored = wandb.Artifact(name, type=kind)
        stored.add_file(str(artifact.path), name=Path(artifact.name).name)
        self.run.log_artifact(stored, aliases=["latest", f"ep{timestamp.epoch}-ba{timestamp.batch}"])

    def _restore_process_hooks(self) -> None:
        """Undo wandb's patches of `sys.exit` and `sys.excepthook` (it never does), unless something
        else replaced them since."""
        saved, self._process_hooks = self._process_hooks, None
        if saved is None:
            return
        (exit_before, hook_before), (exit_by_wandb, hook_by_wandb) = saved
        if sys.exit == exit_by_wandb:
            sys.exit = exit_before
        if sys.excepthook == hook_by_wandb:
            sys.excepthook = hook_before

    def _init_params(self, context: SinkContext) -> dict[str, Any]:
        """`wandb.init`'s keyword arguments for this run."""
        import wandb

        settings = self._settings
        params = _from_environment(settings.init_kwargs)
        resumed = (context.resumed or {}).get("id")
        if resumed:  # add to the run (offline: a new run directory with the same id, which `wandb sync` appends)
            params.update(id=resumed, resume="allow")
        # wandb's process-wide settings keep the first working directory: say where, every time
        # (a sweep's next job runs in another directory of the same process).
        params["dir"] = str(context.run.path(params.get("dir") or "."))
        params["name"] = params.get("name") or context.run.run_name
        params["config"] = redact(params.get("config"))
        if not settings.rank_zero_only:
            params["group"] = params.get("group") or params["name"]
            params["name"] = f"{params['name']} [RANK_{context.run.rank}]"
        secret_in_argv = any(redact_override(arg) != arg for arg in sys.argv[1:])
        # our FileLogger captures the console
        params.setdefault("settings", wandb.Settings(console="off", x_disable_meta=secret_in_argv))
        params.setdefault("reinit", "create_new")  # several loggers in one process: several runs
        return {key: value for key, value in params.items() if value is not None}


def _picture(pixels: Any) -> Any:
    """H x W x C uint8 `pixels` as a PIL image: grayscale (C 1), RGB or RGBA."""
    from PIL import Image

    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def _merged_bins(counts: Sequence[int], edges: Sequence[float]) -> tuple[list[int], list[float]]:
    """`counts` and `edges` with every k neighbouring bins merged, k the least that leaves at most
    `MAX_BINS` (the last bin may merge fewer)."""
    k = -(-len(counts) // MAX_BINS)
    merged = [sum(counts[i:i + k]) for i in range(0, len(counts), k)]
    return merged, [*edges[::k], *([edges[-1]] if len(counts) % k else [])]


def _from_environment(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`init_kwargs` with the entity, project and mode not given taken from ``WANDB_ENTITY``,
    ``WANDB_PROJECT`` and ``WANDB_MODE`` now (W&B reads them once per process, so a second run in
    the same process would otherwise keep the first's)."""
    params = dict(init_kwargs)
    for key, variable in (("entity", "WANDB_ENTITY"), ("project", "WANDB_PROJECT"), ("mode", "WANDB_MODE")):
        params[key] = params.get(key) or os.environ.get(variable) or None
    return params
