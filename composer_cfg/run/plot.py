"""``composer-cfg-plot``: plot a run's metrics (from its JSON Lines files) against batch.

    composer-cfg-plot outputs/2026-11-25/10-00-00            every numeric metric, all ranks
    composer-cfg-plot run/metrics-rank0.jsonl --metrics loss/train -o loss.png

One panel per metric, one line per rank. Needs matplotlib (``pip install composer_cfg[plot]``).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from composer_cfg.run.files import replacing
from composer_cfg.run.records import read_records

#: metric -> rank -> (batches, values)
Series = dict[str, dict[int, tuple[list[int], list[float]]]]
PANEL_SIZE = (8.0, 2.5)  # inches; at DPI this is 800 x 250 pixels per panel
DPI = 100
MARKED_POINTS = 50  # a series with this many points or fewer gets a marker per point


def series_from_records(records: Iterable[dict[str, Any]]) -> Series:
    """Every numeric value of every record, by metric and rank, in logged order."""
    series: Series = {}
    for record in records:
        for key, value in record["data"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                batches, values = series.setdefault(key, {}).setdefault(record.get("rank", 0), ([], []))
                batches.append(record["batch"])
                values.append(float(value))
    return series


def plot_series(series: Series, metrics: Sequence[str], output: str | Path, title: str = "") -> Path:
    """Write a PNG (or the format `output`'s suffix names) with one panel per metric (values
    against batch, one line per rank), atomically: see `composer_cfg.run.files.replacing`."""
    import matplotlib.pyplot as plt

    figure = draw(series, metrics, title)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as file:
        figure.savefig(file, format=path.suffix[1:] or None)
    plt.close(figure)
    return path


def draw(series: Series, metrics: Sequence[str], title: str = "") -> Any:
    """The figure `plot_series` saves: a panel per metric, markers where points are few (a value
    logged once, a hyperparameter or a final score, is one visible dot), the title above them all."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # not its font-cache notices
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(metrics), 1, squeeze=False, sharex=True, layout="constrained",
                                figsize=(PANEL_SIZE[0], PANEL_SIZE[1] * len(metrics)), dpi=DPI)
    for axis, metric in zip(axes[:, 0], metrics):
        for rank, (batches, values) in sorted(series[metric].items()):
            axis.plot(batches, values, label=f"rank {rank}", linewidth=1.2,
                      marker="o" if len(values) <= MARKED_POINTS else None, markersize=4)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if len(series[metric]) > 1:
            axis.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("batch")
    if title:
        figure.suptitle(title)
    return figure


def series_from_memory(memory: Any, rank: int) -> Series:
    """Every numeric metric an `InMemoryLogger` holds, against batch, as `rank`'s line."""
    series: Series = {}
    for key, value in memory.most_recent_values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = memory.get_timeseries(key)
            series[key] = {rank: (values["batch"].tolist(), [float(v) for v in values[key].tolist()])}
    return series


def choose_metrics(series: Series, wanted: Sequence[str] | None) -> list[str]:
    """`wanted` (checked against what was logged), or every metric logged."""
    if not wanted:
        return sorted(series)
    unknown = [metric for metric in wanted if metric not in series]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(series), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ValueError(f"--metrics: no values logged for {unknown[0]!r}{hint} logged: {', '.join(sorted(series))}")
    return list(wanted)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="composer-cfg-plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a run or sweep directory (its runs' records files) or one .jsonl file")
    parser.add_argument("--metrics", nargs="+", help="metrics to plot (default: every numeric one)")
    parser.add_argument("-o", "--output", help="PNG to write (default: metrics.png beside the source)")
    args = parser.parse_args(argv)
    source = Path(args.source)
    if not source.exists():
        parser.error(f"{source}: no such file or directory")
    try:
        series = series_from_records(read_records(source))
    except ValueError as error:  # a damaged manifest or records file: named, in one line
        parser.error(str(error))
    if not series:
        parser.error(f"{source}: no numeric metrics in any .jsonl file")
    try:
        metrics = choose_metrics(series, args.metrics)
    except ValueError as error:
        parser.error(str(error))
    output = Path(args.output) if args.output else (source if source.is_dir() else source.parent) / "metrics.png"
    try:
        plot_series(series, metrics, output, title=source.name)
    except ImportError:
        parser.error("matplotlib is not installed: pip install 'composer_cfg[plot]'")
    print(f"wrote {output} ({len(metrics)} panels: {', '.join(metrics)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
