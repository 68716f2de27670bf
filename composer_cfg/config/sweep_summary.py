"""`SweepSummary`: a table of a ``-m`` sweep's jobs (overrides, status, final metrics) in its directory.

A Hydra callback. Each job, when it ends, appends one JSON line to ``sweep-jobs.jsonl`` in the
sweep directory (whatever process the launcher ran it in) and rewrites, from all rows so far,
``sweep-summary.csv`` (one row per job, one column per metric) and, with matplotlib installed,
``sweep-summary.png`` (one bar chart per metric, a bar per job): a sweep that Hydra stops at a
failed job still has its summary.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from composer_cfg.config.sweep_job import current_sweep_job, sweep_directory
from composer_cfg.run.files import replacing

LOG = logging.getLogger("composer_cfg")
JOBS = "sweep-jobs.jsonl"
TABLE = "sweep-summary.csv"
CHART = "sweep-summary.png"


class SweepSummary(Callback):
    """Records each sweep job's row at ``on_job_end``; writes the table and chart at ``on_multirun_end``."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import JobStatus

        job = current_sweep_job()
        if job is None:
            return
        completed = job_return.status == JobStatus.COMPLETED
        metrics = job_return.return_value if completed else None
        row = {
            "job": job.number,
            "overrides": list(job.overrides),
            "status": "COMPLETED" if completed else "FAILED",
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            if isinstance(metrics, Mapping) else {},
            "directory": str(HydraConfig.get().runtime.output_dir),
        }
        sweep = job.directory
        descriptor = os.open(sweep / JOBS, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            # Jobs ending at once in other processes wait here: each row whole, each table complete.
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            os.write(descriptor, (json.dumps(row) + "\n").encode())
            summarise(sweep)  # now, not only at the sweep's end: Hydra ends a sweep at its first failed job
        finally:
            os.close(descriptor)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = sweep_directory(config.hydra)
        written = summarise(sweep)
        if written:
            print(f"sweep summary: {', '.join(str(path) for path in written)}")


def summarise(sweep: Path) -> list[Path]:
    """Write the table (and the chart) of the job rows in `sweep`; the files written."""
    rows = read_jobs(sweep / JOBS)
    if not rows:
        return []
    write_table(rows, sweep / TABLE)
    chart = draw_chart(rows, sweep / CHART)
    return [sweep / TABLE] + ([chart] if chart else [])


def read_jobs(path: Path) -> list[dict[str, Any]]:
    """The rows of ``sweep-jobs.jsonl``, one per job (a job run again keeps its last row), by job number."""
    if not path.exists():
        return []
    rows: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            LOG.warning("sweep summary: skipped a torn line in %s", path)
            continue
        rows[row["job"]] = row
    return [rows[job] for job in sorted(rows)]


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """``job, status, overrides, <metric>...``: a job without a metric leaves its cell empty."""
    metrics = list(dict.fromkeys(key for row in rows for key in row["metrics"]))
    with replacing(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["job", "status", "overrides", *metrics])
        for row in rows:
            writer.writerow([row["job"], row["status"], " ".join(row["overrides"]),
                             *(row["metrics"].get(key, "") for key in metrics)])
        text.flush()
        text.detach()  # the file is `replacing`'s to close


def draw_chart(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """One bar chart per metric, a bar per job (red: failed) labelled by the overrides that differ
    between jobs; None without matplotlib or metrics."""
    metrics = list(dict.fromkeys(key for row in rows for key in row["metrics"]))
    if not metrics:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    shared = set.intersection(*(set(row["overrides"]) for row in rows))
    labels = [f"{row['job']}: " + " ".join(o for o in row["overrides"] if o not in shared) for row in rows]
    figure, axes = plt.subplots(len(metrics), 1, figsize=(8, 0.5 + 0.4 * len(rows) * len(metrics) + len(metrics)),
                                squeeze=False, constrained_layout=True)
    for axis, metric in zip(axes[:, 0], metrics):
        values = [row["metrics"].get(metric, float("nan")) for row in rows]
        axis.barh(range(len(rows)), values, color=["C0" if row["status"] == "COMPLETED" else "C3" for row in rows])
        axis.set_yticks(range(len(rows)), labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_title(metric, fontsize=10)
    with replacing(path) as file:
        figure.savefig(file, format="png")
    plt.close(figure)
    return path
