"""Logging measures itself (``measure_overhead``): per destination, calls and time on the thread that
logged. Counts are exact; times are only bounded from below by work the test knows a call does."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from test_cli import cli

from composer_cfg import InMemoryLogger, Logger, LogLevel, State, TrainingLoop
from composer_cfg.run.run_record import read_manifest
from composer_cfg.runtime.meter import KINDS, as_metrics
from conftest import Recorder, needs


class Slow(Recorder):
    """Spends at least a millisecond in every data call."""

    def log_data(self, state, log_level, data):
        time.sleep(0.001)
        super().log_data(state, log_level, data)


def test_calls_are_counted_per_destination_and_kind_and_the_times_add_up():
    slow, epochs_only = Slow(), Recorder(log_level=LogLevel.EPOCH)
    logger = Logger(State("run"), {"slow": slow, "epochs": epochs_only}, measure_overhead=True)
    with logger:
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for _ in loop.batches(5):
                logger.data_batch({"loss": 0.5})
            logger.data_epoch({"acc": 0.9})
    fired = len([call for call in slow.calls if call[0] == "event"])
    overhead = logger.overhead()
    assert list(overhead) == ["slow", "epochs"]
    slow_figures, epoch_figures = overhead["slow"], overhead["epochs"]
    assert {kind: slow_figures[kind]["calls"] for kind in KINDS} == {"data": 6, "events": fired, "artifacts": 0,
                                                                     "close": 1}
    assert epoch_figures["data"]["calls"] == 1  # the batch calls never reached it: its threshold filters them
    assert slow_figures["data"]["seconds"] >= 0.006  # six calls of at least a millisecond each
    assert slow_figures["data"]["us_per_call"] == pytest.approx(slow_figures["data"]["seconds"] / 6 * 1e6)
    for figures in overhead.values():
        assert figures["total_seconds"] == pytest.approx(sum(figures[kind]["seconds"] for kind in KINDS))


def test_the_figures_can_be_logged_as_logger_metrics():
    memory = InMemoryLogger()
    with Logger(State("run"), {"memory": memory}, measure_overhead=True) as logger:
        logger.data_batch({"loss": 0.5})
        logger.data_fit(as_metrics(logger.overhead()))
    kept = memory.most_recent_values
    assert kept["logger/memory/data_calls"] == 1 and kept["logger/memory/close_calls"] == 0
    assert sorted(key for key in kept if key.startswith("logger/memory/data")) == [
        "logger/memory/data_calls", "logger/memory/data_us_per_call"]


def test_nothing_is_measured_by_default():
    logger = Logger(State("run"), Recorder())
    logger.data_batch({"loss": 0.5})
    assert logger.overhead() == {}
    with pytest.raises(TypeError, match="measure_overhead must be true or false, got 1"):
        Logger(State("run"), measure_overhead=1)


@pytest.mark.slow
def test_the_run_summary_and_the_manifest_show_what_each_destination_did(tmp_path):
    needs("matplotlib")  # the demo's plot
    out = cli("run_name=demo", "hydra.run.dir=run", "logger.measure_overhead=true", "+logger/destinations=jsonl",
              "resume=auto", cwd=tmp_path)  # a resumable run keeps a manifest
    summary = out.stdout.splitlines()
    start = summary.index("logging, per destination (time on the threads that logged):")
    figures = r" data calls, \d+\.\d µs per call; \d+\.\d ms on the logging thread in all"
    assert summary[start - 1].startswith("  plot: ")
    lines = summary[start + 1:]
    for line, expected in zip(lines, [r"  file: 4" + figures + r"; [\d,]+ bytes written", r"  in_memory: 53" + figures,
                                      r"  progress_bar: 52" + figures, r"  jsonl: 53" + figures + r"; [\d,]+ bytes written"]):
        assert re.fullmatch(expected, line), line
    assert len(lines) == 4
    # The same figures, in the run's manifest; they add up, and the bytes are those on disk.
    # (The demo's last epoch's log lines and checkpoint are written after the report was made.)
    report = read_manifest(tmp_path / "run/demo/run-rank0.json")["logging"]
    assert sorted(report) == ["file", "in_memory", "jsonl", "progress_bar"]
    assert report["jsonl"]["bytes_written"] == (tmp_path / "run/demo/metrics-rank0.jsonl").stat().st_size
    assert report["file"]["bytes_written"] == (tmp_path / "run/demo/logs-rank0.txt").stat().st_size
    assert "  jsonl: 53 data calls" in lines[3] and f"{report['jsonl']['bytes_written']:,} bytes written" in lines[3]
    for figures in report.values():
        assert figures["total_seconds"] == pytest.approx(sum(figures[kind]["seconds"] for kind in KINDS))


def test_a_run_that_neither_resumes_nor_spools_writes_no_manifest_even_when_measured():
    with Logger(State("run"), Recorder()) as logger:
        logger.data_batch({"loss": 0.5})
    assert logger.report() == {} and not Path("run").exists()
    with Logger(State("measured"), Recorder(), measure_overhead=True) as logger:
        logger.data_batch({"loss": 0.5})
    assert logger.report()["Recorder"]["data"]["calls"] == 1 and not Path("measured").exists()
