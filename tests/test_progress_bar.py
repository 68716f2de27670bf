import io
import re
from pathlib import Path

import pytest

from composer_cfg import ConfigError, FileLogger, Logger, LogLevel, ProgressBarLogger, State, TrainingLoop
from conftest import ranks


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(destination, state=None, epochs=2, batches=4, evaluate=0):
    logger = Logger(state or State("run"), destination)
    loop = TrainingLoop(logger, dataloader_len=batches)
    with logger:
        logger.data_fit({"lr": 0.1})
        for epoch in loop.epochs(epochs):
            for batch in loop.batches(batches):
                logger.data_batch({"loss/train": 1.0 / (batch + 1)})
            if evaluate:
                for _ in loop.evaluate(evaluate):
                    logger.data_batch({"metrics/eval/Accuracy": 0.75})
            logger.data_epoch({"epoch": epoch})
    return logger


def bar(epoch: int, split: str, count: int, total: int, postfix: str) -> str:
    return (rf"Epoch {epoch:>5} {split:<5}: 100%\|#{{25}}\| {count}/{total} "
            rf"\[\d\d:\d\d<\d\d:\d\d, [\d.]+it/s, {re.escape(postfix)}\]")


def test_off_a_terminal_each_bar_is_one_line_with_the_latest_loss():
    stream = io.StringIO()
    run(ProgressBarLogger(stream=stream), evaluate=2)
    lines = stream.getvalue().splitlines()
    expected = [bar(0, "val", 2, 2, "metrics/eval/Accuracy=0.7500"), bar(0, "train", 4, 4, "loss/train=0.2500"),
                bar(1, "val", 2, 2, "metrics/eval/Accuracy=0.7500"), bar(1, "train", 4, 4, "loss/train=0.1250")]
    assert len(lines) == len(expected)
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), line
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_console_lines_at_the_console_level():
    stream = io.StringIO()
    run(ProgressBarLogger(stream=stream, log_to_console=True, console_log_level="epoch"), epochs=1)
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ['[FIT][batch=0]: { "lr": 0.1000, }', '[EPOCH][batch=4]: { "epoch": 0, }']
    assert re.fullmatch(bar(0, "train", 4, 4, "loss/train=0.2500"), lines[2])


def test_without_bars_console_lines_are_on_by_default():
    stream = io.StringIO()
    run(ProgressBarLogger(progress_bar=False, stream=stream, console_log_level=LogLevel.BATCH), epochs=1, batches=2)
    assert stream.getvalue().splitlines() == [
        '[FIT][batch=0]: { "lr": 0.1000, }',
        '[BATCH][batch=0]: { "loss/train": 1.0000, }',
        '[BATCH][batch=1]: { "loss/train": 0.5000, }',
        '[EPOCH][batch=2]: { "epoch": 0, }',
    ]


def test_console_level_may_be_a_predicate():
    stream = io.StringIO()
    only_even_batches = lambda state, level: level is LogLevel.BATCH and state.timestamp.batch % 2 == 0  # noqa: E731
    run(ProgressBarLogger(progress_bar=False, stream=stream, console_log_level=only_even_batches), epochs=1)
    assert stream.getvalue().splitlines() == [
        '[BATCH][batch=0]: { "loss/train": 1.0000, }',
        '[BATCH][batch=2]: { "loss/train": 0.3333, }',
    ]


def test_the_first_epochs_bar_knows_its_length_from_the_loops_batches_when_nobody_said_it_before():
    stream, terminal = io.StringIO(), Terminal()
    for destination in (ProgressBarLogger(stream=stream), ProgressBarLogger(stream=terminal)):
        logger = Logger(State("run"), destination)
        loop = TrainingLoop(logger)  # no dataloader_len: the first epoch starts before batches(4) says it
        with logger:
            for _ in loop.epochs(2):
                for batch in loop.batches(4):
                    logger.data_batch({"loss/train": 1.0 / (batch + 1)})
    lines = stream.getvalue().splitlines()
    assert [re.fullmatch(bar(epoch, "train", 4, 4, "loss/train=" + loss), line) is not None
            for epoch, loss, line in zip((0, 1), ("0.2500", "0.1250"), lines)] == [True, True]
    assert "4/4" in terminal.getvalue().split("Epoch     1")[0] and "/?" not in terminal.getvalue()


def test_on_a_terminal_the_bar_is_live_and_lines_do_not_tear_it():
    stream = Terminal()
    run(ProgressBarLogger(stream=stream, log_to_console=True), epochs=1)
    text = stream.getvalue()
    assert text.startswith('[FIT][batch=0]: { "lr": 0.1000, }\n\rEpoch     0 train:   0%|')
    screens = [part for part in re.split(r"[\r\n]", text) if part.strip()]
    assert '[EPOCH][batch=4]: { "epoch": 0, }' in screens  # written whole, on its own line
    last = screens[-1].rstrip()  # tqdm pads a redraw shorter than the one before with spaces
    assert re.fullmatch(r"Epoch     0 train: 100%\|[#█]{25}\| 4/4 \[.*, loss/train=0\.2500\]", last)
    assert text.endswith("\n")


def test_bars_only_on_local_rank_zero():
    stream = io.StringIO()
    run(ProgressBarLogger(stream=stream, log_to_console=True), state=State("r", dist_info=ranks(2, rank=1)), epochs=1)
    assert stream.getvalue().splitlines() == ['[FIT][batch=0]: { "lr": 0.1000, }', '[EPOCH][batch=4]: { "epoch": 0, }']


def test_named_streams_resolve_when_used(capsys):
    run(ProgressBarLogger(stream="STDOUT", progress_bar=False), epochs=1)
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == '[FIT][batch=0]: { "lr": 0.1000, }' and err == ""


def test_bar_output_is_not_captured_into_the_log_file(capsys):
    file = FileLogger(log_level="epoch")
    logger = Logger(State("run"), [file, ProgressBarLogger(stream="stderr")])
    loop = TrainingLoop(logger, dataloader_len=2)
    with logger:
        logger.run_event("init")
        for _ in loop.epochs(1):
            for _ in loop.batches(2):
                logger.data_batch({"loss/train": 0.5})
    assert "Epoch     0 train: 100%" in capsys.readouterr().err
    assert Path("run/logs-rank0.txt").read_text() == ""


def test_bad_stream_name():
    with pytest.raises(ConfigError, match="stream: expected 'stdout' or 'stderr' \\(or a text stream\\), got 'stdnull'"):
        ProgressBarLogger(stream="stdnull")


def test_a_key_or_value_can_not_forge_a_console_line_or_a_key():
    stream = io.StringIO()
    logger = Logger(State("run"), ProgressBarLogger(stream=stream, log_to_console=True, console_log_level="batch"))
    loop = TrainingLoop(logger, dataloader_len=1)
    with logger:
        for _ in loop.epochs(1):
            for _ in loop.batches(1):
                logger.data_batch({'k", "forged\n[FIT]': "v\r\x1b[2K", "loss/train": "x\nforged"})
    lines = stream.getvalue().splitlines()
    assert lines[0] == '[BATCH][batch=0]: { "k\\", \\"forged\\n[FIT]": "v\\r\\u001b[2K", "loss/train": "x\\nforged", }'
    assert re.fullmatch(bar(0, "train", 1, 1, 'loss/train="x\\nforged"'), lines[1])
    assert len(lines) == 2


def test_log_to_console_is_a_method_writing_above_the_active_bar_as_in_composer_0_8():
    stream = Terminal()
    destination = ProgressBarLogger(stream=stream)
    assert destination.console is False  # the log_to_console argument, read back
    logger = Logger(State("run"), destination)
    loop = TrainingLoop(logger, dataloader_len=2)
    with logger:
        destination.log_to_console("before any bar")
        for _ in loop.epochs(1):
            for _ in loop.batches(2):
                destination.log_to_console("during the bar")
    text = stream.getvalue()
    assert text.startswith("before any bar\n") and "during the bar\n" in text.replace("\r", "\n")
