"""Read the records of an offline W&B run file (``run-<id>.wandb``).

wandb 0.31 has no offline reader of its own. The format: a 7-byte header (``:W&B``, uint16
0xBEE1, uint8 version), then LevelDB-log framing in 32 KiB blocks; each chunk is a uint32 crc,
uint16 length, uint8 type (1 full, 2 first, 3 middle, 4 last) and the payload; a payload is a
``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32 * 1024


def records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0)
    position, pending = 7, b""
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # too little left in this block for a chunk header
            position += BLOCK - position % BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        payload = data[position + 7 : position + 7 + length]
        assert crc == zlib.crc32(payload, zlib.crc32(bytes([kind]))), f"bad crc at {position}"
        position += 7 + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def offline_run(directory: Path) -> dict[str, Any]:
    """history (step -> {key: value}), summary, config, run name and group, artifacts and exit code;
    media (step -> {name: W&B's fields of a media value}), the run's `files` directory (where the
    media's files are, by the paths the fields give) and W&B's own config (``_wandb``).

    wandb's service process writes the run file and finishes it after ``run.finish`` returns;
    ``wandb.teardown()`` waits for that, as the process's exit does.
    """
    (run,) = offline_runs(directory)
    return run


def offline_runs(directory: Path) -> list[dict[str, Any]]:
    """Every offline run under `directory`, oldest first (a resumed run has one per attempt)."""
    import wandb

    wandb.teardown()
    return [_read_run(run_file) for run_file in sorted(directory.glob("offline-run-*/run-*.wandb"))]


def _read_run(run_file: Path) -> dict[str, Any]:
    import json

    result: dict[str, Any] = {"history": {}, "summary": {}, "config": {}, "artifacts": [], "exit_code": None,
                              "media": {}, "files": run_file.parent / "files"}
    for record in records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            step = record.history.step.num
            result["history"].setdefault(step, {}).update({k: v for k, v in items.items() if not k.startswith("_")})
            fields: dict[str, dict[str, Any]] = {}
            for item in record.history.item:
                if len(item.nested_key) == 2:  # a media value: its name, then each of its fields
                    fields.setdefault(item.nested_key[0], {})[item.nested_key[1]] = json.loads(item.value_json)
            media = {name: value for name, value in fields.items() if "_type" in value}
            if media:
                result["media"].setdefault(step, {}).update(media)
        elif kind == "run":
            result["name"], result["group"], result["id"] = record.run.display_name, record.run.run_group, record.run.run_id
            result["project"] = record.run.project
            result["tags"] = list(record.run.tags)
            result["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            result["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "artifact":
            result["artifacts"].append({
                "name": record.artifact.name, "type": record.artifact.type, "aliases": sorted(record.artifact.aliases),
                "files": [entry.path for entry in record.artifact.manifest.contents],
            })
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    result["summary"][key] = json.loads(item.value_json)
        elif kind == "exit":
            result["exit_code"] = record.exit.exit_code
    config = {k: v.get("value", v) if isinstance(v, dict) else v for k, v in result["config"].items()}
    result["wandb_config"] = config.get("_wandb", {})
    result["config"] = {k: v for k, v in config.items() if not k.startswith("_")}
    return result
