"""The run manifest: a small JSON file per rank, beside the run's records, saying what went where.

    {run_name}/run-rank0.json   {"sync": {"metrics-rank0.jsonl": {"mlflow": {"identity": {...}, ...}}}}

It is read whole and replaced whole (never edited in place), so a reader sees the old manifest
or the new one, never half of either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer_cfg.run.files import replacing


def manifest_path(directory: Path, rank: int) -> Path:
    """Where the manifest of `rank` lives in a run's `directory`."""
    return directory / f"run-rank{rank}.json"


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`, or {} when there is none yet; `ValueError` naming the file when
    it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a run manifest: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: not a run manifest: expected a JSON object, got {type(content).__name__}")
    return content


def write_manifest(path: Path, content: dict[str, Any]) -> None:
    """Replace the manifest at `path` with `content`, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as file:
        file.write(json.dumps(content, indent=2, sort_keys=True).encode("utf-8") + b"\n")
