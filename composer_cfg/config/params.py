"""What a destination's parameters mean, declared once in its signature.

Constructors annotate parameters with these types; the configuration validator reads the same
annotations to check a YAML value before anything is built, and the constructors call the same
checks at run time, so the two can not disagree:

>>> def __init__(self, filename: FileTemplate = "{run_name}/log-rank{rank}.txt",
...              log_level: Level = "epoch", log_interval: PositiveInt = 1): ...
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping, Union

from composer_cfg.config.imports import import_object
from composer_cfg.config.meaning import LocalPath, Meaning
from composer_cfg.core.errors import ConfigError, suggest
from composer_cfg.core.formatting import has_control_character
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.sink import DeliveryPolicy
from composer_cfg.core.templates import (
    DIST_FIELDS,
    TIME_FIELDS,
    Template,
    check_artifact_name,
    default_artifact_name,
)


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated metadata must be hashable
class AtLeast(Meaning):
    """A number no smaller than `minimum` (0 or 1; with `exclusive`, larger): an int if `integer`,
    else any finite int or float. `check` returns it or raises `ConfigError` naming the key."""

    minimum: float
    integer: bool = False
    exclusive: bool = False

    def check(self, key: str, value: Any, world_size: int = 1) -> Any:
        kinds = int if self.integer else (int, float)
        number = not isinstance(value, bool) and isinstance(value, kinds)
        if not number or not math.isfinite(value) or value < self.minimum or (self.exclusive and value == self.minimum):
            raise ConfigError(f"{key}: expected {self.describe()}, got {value!r}", key=key)
        return value

    def describe(self) -> str:
        sign = "positive" if self.exclusive or self.minimum > 0 else "non-negative"
        return f"a {sign} {'integer' if self.integer else 'number'}"


POSITIVE_INT = AtLeast(1, integer=True)
NON_NEGATIVE_INT = AtLeast(0, integer=True)
POSITIVE = AtLeast(0, exclusive=True)
NON_NEGATIVE = AtLeast(0)


def positive_int(name: str, value: Any) -> int:
    """`value` if it is an int >= 1; else `ConfigError` naming `name`."""
    return POSITIVE_INT.check(name, value)


def require_rank_field(template: Template, world_size: int, *, key: str) -> None:
    """A file every rank writes must have ``{rank}`` in its name once there are several ranks."""
    if world_size > 1 and "rank" not in template.fields:
        raise ConfigError(
            f"{key}: template {template.text!r} has no {{rank}} field, so the {world_size} ranks of this run "
            f"would write the same file; add {{rank}}, e.g. 'logs-rank{{rank}}.txt'", key=key
        )


def check_local_path(path: str, *, key: str, file: bool) -> None:
    """A local path (a `file`, or a directory) is not blank, holds no control character, and a
    file's path ends with a file name."""
    what = "a file path" if file else "a directory path"
    if not path.strip():
        raise ConfigError(f"{key}: expected {what}, got {path!r}", key=key)
    if has_control_character(path):
        raise ConfigError(f"{key}: {path!r} contains a control character", key=key)
    if file and path.replace("\\", "/").rsplit("/", 1)[-1] in ("", ".", ".."):
        raise ConfigError(f"{key}: {path!r} names a directory, not a file: end it with a file name, "
                          f"e.g. '{{run_name}}/logs-rank{{rank}}.txt'", key=key)


def check_published_path(path: str, *, key: str, hint: str = "") -> None:
    """A local path that is also published as an artifact under its own name (see
    `default_artifact_name`) may use ``..`` only at its start: inside, it would climb out of
    the artifact root."""
    name = default_artifact_name(path)
    if not name or ".." in name.replace("\\", "/").split("/"):
        raise ConfigError(f"{key}: {path!r} is also the artifact's name, where '..' may only lead the path "
                          f"(it would climb out of the artifact root){hint}", key=key)


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated metadata must be hashable
class TemplateParam(Meaning):
    """A `{field}` template parameter.

    `fields`: the fields it may use, with sample values. `per_rank_file`: it names a local file
    every rank writes, so it needs ``{rank}`` when there are several ranks. `directory`: it names
    a local directory. `artifact`: it names an artifact, so it must stay relative and inside the
    artifact root. `published`: the directory's files are published under its own path, so
    ``..`` may only lead it. `strip_root`: a leading ``/`` is dropped rather than refused
    (Composer documents this for a FileLogger's ``artifact_name``). Filled with the sample
    values, the name must fit a file system.
    """

    fields: Mapping[str, Any]
    per_rank_file: bool = False
    directory: bool = False
    artifact: bool = False
    published: bool = False
    strip_root: bool = False

    def check(self, key: str, value: Any, world_size: int = 1) -> Template:
        if self.strip_root and isinstance(value, str):
            value = value.lstrip("/")
        template = Template(value, self.fields, key=key)
        template.fill(self.fields)
        if self.per_rank_file or self.directory:
            check_local_path(value, key=key, file=self.per_rank_file)
        if self.per_rank_file:
            require_rank_field(template, world_size, key=key)
        if self.artifact:
            check_artifact_name(value, key=key)
        if self.published:
            check_published_path(value, key=key)
        return template

    def local_path(self, value: Any, fields: Mapping[str, Any]) -> LocalPath | None:
        if not (self.per_rank_file or self.directory):
            return None
        filled = Template(value, self.fields).fill({**self.fields, **fields})
        return LocalPath(working_directory() / filled, self.directory)


class LocalDirectory(Meaning):
    """A local directory (a plain path, not a template) the run creates."""

    def check(self, key: str, value: Any, world_size: int = 1) -> str:
        check_local_path(value, key=key, file=False)
        return value

    def local_path(self, value: Any, fields: Mapping[str, Any]) -> LocalPath | None:
        return LocalPath(working_directory() / Path(value).expanduser(), directory=True)


_JOB_DIRECTORY: contextvars.ContextVar[tuple[Path, str | None] | None] = contextvars.ContextVar(
    "job_directory", default=None
)


@contextlib.contextmanager
def job_directory(path: Path | None, key: str | None = None) -> Iterator[None]:
    """Validate for a job that will run in `path` (the command checks a config before Hydra
    creates and enters the run directory); None: the current working directory. `key`: the
    config key that names the directory, when the run is to create it."""
    token = _JOB_DIRECTORY.set(None if path is None else (path, key))
    try:
        yield
    finally:
        _JOB_DIRECTORY.reset(token)


#: The directory of the Hydra job whose task runs (`in_hydra_job`), for every thread of the process.
_HYDRA_JOB: list[Path] = []


@contextlib.contextmanager
def in_hydra_job() -> Iterator[None]:
    """Around a Hydra job's task: the run's relative paths resolve in the job's output directory
    (``hydra.runtime.output_dir``), whether or not Hydra changed into it, on any thread the task
    starts (a context variable would not reach them)."""
    from hydra.core.hydra_config import HydraConfig

    _HYDRA_JOB.append(Path(str(HydraConfig.get().runtime.output_dir)).absolute())
    try:
        yield
    finally:
        _HYDRA_JOB.pop()


def job_directory_given() -> Path | None:
    """The job's directory, when one was given (`job_directory`, else `in_hydra_job`); else None."""
    job = _JOB_DIRECTORY.get()
    return job[0] if job is not None else _HYDRA_JOB[-1] if _HYDRA_JOB else None


def working_directory() -> Path:
    """Where relative paths of the config will resolve: the job's directory, or here."""
    return (job_directory_given() or Path.cwd()).resolve()


def launch_directory() -> Path:
    """The directory the program was started from: Hydra's original working directory inside a
    Hydra job (which may run in a directory of its own), else the working directory."""
    from hydra.core.hydra_config import HydraConfig

    return Path(str(HydraConfig.get().runtime.cwd)) if HydraConfig.initialized() else Path.cwd()


def directory_to_create() -> tuple[str, Path] | None:
    """The key and path of the job's directory, if the run is to create it."""
    job = _JOB_DIRECTORY.get()
    return None if job is None or job[1] is None else (job[1], working_directory())


class StoreRoot(Meaning):
    """The root URL of a store that writes uploaded files. A local root may not be the working
    directory or one of its parents: every relative file a destination writes (a live log) is
    there, and an upload of the same name would replace it with a snapshot. (The validator also
    refuses a root holding any file another destination of the config writes.)"""

    def check(self, key: str, value: Any, world_size: int = 1) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key}: expected a URL or a directory, got {value!r}", key=key)
        _check_protocol(key, value)
        root = local_root(value)
        here = working_directory()
        if root is not None and (root == here or root in here.parents):
            raise ConfigError(
                f"{key}: {value!r} is the run's directory ({here}) or contains it, so uploads would replace the files "
                f"being written there (a live log file) with snapshots; give the store a directory of its own, "
                f"e.g. 'artifacts'", key=key
            )
        return value

    def local_path(self, value: Any, fields: Mapping[str, Any]) -> LocalPath | None:
        root = local_root(value)
        return None if root is None else LocalPath(root, directory=True)


#: The extra that installs the file system of a protocol.
PROTOCOL_EXTRAS = {"s3": "s3", "s3a": "s3"}


def _check_protocol(key: str, url: str) -> None:
    """The URL's protocol is one fsspec knows, and its package is installed (without importing it)."""
    from fsspec.core import split_protocol
    from fsspec.registry import known_implementations, registry

    protocol = split_protocol(url)[0]
    if protocol is None or protocol in registry:
        return
    known = known_implementations.get(protocol)
    if known is None:
        raise ConfigError(f"{key}: unknown protocol {protocol!r} in {url!r}; fsspec knows "
                          f"{', '.join(sorted(known_implementations))}", key=key)
    module = known["class"].split(".")[0]
    if importlib.util.find_spec(module) is None:
        extra = PROTOCOL_EXTRAS.get(protocol)
        hint = f"pip install 'composer_cfg[{extra}]'" if extra else known.get("err", f"pip install {module}")
        raise ConfigError(f"{key}: {protocol}:// needs {module}, which is not installed: {hint}", key=key)


def local_root(url: str) -> Path | None:
    """The directory of a local URL (``file://...`` or a plain path), resolved; None for others."""
    from fsspec.core import split_protocol

    protocol, path = split_protocol(url)
    if protocol not in (None, "file", "local"):
        return None
    return (working_directory() / Path(path or ".").expanduser()).resolve()


class BufferSizeParam(Meaning):
    """A text file's buffering: -1 (the system default), 1 (line buffered) or a size in bytes > 1."""

    def check(self, key: str, value: Any, world_size: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not (value == -1 or value >= 1):
            raise ConfigError(f"{key}: expected {self.describe()}, got {value!r}", key=key)
        return value

    def describe(self) -> str:
        return "-1 (the system default), 1 (line buffered) or a size in bytes"


class LevelParam(Meaning):
    def check(self, key: str, value: Any, world_size: int = 1) -> LogLevel:
        try:
            return LogLevel.parse(value)
        except ValueError as error:
            raise ConfigError(f"{key}: {error}", key=key) from None

    def describe(self) -> str:
        return "a log level: one of FIT, EPOCH, BATCH (any case) or their values 1, 2, 3"


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated metadata must be hashable
class OneOf(Meaning):
    """One of a few words, exactly as written (``block``, ``drop``)."""

    choices: tuple[str, ...]

    def check(self, key: str, value: Any, world_size: int = 1) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ConfigError(f"{key}: expected {self.describe()}, got {value!r}", key=key)
        return value

    def describe(self) -> str:
        return f"one of {', '.join(self.choices)}"


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated metadata must be hashable
class CallablePath(Meaning):
    """A callable, or the import path of one (``my_module.my_filter``, imported under the one
    import policy, `composer_cfg.config.imports`), that can be called with the arguments `call` names."""

    call: str  # e.g. "(state, log_level, artifact_name)"

    def check(self, key: str, value: Any, world_size: int = 1) -> Callable[..., Any]:
        found = import_object(value.replace(":", "."), key=key) if isinstance(value, str) else value
        if not callable(found):
            raise ConfigError(f"{key}: {value!r} is not callable", key=key)
        try:
            inspect.signature(found).bind(*self.call.strip("()").split(", "))
        except TypeError as error:
            raise ConfigError(f"{key}: {value!r} can not be called as f{self.call}: {error}", key=key) from None
        except ValueError:  # no signature to read (some built-ins): left to the call
            pass
        return found

    def describe(self) -> str:
        return f"a function f{self.call} or its import path"


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated metadata must be hashable
class SystemMetricsParam(Meaning):
    """The machine's metrics, sampled every ``every_seconds`` (`composer_cfg.runtime.system_metrics`):
    checked to that positive number of seconds; psutil must be installed."""

    keys: tuple[str, ...] = ("every_seconds",)

    def check(self, key: str, value: Any, world_size: int = 1) -> float:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected {self.describe()}, got {value!r}", key=key)
        for name in value:
            if name not in self.keys:
                raise ConfigError(f"{key}.{name}: unknown key{suggest(str(name), self.keys)}", key=f"{key}.{name}")
        every = value.get("every_seconds", 30)
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every < math.inf:
            raise ConfigError(f"{key}.every_seconds: expected a positive number of seconds, got {every!r}",
                              key=f"{key}.every_seconds")
        if importlib.util.find_spec("psutil") is None:
            raise ConfigError(f"{key}: the machine's metrics need psutil, which is not installed: "
                              f"pip install 'composer_cfg[system]'", key=key)
        return float(every)

    def describe(self) -> str:
        return "a mapping such as {every_seconds: 30}"


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated metadata must be hashable
class ReduceParam(Meaning):
    """Key patterns (``fnmatch``: ``loss/*``), each to how its values are combined across ranks."""

    def check(self, key: str, value: Any, world_size: int = 1) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected {self.describe()}, got {value!r}", key=key)
        for pattern, op in value.items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"{key}: a key pattern must be a non-empty string, got {pattern!r}", key=key)
            REDUCE_OP.check(f"{key}.{pattern}", op)
        return dict(value)

    def describe(self) -> str:
        return f"a mapping of key pattern to {REDUCE_OP.describe()}, such as {{loss: mean}}"


#: A path of a file every rank writes, from the run name and rank facts.
FILE = TemplateParam(DIST_FIELDS, per_rank_file=True)
FileTemplate = Annotated[str, FILE]
#: A directory whose files are published under its path (TensorBoard's event files).
PUBLISHED_DIR = TemplateParam(DIST_FIELDS, directory=True, published=True)
PublishedDirTemplate = Annotated[str, PUBLISHED_DIR]
#: A name, from the run name and rank facts (an MLflow run's name).
NameTemplate = Annotated[str, TemplateParam(DIST_FIELDS)]
#: The name a file a destination writes is published under, from the run name and rank facts;
#: a leading ``/`` is dropped.
ARTIFACT_NAME = TemplateParam(DIST_FIELDS, artifact=True, strip_root=True)
ArtifactTemplate = Annotated[str, ARTIFACT_NAME]
#: An artifact name that may also use the timestamp's fields (``{epoch}``, ``{batch}``...).
TimedArtifactTemplate = Annotated[str, TemplateParam(TIME_FIELDS, artifact=True)]
DIRECTORY = LocalDirectory()
#: The root URL of a store (see `StoreRoot`).
StoreURL = Annotated[str, StoreRoot()]
PositiveInt = Annotated[int, POSITIVE_INT]
BufferSize = Annotated[int, BufferSizeParam()]
NonNegativeInt = Annotated[int, NON_NEGATIVE_INT]
PositiveFloat = Annotated[float, POSITIVE]
NonNegativeFloat = Annotated[float, NON_NEGATIVE]
Level = Annotated[Union[LogLevel, int, str], LevelParam()]
#: What a remote destination does when its queue is full, and with what it could not deliver
#: (see `composer_cfg.core.sink.DeliveryPolicy`).
WHEN_FULL = OneOf(("block", "drop"))
WhenFull = Annotated[str, WHEN_FULL]
UNDELIVERED = OneOf(("spool", "drop"))
Undelivered = Annotated[str, UNDELIVERED]
#: How a key logged on every rank is combined across ranks (`composer_cfg.runtime.reduction`).
REDUCE_OP = OneOf(("mean", "sum", "min", "max"))
REDUCE = ReduceParam()
ReducePatterns = Annotated[Mapping[str, str], REDUCE]
SYSTEM_METRICS = SystemMetricsParam()
SystemMetricsSettings = Annotated[Mapping[str, Any], SYSTEM_METRICS]


def checked_delivery(queue_size: Any, when_full: Any, undelivered: Any, timeout: float | None) -> DeliveryPolicy:
    """A destination's `DeliveryPolicy`, each value checked as the config validator checks it
    (`ConfigError` naming its key)."""
    return DeliveryPolicy(POSITIVE_INT.check("queue_size", queue_size), WHEN_FULL.check("when_full", when_full),
                          UNDELIVERED.check("undelivered", undelivered), timeout)
