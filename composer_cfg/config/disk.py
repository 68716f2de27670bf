"""The rules between a valid config and the disk, checked before the run creates anything, from
the local paths the destinations' parameters declare (`Meaning.local_path`):

* every file and directory the run creates can be created: nothing of the other kind is in the
  way, and the nearest existing one is a directory the process may write in (the job's run
  directory too, when the command is to create it);
* a local store root (a `StoreRoot` parameter) must not hold a file another destination writes
  (a per-rank file): an upload of the same name would replace the live file with a snapshot;
* with a known run name and ``resume=never``, a per-rank file a destination creates without
  ``overwrite`` must not exist yet: the run would be refused after Hydra made its run directory;
* ``resume=must`` needs a run to continue: a run name, and that run's manifest here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from composer_cfg.config.annotations import meanings_of, type_hints
from composer_cfg.config.imports import import_object
from composer_cfg.config.meaning import LocalPath, Meaning
from composer_cfg.config.params import StoreRoot, TemplateParam, directory_to_create, working_directory
from composer_cfg.config.problems import Problem, catch
from composer_cfg.core import dist
from composer_cfg.core.run_name import given_run_name, launcher_run_name
from composer_cfg.run.resume import Resume
from composer_cfg.run.run_record import existing_run, manifest_path, run_directory


@dataclass(frozen=True)
class _Declared:
    """A local path a destination's parameter makes the run create."""

    key: str
    value: str
    local: LocalPath
    meaning: Meaning
    overwrite: bool


def disk_problems(config: Mapping[str, Any], resume: Resume | None = Resume.NEVER) -> list[Problem]:
    """The problems between the destinations of an otherwise valid config and the disk."""
    run_name = catch([], "run_name", lambda: given_run_name(config.get("run_name")))  # a bad one is reported apart
    fields = {**dist.current().template_fields(), "run_name": run_name or "run"}
    problems: list[Problem] = []
    declared = _declared(config, fields, problems)
    job = directory_to_create()
    paths = [(job[0], LocalPath(job[1], directory=True))] if job is not None else []
    blocked: set[Path] = set()  # what is in the way is reported once, for the first path behind it
    for key, local in paths + [(item.key, item.local) for item in declared]:
        reason = _cannot_create(local, blocked)
        if reason:
            problems.append(Problem(key, reason))
    files = [item for item in declared if isinstance(item.meaning, TemplateParam) and item.meaning.per_rank_file]
    for root in (item for item in declared if isinstance(item.meaning, StoreRoot)):
        problems += [Problem(root.key, f"{root.value!r} holds the file {file.key} writes ({file.local.path.resolve()}): "
                                       f"an upload of the same name would replace the live file with a snapshot; "
                                       f"give the store a directory of its own")
                     for file in files if root.local.path.resolve() in file.local.path.resolve().parents]
    existing = [file for file in files if not file.overwrite and file.local.path.is_file()]
    if run_name is not None and resume is Resume.NEVER:
        problems += [Problem(file.key, f"{str(file.local.path.resolve())!r} already exists (a run named {run_name!r} "
                                       f"wrote it): continue that run with resume=auto, choose another run_name, or "
                                       f"set overwrite=true to replace it")
                     for file in existing]
    resumable = resume is not Resume.NEVER and run_name is not None
    known = len(problems)
    record = catch(problems, "resume", lambda: _run_record(run_name)) if resumable else None
    damaged = len(problems) > known  # said: nothing more to say about the run it records
    if resumable and existing and record is None and not damaged:
        problems += [Problem(file.key, f"{str(file.local.path.resolve())!r} already exists, but the run {run_name!r} "
                                       f"that wrote it was not started with resume (it has no run record in "
                                       f"{str(_manifest(run_name))!r}), so it can not be continued: choose another "
                                       f"run_name, or set overwrite=true to replace it")
                     for file in existing]
    if resume is Resume.MUST and record is None and not damaged:
        problems += _nothing_to_continue(run_name)
    return problems


def _manifest(run_name: str) -> Path:
    return manifest_path(run_directory(run_name, working_directory()), dist.current().rank)


def _run_record(run_name: str) -> Any:
    """The run record a resumable run keeps in its manifest here, or None (also when the path can
    not hold one: what is in the way is reported apart)."""
    try:
        return existing_run(run_name, dist.current().rank, working_directory())
    except (NotADirectoryError, PermissionError):
        return None


def _nothing_to_continue(run_name: str | None) -> list[Problem]:
    """``resume=must`` and no run record for `run_name` here: what is missing."""
    run_name = run_name or launcher_run_name(os.environ)
    if run_name is None:
        return [Problem("resume", "'must' continues a run, but no run_name names one: set run_name (or "
                                  "COMPOSER_RUN_NAME), or use resume=auto")]
    return [Problem("resume", f"'must', but there is no run {run_name!r} to continue (no run record in "
                              f"{str(_manifest(run_name))!r}); use resume=auto to start it when it is missing")]


def _declared(config: Mapping[str, Any], fields: Mapping[str, Any], problems: list[Problem]) -> list[_Declared]:
    """Every local path the destinations' parameters make the run create."""
    logger = config.get("logger")
    destinations = logger.get("destinations") if isinstance(logger, Mapping) else None
    declared = []
    for name, node in (destinations or {}).items():
        if not isinstance(node, Mapping):
            continue
        path = f"logger.destinations.{name}"
        for key, hint in type_hints(import_object(node["_target_"], key=f"{path}._target_")).items():
            value = node.get(key)
            for meaning in meanings_of(hint) if isinstance(value, str) else ():
                local = catch(problems, f"{path}.{key}", lambda: meaning.local_path(value, fields))
                if local is not None:
                    declared.append(_Declared(f"{path}.{key}", value, local, meaning, bool(node.get("overwrite"))))
    return declared


def _cannot_create(local: LocalPath, blocked: set[Path]) -> str | None:
    """Why the run could not create `local` (or write in it), or None."""
    path = local.path.absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing in blocked:
        return None
    if existing == path and path.is_dir() != local.directory:
        reason = f"{str(path)!r} exists and is {'not ' if local.directory else ''}a directory"
    elif existing != path and not existing.is_dir():
        reason = f"{str(path)!r} can not be created: {str(existing)!r} is a file"
    elif not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        reason = f"{str(path)!r} can not be created: no permission to write in {str(existing)!r}"
    else:
        return None
    blocked.add(existing)
    return reason
