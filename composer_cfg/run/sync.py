"""``composer-cfg-sync``: replay a run's JSON Lines records into any destination, later.

    composer-cfg-sync outputs/2026-11-25/10-00-00 --to mlflow,tensorboard
    composer-cfg-sync outputs/2026-11-25/10-00-00 --to wandb logger.destinations.wandb.project=p

Each records file (``*.jsonl``: one run, one rank) is replayed through the destinations the
config tree names, configured by the same overrides as the ``composer-cfg`` command, with each
record's own level, timestamp and wall-clock time. A second sync sends only what is new: the
progress into each target (a destination's store, directory or project) and the identity of its
record there (an MLflow run id, a W&B run id) are kept in the sync's own file beside the records
file (`composer_cfg.run.sync_progress`; the run's manifest is read, never written), so the next
sync into that target adds to the same tracker run; another target gets everything, and
``--fresh`` sends everything again into a new tracker run. A destination that takes files also
gets the run's text log and config record, where the run keeps them by default, with every sync
that sends new records; and, opted in with ``--files 'checkpoints/*.pt'`` (patterns relative to
the run's directory, sent with rank 0's records), any other file of the run, as it is then.

Relative paths of the destinations (a TensorBoard ``log_dir``, W&B's ``dir``, a SQLite
``tracking_uri``) resolve where the live run resolved its own, whatever the working directory:
in the directory holding the run's directory, the one with its manifest
(``<root>/<run_name>/run-rank<r>.json``: in ``<root>``). So the sync writes beside the run and
recognises the targets the live run logged to. Of a ``.jsonl`` without a manifest: in the parent
of its directory if that is named like the run, else in the working directory.

A tracker that could not deliver during the run left a spool,
``undelivered-<destination>-rank<rank>.jsonl`` (see `composer_cfg.run.spool`): it is synced into
that destination alone, adding to the tracker run the live run created; the run's other records
files are not synced into a destination that has a spool there (it has the rest already).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer_cfg.cli.masked_output import mask_output
from composer_cfg.config.secret_overrides import secrets_in
from composer_cfg.core.dist import DistInfo
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.events import Event
from composer_cfg.core.log_level import LogLevel
from composer_cfg.core.logger import Logger
from composer_cfg.core.record import RunFacts
from composer_cfg.core.state import State
from composer_cfg.core.secrets import remember
from composer_cfg.core.timestamp import Timestamp
from composer_cfg.run.media_files import load_media
from composer_cfg.run.records import before, placed_records, point_of, read_records
from composer_cfg.run.run_record import manifest_path, read_manifest, run_files
from composer_cfg.run.sync_progress import SyncProgress, check_progress
from composer_cfg.runtime.exit_hooks import close_at_exit

PROG = "composer-cfg-sync"
#: Where a record read for a sync keeps the byte offset of its line (`placed_records`).
OFFSET = "_offset"


@dataclass
class Synced:
    """What one sync of one records file into one destination did."""

    records_file: Path
    destination: str
    sent: int  # records (or parts of records) sent this time
    location: str | None = None  # where they went, as the destination says
    refused: list[str] = field(default_factory=list)  # one line per kind of value the back end refused
    skipped: str | None = None  # why this file was not sent to this destination at all
    held_back: int = 0  # records after the last checkpoint of a run that did not finish (it may redo them)
    files: list[str] = field(default_factory=list)  # the run's files published with them (`_run_files`)
    done: int = 0  # of the records to send, how many (from the first) were handed over, refused or passed over
    handed: list[int] = field(default_factory=list)  # which of them reached the destination's channel, in order
    run_status: str | None = None  # the status its manifest records, for a resumable run


def sync(
    source: str | Path, destinations: Sequence[str], overrides: Sequence[str] = (), config_dir: str | Path | None = None,
    *, progress: bool = False, unfinished: bool = False, fresh: bool = False, files: Sequence[str] = (),
) -> list[Synced]:
    """Replay every records file under `source` (a run or sweep directory, or one ``.jsonl``
    file) into each of `destinations` (names in the config tree: ``mlflow``, ``wandb``...).

    What was sent is kept per target (`Policies.sync_target`: a store, a directory, a project) in
    a progress file beside the records (`SyncProgress`): a next sync into the same target adds what
    is new to the same tracker run; into another target, or with `fresh`, it sends everything into
    a new one. Of a resumable run that did not finish, the records written after its last
    checkpoint are held back (an attempt that continues the run logs those steps again), unless
    `unfinished`. `files`: patterns (``checkpoints/*.pt``) of other files of the run to send to
    the destinations that take files, relative to the run's directory.

    Relative paths in the destinations' config resolve where the run's own did, whatever the
    working directory (see the module's docstring). Raises `ConfigError` for a bad destination
    name or override, a damaged manifest or progress file, before anything is sent.
    """
    from composer_cfg.config.build import instantiate_destinations
    from composer_cfg.config.compose import compose_config
    from composer_cfg.config.masking_callback import config_secrets

    patterns = [_checked_pattern(pattern) for pattern in files]
    sources = _records_files(Path(source))
    if not destinations:
        raise ConfigError("--to: name at least one destination, e.g. --to mlflow,tensorboard")
    cfg = compose_config([f"logger/destinations=[{','.join(destinations)}]", *overrides], config_dir=config_dir)
    remember(config_secrets(cfg))  # masked wherever they would show: errors, the console, the log
    node = cfg.logger
    for name in destinations:  # a replay waits for the tracker; what it can not deliver fails the sync (sent
        if node.destinations.get(name) is not None and "undelivered" in node.destinations[name]:  # again next time)
            node.destinations[name].when_full = "block"
            node.destinations[name].undelivered = "drop"
    check_progress(file.parent for file in sources)
    world_sizes = _world_sizes(sources)
    results = []
    for file in sources:
        placed = placed_records(file)
        if not placed:
            continue
        run_name, rank = placed[0][1]["run_name"], placed[0][1].get("rank", 0)
        manifest = read_manifest(manifest_path(file.parent, rank))
        root = _run_root(file, run_name, manifest)
        progress_file = SyncProgress(file.parent, rank)
        spools = manifest.get("spools", {})
        status = (manifest.get("run") or {}).get("status")
        kept = placed if unfinished else _final(placed, manifest.get("run"), file.name)
        held_back = len(placed) - len(kept)
        in_file_order = file.name not in spools  # a records file is in call order, and progress is its offset
        records = [{**record, OFFSET: at} for at, record in kept]
        if not in_file_order:  # a spool holds what overflowed before what was still queued at the end
            records.sort(key=point_of)
        for name in destinations:
            if spools.get(file.name, name) != name:
                continue  # another destination's spool
            destination = instantiate_destinations(node, into={}, only=[name])[name]
            if destination.rank_zero_only and rank != 0:
                continue  # as in the run itself: only rank 0's records reach it
            dist_info = DistInfo(rank=rank, world_size=world_sizes[run_name])
            target = destination.sync_target(RunFacts(run_name, dist_info, root))
            # A spool completes what its own target got live; any other target (or a fresh sync)
            # gets everything from the run's records file, or from the spool when it has none.
            own = [spool for spool, owner in spools.items() if owner == name and not fresh
                   and progress_file.start(manifest, spool, name, target) is not None]
            if file.name in spools and file.name not in own and _has_records(file, sources, spools):
                continue
            if file.name not in spools and own:
                results.append(Synced(file, name, 0, skipped=f"the run logged to {name} itself; its spool "
                                                            f"completes it"))
                continue
            entry = {} if fresh else progress_file.start(manifest, file.name, name, target) or {}
            pending = _after(records, entry.get("through"), in_file_order)
            synced = Synced(file, name, len(pending), held_back=held_back, run_status=status)
            if pending and file.name not in spools and destination.can_log_file_artifacts():
                published = _run_files(file.parent, run_name, rank, pending[-1], patterns)
                pending = [*pending, *published]  # (a new list: `records` is every destination's)
                synced.files = [record["artifact"]["name"] for record in published]
            if pending:
                if entry.get("identity"):
                    destination.continue_run(entry["identity"])
                logger = Logger(State(run_name, dist_info=dist_info, directory=root), {name: destination})

                def record(through: dict[str, Any] | None) -> None:  # what went where: the next sync continues it
                    progress_file.record(file.name, name, target, {
                        "through": through, "identity": destination.run_identity() or entry.get("identity", {})})

                try:  # the tracker run is recorded once it exists: an interrupted sync is continued in it
                    _replay(logger, pending, synced, progress, started=lambda: record(entry.get("through")))
                finally:  # what the back end has, even when interrupted (a Ctrl-C, a failure)
                    delivered = _delivered(logger.report().get(name, {}), synced)
                    if delivered:
                        record(_through(pending[:delivered], entry.get("through"), in_file_order))
            synced.location = destination.output_location()
            results.append(synced)
    return results


def _run_root(records_file: Path, run_name: str, manifest: dict[str, Any]) -> Path | None:
    """Where the run of `records_file` resolved its relative paths (its `State.directory`), so a
    sync writes where the live run would have: the parent of the run's directory, which holds its
    manifest (`run_directory`), or, without a manifest, of the file's directory if it is named like
    the run; else None (the working directory)."""
    directory = records_file.absolute().parent
    return directory.parent if manifest or directory.name == run_name else None


def _run_files(directory: Path, run_name: str, rank: int, last: dict[str, Any],
               patterns: Sequence[str]) -> list[dict[str, Any]]:
    """The run's text log (`FileLogger`) and, of rank 0, its config record
    (`composer_cfg.run.run_config`), where the run keeps them by default (its `directory`), and
    the files `patterns` match there, as artifact records at the point of the `last` record sent,
    named as the run publishes them (``<run_name>/<path in its directory>``)."""
    names = [f"logs-rank{rank}.txt", *(["run-config.yaml"] if rank == 0 else [])]
    if rank == 0:
        inside = directory.resolve()
        matched = sorted({path.relative_to(directory).as_posix() for pattern in patterns
                          for path in directory.glob(pattern)
                          if path.is_file() and path.resolve().is_relative_to(inside)})
        names += [name for name in matched if name not in names]
    return [{"level": "FIT", "run_name": run_name, "rank": rank, "epoch": last["epoch"], "batch": last["batch"],
             "time": last.get("time"), "data": {},
             "artifact": {"name": f"{run_name}/{name}", "file": str(directory / name), "overwrite": True}}
            for name in names if (directory / name).is_file()]


def _checked_pattern(pattern: str) -> str:
    """A ``--files`` pattern, if it stays inside the run's directory; else `ConfigError`."""
    parts = Path(pattern).parts
    if not pattern.strip() or Path(pattern).is_absolute() or ".." in parts:
        raise ConfigError(f"--files: {pattern!r} must be a pattern of files inside the run's directory, relative "
                          f"to it (such as 'checkpoints/*.pt')")
    return pattern


def _records_files(source: Path) -> list[Path]:
    if not source.exists():
        raise ConfigError(f"source: {str(source)!r} does not exist")
    if not source.is_dir():
        return [source]
    found = run_files(source)
    files = [*found.records, *found.spools]
    if not files:
        raise ConfigError(f"source: no records (*.jsonl) under {str(source)!r}; a run writes them with its jsonl destination")
    return files


def _world_sizes(files: Iterable[Path]) -> dict[str, int]:
    """Per run name, one more than the highest rank with records (the run's world size as far as
    its records tell: templates with ``{rank}`` need it)."""
    sizes: dict[str, int] = {}
    for file in files:
        first = next(read_records(file), None)
        if first is not None:
            sizes[first["run_name"]] = max(sizes.get(first["run_name"], 1), first.get("rank", 0) + 1)
    return sizes


def _has_records(spool: Path, files: Sequence[Path], spools: dict[str, str]) -> bool:
    """Whether `spool`'s run directory has a records file among `files`."""
    return any(file.parent == spool.parent and file.name not in spools for file in files)


def _final(placed: list[tuple[int, dict[str, Any]]], run: dict[str, Any] | None,
           file: str) -> list[tuple[int, dict[str, Any]]]:
    """Which of a file's records (with their offsets: `placed_records`) are final: all, unless they
    are a resumable `run`'s that did not finish; then those written before its last checkpoint (by
    the size the records file had then; in a spool, those before the checkpoint's mark; none
    without a checkpoint)."""
    if run is None or run.get("status") == "FINISHED":
        return placed
    mark = run.get("checkpoint") or {"epoch": 0, "batch": 0}
    return before(placed, run.get("records_at_checkpoint", {}).get(file), mark)


def _after(records: list[dict[str, Any]], through: dict[str, Any] | None,
           in_file_order: bool) -> list[dict[str, Any]]:
    """The records (or parts of them) not sent yet: of a records file, those past the offset of the
    last one sent (whatever their steps: a call with an explicit lower step is sent too); of a spool
    (or by a mark of an earlier version), those after the last timestamp sent, and at that
    timestamp the level/key pairs not sent, and the artifacts and media of each name past the
    number of them sent (an evaluation logs several images of one name at one step)."""
    if not through:
        return records
    if in_file_order and through.get("offset") is not None:
        return [record for record in records if record[OFFSET] > through["offset"]]
    last, sent, items = point_of(through), set(through["keys"]), _items_sent(through)
    seen: dict[str, int] = {}
    pending = []
    for record in records:
        at = point_of(record)
        if at > last:
            pending.append(record)
        elif at == last and ("artifact" in record or "media" in record):
            key = _item_key(record)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > items.get(key, 0):
                pending.append(record)
        elif at == last:
            data = {key: value for key, value in record["data"].items() if f"{record['level']}/{key}" not in sent}
            if data:
                pending.append({**record, "data": data})
    return pending


def _item_key(record: dict[str, Any]) -> str:
    """How progress names an artifact or a media record sent at the last point."""
    if "media" in record:
        return f"media/{record['media']['kind']}/{record['media']['name']}"
    return f"artifact/{record['artifact']['name']}"


def _items_sent(through: dict[str, Any]) -> dict[str, int]:
    """How many artifacts and media of each name a mark says were sent at its point (a mark of an
    earlier version lists an artifact's key among ``keys``: one)."""
    items = {key: 1 for key in through["keys"] if key.startswith("artifact/")}
    return {**items, **through.get("items", {})}


def _through(sent: list[dict[str, Any]], before: dict[str, Any] | None, in_file_order: bool) -> dict[str, Any]:
    """The new mark: the last timestamp sent, every level/key pair sent at it, how many artifacts
    and media of each name, and, in a records file (sent in file order), the offset of the last
    record sent."""
    epoch, batch = sent[-1]["epoch"], sent[-1]["batch"]
    same = before and (before["epoch"], before["batch"]) == (epoch, batch)
    keys = {key for key in before["keys"] if not key.startswith("artifact/")} if same else set()
    items = _items_sent(before) if same else {}
    for record in (r for r in sent if (r["epoch"], r["batch"]) == (epoch, batch)):
        if "artifact" in record or "media" in record:
            items[_item_key(record)] = items.get(_item_key(record), 0) + 1
        else:
            keys.update(f"{record['level']}/{key}" for key in record["data"])
    offsets = [record[OFFSET] for record in sent if OFFSET in record]
    offset = max(offsets) if in_file_order and offsets else None
    return {"epoch": epoch, "batch": batch, "keys": sorted(keys), "items": items,
            **({"offset": offset} if offset is not None else {})}


def _delivered(report: dict[str, Any], synced: Synced) -> int:
    """How many of the records to send, from the first, are done with: the `done` ones (handed
    over, refused or passed over) when the closed channel's `report` says it gave up none; else
    those up to the last the back end took (a channel writes in order, and gives up the records
    after those it wrote: the next sync sends them again; MLflow keeps one copy of a metric's
    point sent twice, a record the back end was writing when it was given up may show twice)."""
    if not any(report.get(count) for count in ("queued", "spooled", "dropped")):
        return synced.done
    taken = int(report.get("delivered", 0)) + int(report.get("failed", 0))
    return synced.handed[taken - 1] + 1 if 0 < taken <= len(synced.handed) else 0


def _replay(logger: Logger, records: list[dict[str, Any]], synced: Synced, progress: bool,
            started: Callable[[], None]) -> None:
    """Send `records` through `logger`, then close it (`synced.done`: how many it went through);
    `started` is called once the destination's run exists. A value the back end refuses is counted
    (one line per kind), not fatal. Any other failure ends the sync of this destination."""
    from tqdm.auto import tqdm

    state, refused = logger.state, {}
    artifacts = {record["artifact"]["name"]: record for record in records if "artifact" in record}  # the last of each
    try:
        with close_at_exit(logger):
            logger.run_event(Event.INIT)
            started()
            shown = tqdm(records, desc=f"{synced.destination} {synced.records_file.name}", unit="record",
                         disable=None if progress else True, file=sys.stderr)
            for index, record in enumerate(shown):
                if _CTRL_C.is_set():  # one that landed in a finalizer, which could only print it
                    raise KeyboardInterrupt
                state.timestamp = Timestamp(epoch=record["epoch"], batch=record["batch"],
                                            batch_in_epoch=record.get("batch_in_epoch", 0),
                                            sample=record.get("sample", 0))
                state.log_time = record.get("time")
                handed = True
                try:
                    if "media" in record:
                        logger.log_media(load_media(record, synced.records_file.parent))
                    elif "artifact" not in record:
                        logger.data(LogLevel.parse(record["level"]), record["data"])
                    elif artifacts[record["artifact"]["name"]] is record:  # (an older version is passed over)
                        _upload(logger, record["level"], record["artifact"])
                    else:
                        handed = False
                except FileNotFoundError as error:  # gone
                    refused[str(error)], handed = None, False
                except (TypeError, ValueError) as error:  # refused by the back end (the rest of it was sent)
                    refused[str(error)] = None
                if handed:
                    synced.handed.append(index)
                synced.done = index + 1
    except (TypeError, ValueError) as error:  # refused by the back end last: said at close, which completed
        refused[str(error)] = None
    synced.refused = list(refused)


def _upload(logger: Logger, level: str, artifact: dict[str, Any]) -> None:
    """An artifact a spool kept: its file as it is now (`FileNotFoundError` if it is gone)."""
    file = Path(artifact["file"])
    if not file.is_file():
        raise FileNotFoundError(f"artifact {artifact['name']!r}: its file {file} is gone")
    def literal(text: str) -> str:  # file_artifact fills templates: these were filled by the run
        return text.replace("{", "{{").replace("}", "}}")

    logger.file_artifact(LogLevel.parse(level), literal(artifact["name"]), literal(str(file)),
                         overwrite=artifact["overwrite"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a run or sweep directory (its runs' records files), or one .jsonl file")
    parser.add_argument("--to", required=True, help="destinations to replay into, by config name: mlflow,wandb,tensorboard")
    parser.add_argument("-cd", "--config-dir", help="a config directory of your own, searched before the packaged one")
    parser.add_argument("--fresh", action="store_true",
                        help="send everything again, into a new tracker run (what earlier syncs sent stays where it is)")
    parser.add_argument("--files", action="append", default=[], metavar="PATTERN",
                        help="also send the run's files matching PATTERN (relative to its directory: "
                             "'checkpoints/*.pt') to the destinations that take files; repeatable")
    parser.add_argument("--unfinished", action="store_true",
                        help="also send what a resumable run that did not finish logged after its last checkpoint")
    parser.add_argument("overrides", nargs="*", help="config overrides, as for composer-cfg "
                                                     "(logger.destinations.mlflow.tracking_uri=...)")
    args = parser.parse_intermixed_args(argv)
    names = [name.strip() for name in args.to.split(",") if name.strip()]
    unmask = mask_output()  # what it prints and logs, with secrets masked, as the command does
    remember(secrets_in(args.overrides))
    try:
        with _noting_ctrl_c():
            results = sync(args.source, names, args.overrides, args.config_dir, progress=True,
                           unfinished=args.unfinished, fresh=args.fresh, files=args.files)
            if _CTRL_C.is_set():
                raise KeyboardInterrupt
        return _report(results)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; what each tracker has is recorded, and the next sync continues it",
              file=sys.stderr)
        return 130
    except Exception as error:  # a back end that failed: what was sent before it is kept (`SyncProgress`)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{PROG}: error: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    finally:
        unmask()


#: Set by a Ctrl-C during `main`'s sync (and only then).
_CTRL_C = threading.Event()


@contextlib.contextmanager
def _noting_ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, as usual, and is also noted in `_CTRL_C`: one that lands
    while a finalizer runs (an object's ``__del__``, a weakref callback) can not be raised there,
    so the replay and `main` raise it again at the next record or the end (and Python's
    "Exception ignored" traceback of it is not printed). A SIGINT the process was started
    ignoring stays ignored."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def note(signum: int, frame: Any) -> None:
        _CTRL_C.set()
        signal.default_int_handler(signum, frame)

    shown = sys.unraisablehook

    def unraisable(raised: Any) -> None:
        if not issubclass(raised.exc_type, KeyboardInterrupt):
            shown(raised)

    signal.signal(signal.SIGINT, note)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = shown
        _CTRL_C.clear()


def _report(results: list[Synced]) -> int:
    for synced in results:
        if synced.skipped:
            print(f"{synced.destination}: skipped {synced.records_file}: {synced.skipped}")
            continue
        where = f" into {synced.location}" if synced.location else ""
        print(f"{synced.destination}: {synced.sent} new record(s) from {synced.records_file}{where}")
        if synced.files:
            print(f"  files: {', '.join(synced.files)}")
        for line in synced.refused:
            print(f"  refused: {line}")
        if synced.held_back:
            print(f"  held back: {synced.held_back} record(s) after the run's last checkpoint (the run is "
                  f"{synced.run_status}: an attempt that continues it logs them again); --unfinished sends them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
