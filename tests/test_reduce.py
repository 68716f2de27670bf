"""`reduce`: keys logged on every rank combined across ranks at barriers (torchrun, gloo, real files
and trackers read back), and what it does without a process group."""

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer_cfg import ConfigError, InMemoryLogger, Logger, State, build_logger, compose_config
from composer_cfg.runtime.reduction import Reduction
from conftest import default_sigint, needs

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_", "SLURM_", "TORCHELASTIC", "COMPOSER_RUN_NAME",
                                  "MASTER_"))}
REDUCE = "logger.reduce={loss:mean,tokens:sum,grad_norm:max,eval/*:mean}"
QUIET = ["logger.destinations.progress_bar=null"]
OPS = {"loss": "mean", "tokens": "sum", "grad_norm": "max", "eval/acc": "mean"}


def torchrun(tmp_path: Path, world: int, options: dict) -> subprocess.CompletedProcess:
    needs("torch")
    return subprocess.run([str(BIN / "torchrun"), f"--nproc_per_node={world}", "--standalone", str(HERE / "ranks_child.py"),
                           json.dumps(options)], cwd=tmp_path, env={**CLEAN_ENV, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=240)


def one_process_per_rank(tmp_path: Path, world: int, options: dict) -> list[subprocess.Popen]:
    """The ranks as separate processes (no torchrun agent to end the others when one dies)."""
    needs("torch")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return [subprocess.Popen([sys.executable, str(HERE / "ranks_child.py"), json.dumps(options)], cwd=tmp_path,
                             env={**CLEAN_ENV, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                                  "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                                  "LOCAL_WORLD_SIZE": str(world)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
            for rank in range(world)]


def raw_values(tmp_path: Path, world: int) -> list[dict[tuple[int, str], float]]:
    """What each rank logged, by (batch, key), as `ranks_child` wrote it down."""
    ranks = []
    for rank in range(world):
        logged = json.loads((tmp_path / f"raw-rank{rank}.json").read_text())
        ranks.append({(batch, key): value for batch, _, data in logged for key, value in data.items()})
    return ranks


def by_hand(raw: list[dict[tuple[int, str], float]]) -> dict[tuple[int, str], float]:
    """Each (batch, key) rank 0 logged, combined over the ranks that logged it, as OPS says; the
    rank of each max under ``<key>/rank`` (the lowest on a tie)."""
    expected = {}
    for (batch, key), mine in raw[0].items():
        present = [(rank, values[(batch, key)]) for rank, values in enumerate(raw) if (batch, key) in values]
        numbers = [value for _, value in present]
        op = OPS.get(key)
        if op == "mean":
            expected[(batch, key)] = math.fsum(numbers) / len(numbers)
        elif op == "sum":
            expected[(batch, key)] = sum(numbers)
        elif op == "max":
            rank, value = max(present, key=lambda pair: (pair[1], -pair[0]))
            expected[(batch, key)], expected[(batch, f"{key}/rank")] = value, rank
        else:
            expected[(batch, key)] = mine
    return expected


def jsonl_values(path: Path) -> dict[tuple[int, str], float]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["batch"], key): value for r in records if r["level"] in ("BATCH", "EPOCH")
            for key, value in r["data"].items()}


def series(values: dict[tuple[int, str], float], key: str) -> dict[int, float]:
    return {batch: value for (batch, name), value in values.items() if name == key}


def counts(tmp_path: Path, rank: int) -> dict:
    return json.loads((tmp_path / f"counts-rank{rank}.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_rank_zero_records_the_combination_of_every_ranks_values_in_jsonl_tensorboard_and_mlflow(tmp_path, world,
                                                                                                project_store):
    needs("tensorboard")
    mlflow = needs("mlflow")
    options = {"epochs": 2, "batches": 8, "overrides": [
        "+logger/destinations=[jsonl,tensorboard,mlflow]", REDUCE, "logger.reduce_every=4", *QUIET]}
    out = torchrun(tmp_path, world, options)
    assert out.returncode == 0, out.stderr[-3000:]
    raw = raw_values(tmp_path, world)
    expected = by_hand(raw)
    assert len(expected) == 2 * 8 * 5 + 2  # loss, tokens, grad_norm, grad_norm/rank, lr per batch; eval/acc per epoch
    assert {k for k, v in expected.items() if k[1] == "grad_norm/rank"} and len(
        {v for k, v in expected.items() if k[1] == "grad_norm/rank"}) > 1  # the maximum moves between ranks
    assert jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl") == pytest.approx(expected, rel=1e-12)
    for rank in range(1, world):  # the other ranks keep their own values in their own files
        assert jsonl_values(tmp_path / "ranks" / f"metrics-rank{rank}.jsonl") == pytest.approx(raw[rank], rel=1e-6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (tmp_path / "ranks" / "tensorboard").iterdir()
    board = EventAccumulator(str(events), size_guidance={"scalars": 0}).Reload()
    for key in ("loss", "tokens", "grad_norm", "grad_norm/rank"):
        assert {e.step: e.value for e in board.Scalars(key)} == pytest.approx(series(expected, key), rel=1e-6)

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id])
    for key in ("loss", "tokens", "grad_norm", "grad_norm/rank"):
        history = client.get_metric_history(run.info.run_id, key)
        assert len(history) == 16 and {m.step: m.value for m in history} == pytest.approx(series(expected, key), rel=1e-6)

    barriers = 2 * 2 + 2 + 2 + 1 + 1  # batch_end at 4 and 8 per epoch, epoch_end, epoch_checkpoint, fit_end, close
    for rank in range(world):
        seen = counts(tmp_path, rank)
        assert seen["report"]["barriers"] == barriers
        assert seen["end"]["logger"] - seen["at_init"]["logger"] == 2 * barriers  # counted at torch.distributed's API
        assert seen["end"]["training"] == 0  # the training's own group: never used by the logger
        # rank 0: the device tensors cross once per barrier that has some, not per call; the others' records do not
        # wait for barriers: there the two InMemoryLogger reads (batches 2 and 5) also take the tensors across
        assert seen["transfers"] == (4 if rank == 0 else 6)
    assert counts(tmp_path, 0)["report"]["missing"] == 0
    fit = [json.loads(line)["data"] for line in (tmp_path / "ranks" / "metrics-rank0.jsonl").read_text().splitlines()
           if json.loads(line)["level"] == "FIT" and "tokens" in json.loads(line)["data"]]
    assert fit == [{"tokens": sum(1000 * (rank + 1) for rank in range(world))}]  # logged after fit_end: exchanged at close
    # rank 0's InMemoryLogger: nothing of batches 0-1 before the exchange at batch 4; batch 3's sum after it
    assert counts(tmp_path, 0)["peeks"] == [None, sum(10 * (rank + 1) + 3 for rank in range(world))]
    assert counts(tmp_path, 1)["peeks"] == [20 + 1, 20 + 4]  # other ranks: their own values, at once


@pytest.mark.slow
def test_a_rank_that_stops_logging_a_key_is_left_out_of_its_combination_and_counted(tmp_path):
    options = {"epochs": 1, "batches": 8, "stop_key_after": 5, "overrides": [
        "+logger/destinations=jsonl", REDUCE.replace("}", ",nothing/*:max}"), "logger.reduce_every=4", *QUIET]}
    out = torchrun(tmp_path, 3, options)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("reduce: no logged key matched 'nothing/*'") == 3  # said at close, on each rank
    assert counts(tmp_path, 2)["report"]["unmatched"] == ["nothing/*"]
    raw = raw_values(tmp_path, 3)
    expected = by_hand(raw)
    records = jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl")
    assert records == pytest.approx(expected, rel=1e-12)
    assert records[(6, "loss")] == pytest.approx((raw[0][(6, "loss")] + raw[2][(6, "loss")]) / 2, rel=1e-12)
    assert counts(tmp_path, 0)["report"]["missing"] == 3  # rank 1's loss at batches 5, 6, 7


def one_epoch(*overrides: str, **options) -> dict:
    """Options for `ranks_child`: 12 batches to JSON Lines, REDUCE exchanged every 4, and `options`."""
    return {"epochs": 1, "batches": 12, **options,
            "overrides": ["+logger/destinations=jsonl", REDUCE, "logger.reduce_every=4", *QUIET, *overrides]}


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=timeout)
        results.append((proc.returncode, stderr))
    return results


@pytest.mark.slow
def test_a_rank_that_dies_turns_the_reduction_off_and_the_others_finish_with_their_own_values(tmp_path):
    started = time.monotonic()
    results = finish(one_process_per_rank(tmp_path, 2, one_epoch(die_at=6)), timeout=120)
    assert [code for code, _ in results] == [0, 3], results[0][1][-3000:]
    assert time.monotonic() - started < 60  # not the 300 s deadline: a dead peer is noticed at once
    stderr = results[0][1]
    assert stderr.count("reduce: a barrier across the 2 ranks failed") == 1
    assert "the reduction is off for the rest of the run and every rank logs its own values" in stderr
    raw = raw_values_of_rank_zero(tmp_path)
    records = jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl")
    assert records[(3, "tokens")] == 10 + 3 + 20 + 3  # combined before rank 1 died
    assert [records[(batch, "tokens")] for batch in range(4, 12)] == [raw[(batch, "tokens")] for batch in range(4, 12)]
    assert (8, "grad_norm/rank") not in records


def raw_values_of_rank_zero(tmp_path: Path) -> dict[tuple[int, str], float]:
    logged = json.loads((tmp_path / "raw-rank0.json").read_text())
    return {(batch, key): value for batch, _, data in logged for key, value in data.items()}


@pytest.mark.slow
def test_a_rank_that_stalls_past_the_deadline_does_not_hold_the_others_longer(tmp_path):
    procs = one_process_per_rank(tmp_path, 2, one_epoch("logger.reduce_timeout=2", stall_at=6, stall_seconds=5))
    try:
        _, stderr = procs[0].communicate(timeout=120)
        assert procs[0].returncode == 0, stderr[-3000:]
        assert procs[1].poll() is None  # rank 1 still sleeps: rank 0 waited one deadline, not for it
        assert stderr.count("reduce: a barrier across the 2 ranks failed") == 1
        code, stderr_1 = finish(procs[1:], timeout=120)[0]
    finally:
        end_all(procs)
    assert code == 0, stderr_1[-3000:]  # the late rank meets no one at its barrier: it goes on alone too
    assert stderr_1.count("reduce: a barrier across the 2 ranks failed") == 1


@pytest.mark.slow
def test_ranks_that_reach_different_barriers_turn_the_reduction_off_at_once_instead_of_pairing_them_wrongly(tmp_path):
    started = time.monotonic()
    results = finish(one_process_per_rank(tmp_path, 2, one_epoch(flush_at=2, lonely=True)), timeout=120)
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:]
    assert time.monotonic() - started < 60  # not the 300 s deadline
    for _, stderr in results:
        assert stderr.count("reduce: the ranks reached different barriers (rank 0: flush, rank 1: batch_end, at "
                            "barrier 1); fire the same events, and call flush, on every rank; the reduction is off") == 1
    records = jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl")
    assert [records[(batch, "tokens")] for batch in range(12)] == [10 + batch for batch in range(12)]  # its own
    # then a Logger with reduce that rank 0 alone builds: its group can not be made; said, and no error
    assert "reduce: the logger's group across the 2 ranks could not be made (" in results[0][1]


@pytest.mark.slow
def test_a_script_that_ends_the_process_group_before_the_logger_closes_still_closes_every_destination(tmp_path):
    results = finish(one_process_per_rank(tmp_path, 2, one_epoch(destroy_first=True)), timeout=120)
    assert [code for code, _ in results] == [0, 0], results[0][1][-3000:]
    records = [json.loads(line) for line in (tmp_path / "ranks" / "metrics-rank0.jsonl").read_text().splitlines()]
    assert [r["data"] for r in records if r["level"] == "FIT" and "tokens" in r["data"]] == [{"tokens": 3000}]
    assert jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl")[(11, "tokens")] == 10 + 11 + 20 + 11
    assert counts(tmp_path, 0)["report"]["started"] is True


@pytest.mark.slow
def test_the_machines_metrics_of_every_rank_are_combined_by_sampling_tick(tmp_path):
    needs("psutil")
    options = {"epochs": 1, "batches": 40, "sleep": 0.04, "system_every": 0.25,
               "overrides": ["+logger/destinations=jsonl", "logger.reduce={system/*:max}", "logger.reduce_every=10",
                             *QUIET]}
    out = torchrun(tmp_path, 2, options)
    assert out.returncode == 0, out.stderr[-3000:]
    samples = []  # by rank: {tick: sample}
    for rank in range(2):
        logged = json.loads((tmp_path / f"raw-rank{rank}.json").read_text())
        samples.append({tuple(place)[1]: data for place, _, data in logged if isinstance(place, list)})
    records = [json.loads(line) for line in (tmp_path / "ranks" / "metrics-rank0.jsonl").read_text().splitlines()]
    combined = [r for r in records if "system/cpu_percent" in r["data"]]
    assert len(combined) == len(samples[0]) >= 4
    both = 0
    for record in combined:
        tick = round(record["time"] / 0.25)
        present = [(rank, samples[rank][tick]) for rank in range(2) if tick in samples[rank]]
        both += len(present) == 2
        for key in ("system/cpu_percent", "system/memory_rss_bytes", "system/host_memory_percent"):
            rank, value = max(((rank, sample[key]) for rank, sample in present), key=lambda pair: (pair[1], -pair[0]))
            assert (record["data"][key], record["data"][f"{key}/rank"]) == (value, rank)
    assert both >= len(combined) - 2  # the ranks sample at the same ticks (the first and last may miss one)


def end_all(procs: list[subprocess.Popen]) -> None:
    """Kill every rank still running (a failed assertion leaves none behind)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def wait_for_the_stall(tmp_path: Path) -> None:
    """Until rank 1 sleeps (`ranks_child`'s cue), and a moment more: rank 0 then waits at its next barrier."""
    deadline = time.monotonic() + 60
    while not (tmp_path / "stalling").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)


EXPECTED_TOKENS_OF_RANK_0 = [30 + 2 * batch for batch in range(4)] + [10 + batch for batch in range(4, 8)]  # combined, then own


@pytest.mark.slow
def test_sigterm_to_a_rank_waiting_at_a_barrier_ends_it_at_once_with_what_it_logged(tmp_path):
    procs = one_process_per_rank(tmp_path, 2, one_epoch("logger.reduce_timeout=120", stall_at=6, stall_seconds=60))
    try:
        wait_for_the_stall(tmp_path)  # rank 0 waits at the barrier after batch 7 (up to 120 s) for rank 1, asleep
        signalled = time.monotonic()
        procs[0].send_signal(signal.SIGTERM)
        _, stderr = procs[0].communicate(timeout=60)
        assert time.monotonic() - signalled < 10  # not the barrier's 120 s, nor the grace period's 20
    finally:
        end_all(procs)
    assert procs[0].returncode == -signal.SIGTERM, stderr[-3000:]
    assert stderr.count("reduce: a barrier was interrupted (Killed); the reduction is off for the rest of the run") == 1
    records = jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl")
    assert [records[(batch, "tokens")] for batch in range(8)] == EXPECTED_TOKENS_OF_RANK_0


@pytest.mark.slow
def test_ctrl_c_at_a_barrier_writes_what_the_rank_logged_at_once_and_it_ends_when_the_other_rank_does(tmp_path):
    procs = one_process_per_rank(tmp_path, 2, one_epoch("logger.reduce_timeout=120", stall_at=6, stall_seconds=60))
    try:
        wait_for_the_stall(tmp_path)
        procs[0].send_signal(signal.SIGINT)
        time.sleep(3)
        records = jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl")  # on disk, though the process lives on
        assert [records[(batch, "tokens")] for batch in range(8)] == EXPECTED_TOKENS_OF_RANK_0
        assert procs[0].poll() is None  # torch's gloo waits at exit for the exchange it had begun...
        procs[1].send_signal(signal.SIGINT)  # ...until the other rank ends too (a Ctrl-C reaches every rank)
        ended = time.monotonic()
        _, stderr = procs[0].communicate(timeout=60)
        assert time.monotonic() - ended < 10
    finally:
        end_all(procs)
    assert procs[0].returncode == -signal.SIGINT and "KeyboardInterrupt" in stderr
    assert stderr.count("reduce: a barrier was interrupted (KeyboardInterrupt); the reduction is off for the rest of "
                        "the run") == 1


@pytest.mark.slow
def test_a_rank_that_fails_ends_at_once_instead_of_waiting_for_the_others_at_its_close(tmp_path):
    procs = one_process_per_rank(tmp_path, 2, one_epoch("logger.reduce_timeout=60", raise_at=6, train_collective=True))
    started = time.monotonic()
    results = finish(procs, timeout=120)
    assert time.monotonic() - started < 30  # not the 60 s a close barrier would wait for rank 1, stuck in training
    code, stderr = results[0]
    assert code == 1 and "RuntimeError: this rank fails" in stderr
    assert stderr.count("reduce: this rank ends FAILED; the reduction is off for the rest of the run") == 1
    records = jsonl_values(tmp_path / "ranks" / "metrics-rank0.jsonl")
    assert [records[(batch, "tokens")] for batch in range(6)] == [30 + 2 * batch for batch in range(4)] + [14, 15]
    assert results[1][0] != 0  # rank 1's training collective failed with rank 0 gone: the job ends


@pytest.mark.slow
def test_values_that_overflowed_a_rank_end_the_reduction_instead_of_pairing_with_the_wrong_ones(tmp_path):
    out = torchrun(tmp_path, 2, {"epochs": 1, "batches": 1, "burst": 12_000, "overrides": [
        "+logger/destinations=jsonl", "logger.reduce={loss:mean}", *QUIET]})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("reduce: 10,000 records waited for an exchange on rank(s) 0, 1 (lower reduce_every") == 2
    records = [json.loads(line) for line in (tmp_path / "ranks" / "metrics-rank0.jsonl").read_text().splitlines()]
    losses = [r["data"]["loss"] for r in records if "loss" in r["data"]]
    assert len(losses) == 12_000 + 1
    combined = [call for call, loss in enumerate(losses[:12_000]) if loss == call + 500]
    assert all(loss in (call, call + 500) for call, loss in enumerate(losses[:12_000]))  # never another rank's call
    assert combined == []  # rank 0's stage overflowed first: every value of the burst is its own


@pytest.mark.slow
def test_ctrl_c_at_the_last_exchange_of_close_still_closes_every_destination(tmp_path):
    procs = one_process_per_rank(tmp_path, 2, one_epoch(late_close=60))
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "closing").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # rank 0 waits at its close exchange for rank 1, asleep before closing
        procs[0].send_signal(signal.SIGINT)
        time.sleep(3)
        records = [json.loads(line) for line in (tmp_path / "ranks" / "metrics-rank0.jsonl").read_text().splitlines()]
        assert [r["data"] for r in records if r["level"] == "FIT" and "tokens" in r["data"]] == [{"tokens": 1000}]
        assert (tmp_path / "ranks" / "logs-rank0.txt").read_text().splitlines()[-1].startswith("[FIT][batch=12]")
        procs[1].send_signal(signal.SIGINT)
        _, stderr = procs[0].communicate(timeout=60)
    finally:
        end_all(procs)
    assert procs[0].returncode == -signal.SIGINT and "KeyboardInterrupt" in stderr


# -- without several ranks -----------------------------------------------------------------------


def test_without_a_process_group_reduce_is_said_once_and_changes_nothing(caplog):
    memory = InMemoryLogger()
    with caplog.at_level(logging.WARNING, logger="composer_cfg"):
        with Logger(State("alone"), {"memory": memory}, reduce={"loss": "mean", "nothing/*": "max"}) as logger:
            logger.run_event("init")
            for batch in range(3):
                logger.data_batch({"loss": 1.0 + batch})
                logger.run_event("batch_end")
            logger.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "reduce: there is no torch.distributed process group with several ranks (initialise it before the logger); "
        "every rank logs its own values"]
    assert memory.get_timeseries("loss")["loss"].tolist() == [1.0, 2.0, 3.0]
    assert logger.report()["reduce"] == {"started": False, "barriers": 0, "collectives": 0, "reduced": 0, "missing": 0,
                                         "unreduced": 0, "unmatched": []}


def test_a_logger_without_reduce_reports_nothing_of_it():
    with Logger(State("plain"), InMemoryLogger()) as logger:
        logger.data_batch({"loss": 1.0})
    assert "reduce" not in logger.report()


@pytest.mark.parametrize("override, message", [
    ("logger.reduce={loss:avg}", "logger.reduce.loss: expected one of mean, sum, min, max, got 'avg' "
                                 "(from command line 'logger.reduce={loss:avg}')"),
    ("logger.reduce=[loss]", "logger.reduce: expected a mapping of key pattern to one of mean, sum, min, max, such as "
                             "{loss: mean}, got ['loss'] (list) (from command line 'logger.reduce=[loss]')"),
    ("logger.reduce_every=0", "logger.reduce_every: expected a positive integer, got 0 "
                              "(from command line 'logger.reduce_every=0')"),
    ("logger.reduce_timeout=-1", "logger.reduce_timeout: expected a positive number, got -1 "
                                 "(from command line 'logger.reduce_timeout=-1')"),
])
def test_a_bad_reduce_setting_is_one_error_naming_its_key_before_anything_is_built(tmp_path, monkeypatch, override,
                                                                                   message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=[override])
    assert str(caught.value) == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("preset", ["default", "all_local", "trackers"])
def test_every_preset_takes_the_reduce_settings_from_the_command_line_without_a_plus(preset):
    cfg = compose_config([f"logger={preset}", "logger.reduce={loss/*:mean}", "logger.reduce_every=7",
                          "logger.system_metrics={every_seconds:5}"])
    assert (cfg.logger.reduce, cfg.logger.reduce_every, cfg.logger.system_metrics) == ({"loss/*": "mean"}, 7,
                                                                                        {"every_seconds": 5})


def test_the_constructor_checks_reduce_as_the_config_does():
    with pytest.raises(ConfigError, match=r"^reduce\.loss: expected one of mean, sum, min, max, got 'median'$"):
        Logger(State("x"), reduce={"loss": "median"})
    with pytest.raises(ConfigError, match=r"^reduce: a key pattern must be a non-empty string, got ''$"):
        Logger(State("x"), reduce={"": "sum"})


def test_patterns_match_keys_as_fnmatch_does_and_the_first_pattern_wins():
    reduction = Reduction({"loss/*": "mean", "loss/val": "max", "tok?ns": "sum", "[gh]rad": "min"})
    assert [reduction.op_of(key) for key in ("loss/train", "loss/val", "tokens", "grad", "hrad", "lr", "loss")] == [
        "mean", "mean", "sum", "min", "min", None, None]


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("op, present, expected", [
    ("mean", [(0, INF), (1, -INF)], (NAN, -1)),  # as float arithmetic says, never an error
    ("mean", [(0, 1e308), (1, 1e308)], (INF, -1)),
    ("mean", [(0, 10**400), (1, 1)], (INF, -1)),
    ("sum", [(0, 10**400), (1, 1)], (10**400 + 1, -1)),  # whole numbers add up exactly
    ("sum", [(0, 0.1), (1, 0.2), (2, 0.3)], (0.6, -1)),  # exactly rounded (fsum)
    ("max", [(0, 5.0), (1, NAN)], (NAN, 1)),  # a NaN wins, wherever it is: a diverging rank shows
    ("max", [(0, NAN), (1, 5.0), (2, NAN)], (NAN, 0)),
    ("min", [(0, 2), (1, 1), (2, 1)], (1, 1)),  # the lowest rank on a tie
    ("max", [(0, 3), (1, 3)], (3, 0)),
])
def test_each_operation_over_the_values_present(op, present, expected):
    from composer_cfg.runtime.reduction import _combine

    value, rank = _combine(op, present)
    if expected[0] is NAN:
        assert (rank, math.isnan(value)) == (expected[1], True)
    else:
        assert (value, rank) == expected


def test_records_taken_for_a_barrier_that_is_interrupted_are_delivered_as_they_are_and_the_interrupt_raised():
    from composer_cfg.core.record import Kind, Record
    from composer_cfg.core.timestamp import Timestamp
    from composer_cfg.runtime.tensor_stage import TensorStage

    stage, sent = TensorStage(), []
    records = [Record(Kind.DATA, None, Timestamp(batch=b), 0.0, {"loss": float(b)}) for b in range(3)]
    for record in records:
        stage.wait(["channel"], record, [], reduced=True)

    def interrupted(_records):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stage.deliver(lambda channels, record: sent.append(record) or [], interrupted)
    assert sent == records and not stage.waiting
