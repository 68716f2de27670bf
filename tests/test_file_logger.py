import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg import ConfigError, FileLogger, Logger, LoggerDestination, LogLevel, State, TrainingLoop, build_logger
from conftest import Recorder, ranks, until


def quiet(**kwargs) -> FileLogger:
    return FileLogger(capture_stdout=False, capture_stderr=False, **kwargs)


def run_three_epochs(logger: Logger, events: bool) -> None:
    """Log as a trainer does: FIT once, BATCH per batch, EPOCH at the end of each epoch."""
    logger.data_fit({"lr": 0.1})
    state = logger.state
    if events:
        loop = TrainingLoop(logger)
        for epoch in loop.epochs(3):
            for batch in loop.batches(3):
                logger.data_batch({"loss": 1.0 / (batch + 1)})
            logger.data_epoch({"epoch": epoch})
        return
    for epoch in range(3):
        for batch in range(3 * epoch, 3 * epoch + 3):
            logger.data_batch({"loss": 1.0 / (batch + 1)})
            state.timestamp = state.timestamp.to_next_batch()
        logger.data_epoch({"epoch": epoch})
        state.timestamp = state.timestamp.to_next_epoch()


def lines(path: str | Path) -> list[str]:
    return Path(path).read_text().splitlines()


EPOCH_INTERVAL_2 = [
    '[FIT][batch=0]: { "lr": 0.1000, }',
    '[EPOCH][batch=6]: { "epoch": 1, }',
]
BATCH_INTERVAL_3 = [
    '[FIT][batch=0]: { "lr": 0.1000, }',
    '[BATCH][batch=2]: { "loss": 0.3333, }',
    '[EPOCH][batch=3]: { "epoch": 0, }',
    '[BATCH][batch=5]: { "loss": 0.1667, }',
    '[EPOCH][batch=6]: { "epoch": 1, }',
    '[BATCH][batch=8]: { "loss": 0.1111, }',
    '[EPOCH][batch=9]: { "epoch": 2, }',
]


@pytest.mark.parametrize("events", [True, False], ids=["events", "no-events"])
@pytest.mark.parametrize(
    ("level", "interval", "expected"),
    [("epoch", 2, EPOCH_INTERVAL_2), ("batch", 3, BATCH_INTERVAL_3)],
    ids=["EPOCH-every-2", "BATCH-every-3"],
)
def test_lines_at_each_threshold_with_intervals(level, interval, expected, events):
    with Logger(State("run"), quiet(log_level=level, log_interval=interval)) as logger:
        run_three_epochs(logger, events)
    assert lines("run/logs-rank0.txt") == expected


def test_with_events_the_interval_is_decided_when_the_unit_starts_and_keeps_what_its_end_logs():
    """As in Composer: data logged at ``epoch_end`` (an evaluation after the epoch) belongs to the
    epoch that ended, whose start decided; at log time the timestamp has already moved on."""

    class Evaluator(LoggerDestination):
        def epoch_end(self, state, logger):
            logger.data_epoch({"metrics/eval/acc": 0.5 + state.timestamp.epoch.value / 10})

    file = quiet(log_level="epoch", log_interval=2)
    with Logger(State("run"), {"file": file, "evaluator": Evaluator()}) as logger:
        loop = TrainingLoop(logger)
        for epoch in loop.epochs(4):
            for _ in loop.batches(2):
                pass
            logger.data_epoch({"epoch": epoch})
    assert lines("run/logs-rank0.txt") == [
        '[EPOCH][batch=4]: { "epoch": 1, }',
        '[EPOCH][batch=4]: { "metrics/eval/acc": 0.7000, }',  # the last epoch's evaluation, kept
        '[EPOCH][batch=8]: { "epoch": 3, }',
        '[EPOCH][batch=8]: { "metrics/eval/acc": 0.9000, }',
    ]


def test_one_call_a_buffered_log_can_not_write_costs_only_that_call():
    destination = quiet(log_level="batch", buffer_size=-1)  # written on a thread of its own, in batches
    logger = Logger(State("run"), destination)
    raised = []
    for step in range(100):
        try:
            logger.data_batch({"step": step, **({"huge": 10 ** 5000} if step == 10 else {})})
        except ValueError as error:
            raised.append(str(error))
    try:
        logger.close()
    except ValueError as error:
        raised.append(str(error))
    assert [message.split(" can not")[0] for message in raised] == ["log data value for key 'huge'"]
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in Path("run/logs-rank0.txt").read_text().splitlines()]
    assert steps == [step for step in range(100) if step != 10]
    report = logger.report()["FileLogger"]
    assert (report["delivered"], report["failed"]) == (99, 1)


def test_fit_threshold_keeps_only_fit_lines():
    with Logger(State("run"), quiet(log_level="fit", log_interval=5)) as logger:
        run_three_epochs(logger, events=True)
    assert lines("run/logs-rank0.txt") == ['[FIT][batch=0]: { "lr": 0.1000, }']


def test_default_threshold_is_epoch_every_epoch():
    with Logger(State("run"), quiet()) as logger:
        run_three_epochs(logger, events=True)
    assert lines("run/logs-rank0.txt") == [
        '[FIT][batch=0]: { "lr": 0.1000, }',
        '[EPOCH][batch=3]: { "epoch": 0, }',
        '[EPOCH][batch=6]: { "epoch": 1, }',
        '[EPOCH][batch=9]: { "epoch": 2, }',
    ]


def test_file_opens_at_init_or_first_write():
    destination = quiet()
    logger = Logger(State("run"), destination)
    with pytest.raises(RuntimeError, match="known only after Event.INIT or the first write"):
        destination.filename
    assert not Path("run").exists()
    logger.run_event("init")
    # As in Composer: the name the template gives; where it is: output_location()
    assert destination.filename == "run/logs-rank0.txt" and Path("run/logs-rank0.txt").exists()
    assert destination.output_location() == str(Path("run/logs-rank0.txt").absolute())
    logger.run_event("init")  # firing INIT again is harmless
    logger.close()


def test_line_buffered_by_default_so_lines_are_on_disk_at_once():
    with Logger(State("run"), quiet(log_level="batch")) as logger:
        logger.data_batch({"loss": 0.5})
        assert lines("run/logs-rank0.txt") == ['[BATCH][batch=0]: { "loss": 0.5000, }']


def test_flush_publishes_the_log_file_as_an_artifact():
    published = Recorder()
    with Logger(State("run"), [quiet(), published]) as logger:
        logger.run_event("init")
        logger.data_fit({"a": 1})
        logger.run_event("fit_end")
    artifacts = [c for c in published.calls if c[0] == "artifact"]
    # the path is absolute: an artifact published after a change of directory is still this file
    assert artifacts == [("artifact", LogLevel.FIT, "run/logs-rank0.txt", Path("run/logs-rank0.txt").absolute(), True)] * 2


def test_batch_threshold_flushes_every_flush_interval_batches():
    class PublishRecorder(Recorder):
        def log_file_artifact(self, state, log_level, artifact_name, file_path, *, overwrite):
            self.calls.append(state.timestamp.batch)

    published = PublishRecorder()
    with Logger(State("run"), [quiet(log_level="batch", flush_interval=2), published]) as logger:
        logger.run_event("init")
        loop = TrainingLoop(logger)
        for _ in loop.epochs(1):
            for _ in loop.batches(5):
                logger.data_batch({"x": 1})
    publishes = [call for call in published.calls if isinstance(call, int)]
    # epoch_start; batch_end after batches 2 and 4; epoch_end; fit_end; close
    assert publishes == [0, 2, 4, 5, 5, 5]


def test_leading_slash_is_stripped_from_the_default_artifact_name(tmp_path):
    published = Recorder()
    filename = str(tmp_path / "logs" / "{run_name}.txt")
    with Logger(State("run"), [quiet(filename=filename), published]) as logger:
        logger.data_fit({"a": 1})
    (name,) = {c[2] for c in published.calls if c[0] == "artifact"}
    assert name == f"{tmp_path}/logs/run.txt".lstrip("/")


def test_a_leading_slash_of_an_explicit_artifact_name_is_stripped_as_composer_documents():
    published = Recorder()
    with Logger(State("run"), [quiet(artifact_name="/logs/{run_name}-rank{rank}.txt"), published]) as logger:
        logger.data_fit({"a": 1})
    assert {c[2] for c in published.calls if c[0] == "artifact"} == {"logs/run-rank0.txt"}
    with build_logger(overrides=["run_name=cfg", "logger/destinations=[file]",
                                 'logger.destinations.file.artifact_name="/logs/{run_name}-rank{rank}.txt"']) as logger:
        assert logger.destinations["file"].artifact_name == "logs/cfg-rank0.txt"


def test_explicit_artifact_name_template():
    published = Recorder()
    with Logger(State("run", dist_info=ranks(2, rank=1)), [quiet(artifact_name="logs/{run_name}-{rank}.log"),
                                                          published]) as logger:
        logger.data_fit({"a": 1})
    assert {c[2] for c in published.calls if c[0] == "artifact"} == {"logs/run-1.log"}


def test_existing_log_file_is_not_clobbered_by_default():
    Path("run").mkdir()
    Path("run/logs-rank0.txt").write_text("previous run\n")
    logger = Logger(State("run"), quiet())
    with pytest.raises(FileExistsError) as caught:
        logger.data_fit({"a": 1})
    assert str(caught.value) == (
        f"log file '{Path('run/logs-rank0.txt').absolute()}' already exists: pass overwrite=True to replace it, "
        "or use another run_name or filename"
    )
    assert lines("run/logs-rank0.txt") == ["previous run"]
    logger.close()


def test_overwrite_true_replaces_the_file():
    Path("run").mkdir()
    Path("run/logs-rank0.txt").write_text("previous run\n")
    with Logger(State("run"), quiet(overwrite=True)) as logger:
        logger.data_fit({"a": 1})
    assert lines("run/logs-rank0.txt") == ['[FIT][batch=0]: { "a": 1, }']


def test_per_rank_file_without_rank_field_is_an_error_with_several_ranks():
    logger = Logger(State("run", dist_info=ranks(2)), quiet(filename="{run_name}/log.txt"))
    with pytest.raises(ConfigError) as caught:
        logger.data_fit({"a": 1})
    assert str(caught.value) == (
        "filename: template '{run_name}/log.txt' has no {rank} field, so the 2 ranks of this run would write "
        "the same file; add {rank}, e.g. 'logs-rank{rank}.txt'"
    )
    logger.close()
    assert not Path("run/log.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"log_interval": 0}, ConfigError, "log_interval: expected a positive integer, got 0"),
        ({"flush_interval": "5"}, ConfigError, "flush_interval: expected a positive integer, got '5'"),
        ({"log_level": "verbose"}, ValueError, "invalid log level 'verbose'"),
        ({"filename": "{run}.txt"}, ConfigError, "filename: unknown field {run} in template '{run}.txt'"),
        ({"artifact_name": "{epoch}.txt"}, ConfigError, "artifact_name: unknown field {epoch}"),
    ],
)
def test_bad_parameters(kwargs, error, message):
    with pytest.raises(error) as caught:
        quiet(**kwargs)
    assert str(caught.value).startswith(message)


def test_stdout_and_stderr_are_captured_from_the_first_write_until_close(capsys):
    destination = FileLogger(log_level="batch")
    logger = Logger(State("run"), destination)
    print("before the file opens")  # a constructor changes nothing process-wide: not captured
    logger.data_batch({"loss": 0.5})
    print("partial", end="")
    print(" line")
    print("oops", file=sys.stderr)
    print()
    sys.stdout.write("two\nlines\n")
    logger.close()
    print("after close")
    assert lines("run/logs-rank0.txt") == [
        '[BATCH][batch=0]: { "loss": 0.5000, }',
        "[stdout]: partial line",
        "[stderr]: oops",
        "",
        "[stdout]: two",
        "[stdout]: lines",
    ]
    out, err = capsys.readouterr()
    assert out == "before the file opens\npartial line\n\ntwo\nlines\nafter close\n"
    assert err == "oops\n"


def test_capture_release_keeps_a_later_wrapper_in_place():
    first = FileLogger(filename="a-{rank}.txt", capture_stderr=False)
    second = FileLogger(filename="b-{rank}.txt", capture_stderr=False)
    logger = Logger(State("run"), [first, second])
    logger.run_event("init")
    print("both")
    logger.close()
    print("neither")
    assert lines("a-0.txt") == ["[stdout]: both"] == lines("b-0.txt")


def test_capture_starts_at_init_and_nothing_is_created_before():
    before = vars(sys.stdout).get("write")  # another library (wandb) may have patched it already
    logger = Logger(State("run"), FileLogger(capture_stderr=False))
    print("not captured")
    assert not Path("run").exists() and vars(sys.stdout).get("write") is before  # nothing installed yet
    logger.run_event("init")
    print("captured")
    logger.close()
    assert lines("run/logs-rank0.txt") == ["[stdout]: captured"]
    assert vars(sys.stdout).get("write") is before  # the stream is as it was


WORKER = """
import sys
from composer_cfg import FileLogger, Logger, State, TrainingLoop
with Logger(State("shared_run"), FileLogger(log_level="batch")) as logger:
    loop = TrainingLoop(logger)
    for epoch in loop.epochs(2):
        for batch in loop.batches(50):
            logger.data_batch({"rank": logger.state.rank, "batch": batch})
    print("done on rank", logger.state.rank)
"""


@pytest.mark.slow
def test_four_processes_write_four_separate_files(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "4"},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
        )
        for rank in range(4)
    ]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0, 0]
    files = sorted(p.name for p in (tmp_path / "shared_run").iterdir())
    assert files == [f"logs-rank{rank}.txt" for rank in range(4)]
    for rank in range(4):
        text = lines(tmp_path / "shared_run" / f"logs-rank{rank}.txt")
        expected = [f'[BATCH][batch={b}]: {{ "rank": {rank}, "batch": {b}, }}' for b in range(100)]
        assert text == expected + [f"[stdout]: done on rank {rank}"]


@pytest.mark.slow
def test_a_progress_bar_drawn_with_carriage_returns_is_one_line_of_what_it_shows_last():
    """What a terminal shows, at the cost of one line however many updates (not quadratic)."""
    with Logger(State("run"), FileLogger(capture_stderr=False)) as logger:
        logger.run_event("init")
        for percent in range(0, 100_001):
            sys.stdout.write(f"\rdownloading {percent / 1000:.1f}%")
        sys.stdout.write("\n")
        print("done\r\nnext")
    assert lines("run/logs-rank0.txt") == ["[stdout]: downloading 100.0%", "[stdout]: done", "[stdout]: next"]


def test_an_unbuffered_text_file_is_a_config_error_before_anything_is_created():
    with pytest.raises(ConfigError) as caught:
        build_logger(overrides=["run_name=run", "logger.destinations.file.buffer_size=0"])
    assert caught.value.problems == [
        "logger.destinations.file.buffer_size: expected -1 (the system default), 1 (line buffered) or a size in "
        "bytes, got 0 (from command line 'logger.destinations.file.buffer_size=0')"]
    assert not Path("run").exists()


FORGERIES = {
    'loss", "forged': 0.5,
    "key\n[BATCH][batch=9]: { \"forged\": 1.0000, }": "value\r\n[stdout]: forged\x1b[2K",
    "path": "C:\\runs\\",
}


def test_a_key_or_value_can_not_forge_a_line_or_a_key():
    with Logger(State("run"), quiet(log_level="batch")) as logger:
        logger.data_batch(FORGERIES)
        logger.data_batch({"loss": 0.25})
    text = Path("run/logs-rank0.txt").read_text()
    assert text.splitlines() == [
        '[BATCH][batch=0]: { "loss\\", \\"forged": 0.5000, '
        '"key\\n[BATCH][batch=9]: { \\"forged\\": 1.0000, }": "value\\r\\n[stdout]: forged\\u001b[2K", '
        '"path": "C:\\\\runs\\\\", }',
        '[BATCH][batch=0]: { "loss": 0.2500, }',
    ]
    assert text.count("\n") == 2


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_logging_handler_made_before_the_file_logger_is_captured(stream):
    """Capture patches the stream object, as Composer did, so a writer holding it from before
    (a `logging.StreamHandler` made at import time) reaches the log too."""
    handler = logging.StreamHandler(getattr(sys, stream))
    log = logging.getLogger(f"composer_cfg_tests.early_{stream}")
    log.addHandler(handler)
    log.propagate = False
    try:
        with Logger(State("run"), FileLogger()) as logger:
            logger.run_event("init")
            log.warning("from a handler made before the logger")
        log.warning("after close: not captured")
    finally:
        log.removeHandler(handler)
    assert lines("run/logs-rank0.txt") == [f"[{stream}]: from a handler made before the logger"]


@pytest.mark.slow
def test_flush_seconds_flushes_at_the_first_event_once_they_passed(clock):
    published = []

    class PublishRecorder(LoggerDestination):
        def log_file_artifact(self, state, log_level, artifact_name, file_path, *, overwrite):
            published.append(lines(file_path))

    # system buffering: a line is on disk only once the file is flushed, on the log's own thread
    destination = quiet(log_level="batch", buffer_size=-1, flush_interval=1000, flush_seconds=5)
    assert destination.channel_kind == "thread"
    with Logger(State("run"), [destination, PublishRecorder()]) as logger:
        logger.run_event("init")
        logger.data_batch({"loss": 0.5})
        clock.now = 4.9
        logger.run_event("batch_start")
        assert lines("run/logs-rank0.txt") == [] and published == []
        clock.now = 5.0
        logger.data_batch({"loss": 0.25})  # the FileLogger flushes at events only
        assert lines("run/logs-rank0.txt") == []
        logger.run_event("batch_start")
        expected = ['[BATCH][batch=0]: { "loss": 0.5000, }', '[BATCH][batch=0]: { "loss": 0.2500, }']
        assert until(lambda: lines("run/logs-rank0.txt") == expected and published == [expected])
        clock.now = 9.9
        logger.run_event("batch_start")
        assert len(published) == 1


def test_without_flush_seconds_the_file_logger_never_reads_the_clock(clock):
    with Logger(State("run"), quiet(log_level="batch", flush_interval=2)) as logger:
        run_three_epochs(logger, events=True)
    assert clock.reads == 0
