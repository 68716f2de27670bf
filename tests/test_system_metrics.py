"""`system_metrics`: the machine's own figures, sampled off the training thread at wall-clock ticks."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from composer_cfg import ConfigError, JSONLinesLogger, Logger, State, build_logger
from composer_cfg.core.timestamp import Timestamp
from conftest import needs

psutil = needs("psutil")
HOST_KEYS = ["system/cpu_percent", "system/memory_rss_bytes", "system/host_memory_percent"]


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "composer_cfg-system-metrics"]


@pytest.mark.slow
def test_samples_appear_at_each_tick_at_the_step_the_run_is_at_with_values_in_range(tmp_path):
    state = State("machine")
    jsonl = JSONLinesLogger(filename=str(tmp_path / "metrics.jsonl"))
    logger = Logger(state, {"jsonl": jsonl}, system_metrics={"every_seconds": 0.25})
    logger.run_event("init")
    started, batch = time.time(), 0
    while time.time() - started < 1.6:  # a training loop: the step moves while the sampler samples
        batch += 1
        state.timestamp = Timestamp(batch=batch)
        logger.data_batch({"loss": 1.0})
        time.sleep(0.01)
    logger.close()
    assert sampler_threads() == []  # close stops it
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    samples = [r for r in records if "system/cpu_percent" in r["data"]]
    assert 4 <= len(samples) <= 7
    ticks = [round(r["time"] / 0.25) for r in samples]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # one per tick, none skipped, none twice
    assert all(abs(r["time"] - 0.25 * tick) < 0.2 for r, tick in zip(samples, ticks))
    assert [r["batch"] for r in samples] == sorted(r["batch"] for r in samples) and samples[-1]["batch"] > samples[0]["batch"]
    rss = psutil.Process().memory_info().rss
    for record in samples:
        data = record["data"]
        assert sorted(data) == sorted(HOST_KEYS) and record["level"] == "BATCH"
        assert 0 <= data["system/cpu_percent"] <= 100 * os.cpu_count()
        assert 0.5 * rss < data["system/memory_rss_bytes"] < 2 * rss
        assert 0 < data["system/host_memory_percent"] < 100
    assert any(r["data"]["system/cpu_percent"] > 0 for r in samples[1:])  # the loop above keeps a CPU busy


def test_without_system_metrics_no_sampler_runs_and_no_system_key_is_logged(tmp_path):
    jsonl = JSONLinesLogger(filename=str(tmp_path / "metrics.jsonl"))
    with Logger(State("plain"), {"jsonl": jsonl}) as logger:
        logger.run_event("init")
        assert sampler_threads() == []
        logger.data_batch({"loss": 1.0})
    assert "system/" not in (tmp_path / "metrics.jsonl").read_text()


@pytest.mark.parametrize("override, message", [
    ("logger.system_metrics={evry_seconds:3}", "logger.system_metrics.evry_seconds: unknown key; did you mean "
                                                "'every_seconds'? allowed: every_seconds"),
    ("logger.system_metrics={every_seconds:0}", "logger.system_metrics.every_seconds: expected a positive number of "
                                                "seconds, got 0"),
    ("logger.system_metrics=30", "logger.system_metrics: expected a mapping such as {every_seconds: 30}, got 30 (int)"),
])
def test_a_bad_system_metrics_setting_is_one_error_naming_its_key(tmp_path, monkeypatch, override, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=[override])
    assert str(caught.value).startswith(message + " (from command line")
    assert list(tmp_path.iterdir()) == []


NVML_STAND_IN = '''
"""A stand-in for NVIDIA's management library: three GPUs (this machine has none)."""
from types import SimpleNamespace
class NVMLError(Exception): pass
def nvmlInit(): pass
def nvmlDeviceGetCount(): return 3
def nvmlDeviceGetHandleByIndex(i): return i
def nvmlDeviceGetHandleByUUID(uuid):
    if uuid != "GPU-1111": raise NVMLError("not found")
    return 1
def nvmlDeviceGetUtilizationRates(h): return SimpleNamespace(gpu=10 * (h + 1), memory=0)
def nvmlDeviceGetMemoryInfo(h): return SimpleNamespace(used=1000 * (h + 1), total=10**9, free=0)
'''


@pytest.mark.parametrize("visible, expected", [
    (None, {"gpu0": (10.0, 1000), "gpu1": (20.0, 2000), "gpu2": (30.0, 3000)}),
    ("2,GPU-1111", {"gpu0": (30.0, 3000), "gpu1": (20.0, 2000)}),
    ("", {}),
])
def test_each_visible_gpu_is_sampled_in_cuda_visible_devices_order(tmp_path, visible, expected):
    (tmp_path / "pynvml.py").write_text(NVML_STAND_IN)
    script = textwrap.dedent("""
        import json
        from composer_cfg.runtime.system_metrics import SystemMetrics
        print(json.dumps(SystemMetrics({"every_seconds": 30}).sample()))
    """)
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    out = subprocess.run([sys.executable, "-c", script], env={**env, "PYTHONPATH": f"{tmp_path}:{os.getcwd()}"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    sample = json.loads(out.stdout)
    assert {key: value for key, value in sample.items() if key.startswith("system/gpu")} == {
        f"system/{gpu}/{name}": value for gpu, (utilization, used) in expected.items()
        for name, value in (("utilization_percent", utilization), ("memory_used_bytes", used))}
    assert [key for key in sample if not key.startswith("system/gpu")] == HOST_KEYS
