import re
from pathlib import Path

import pytest

from composer_cfg import ConfigError, Event, InMemoryLogger, Logger, LoggerDestination, LogLevel, State, Timestamp
from conftest import Recorder, ranks

DATA = {"loss": 0.5}


def test_destinations_may_be_none_one_sequence_or_mapping():
    a, b = Recorder(), Recorder()
    assert Logger(State("r")).destinations == ()
    assert Logger(State("r"), a).destinations == (a,)
    assert Logger(State("r"), [a, None, b]).destinations == (a, b)
    assert Logger(State("r"), {"x": a, "off": None, "y": b}).destinations == (a, b)


def test_a_composer_destination_that_renames_keys_in_place_changes_what_no_other_destination_gets():
    class Renaming(LoggerDestination):
        def log_data(self, state, log_level, data):
            for key in list(data):
                data[f"my/{key}"] = data.pop(key)  # as some Composer destinations do

    memory = InMemoryLogger()
    with Logger(State("r"), {"renaming": Renaming(), "memory": memory, "after": Renaming()}) as logger:
        logger.data_batch({"loss": 0.25})
    assert memory.most_recent_values == {"loss": 0.25}


def test_names_come_from_the_mapping_or_the_class():
    a, b = Recorder(), Recorder()
    logger = Logger(State("r"), {"file": a})
    assert logger.name_of(a) == "file" and logger.name_of(b) == "Recorder"


@pytest.mark.parametrize("bad", ["file", 3, [object()]])
def test_bad_destinations_are_type_errors(bad):
    with pytest.raises(TypeError):
        Logger(State("r"), bad)


def test_one_call_reaches_every_destination_in_order_each_with_a_dict_of_its_own():
    a, b = Recorder(), Recorder()
    logger = Logger(State("r"), [a, b])
    data = dict(DATA)
    logger.data(LogLevel.EPOCH, data)
    data["loss"] = 99.0  # the caller reuses its dict the moment the call returns
    assert a.calls == [("data", LogLevel.EPOCH, DATA)] == b.calls
    a.calls[0][2]["loss"] = -1.0  # a Composer destination may change what it is given: the next one never sees it
    assert b.calls == [("data", LogLevel.EPOCH, DATA)] and data["loss"] == 99.0


@pytest.mark.parametrize("level", [LogLevel.BATCH, 3, "3", "batch", " Batch "])
def test_levels_are_coerced_before_routing(level):
    rec = Recorder()
    Logger(State("r"), rec).data(level, DATA)
    assert rec.calls == [("data", LogLevel.BATCH, DATA)]
    assert rec.calls[0][1] is LogLevel.BATCH


def test_bad_level_is_a_value_error():
    with pytest.raises(ValueError, match="invalid log level 'verbose'"):
        Logger(State("r"), Recorder()).data("verbose", DATA)


def test_shorthands():
    rec = Recorder()
    logger = Logger(State("r"), rec)
    logger.data_fit({"a": 1})
    logger.data_epoch({"b": 2})
    logger.data_batch({"c": 3})
    assert [c[1] for c in rec.calls] == [LogLevel.FIT, LogLevel.EPOCH, LogLevel.BATCH]


def test_routing_by_threshold_is_fixed_at_construction():
    fit_only, epoch, everything = Recorder(LogLevel.FIT), Recorder(LogLevel.EPOCH), Recorder(None)
    logger = Logger(State("r"), [fit_only, epoch, everything])
    for level in LogLevel:
        logger.data(level, {"level": level.name})
    assert [c[1] for c in fit_only.calls] == [LogLevel.FIT]
    assert [c[1] for c in epoch.calls] == [LogLevel.FIT, LogLevel.EPOCH]
    assert [c[1] for c in everything.calls] == list(LogLevel)


def test_filtering_destination_is_never_called_on_that_level():
    class Exploding(LoggerDestination):
        log_level = LogLevel.FIT

        def log_data(self, state, log_level, data):
            raise AssertionError("must not be called")

    Logger(State("r"), Exploding()).data_batch(DATA)


def test_file_artifact_fills_templates_and_passes_keywords():
    rec = Recorder()
    state = State("myrun", timestamp=Timestamp(epoch=2), dist_info=ranks(4, rank=3))
    Logger(state, rec).file_artifact("epoch", "{run_name}/ep{epoch}-rank{rank}.npz", "out/{run_name}-{rank}.npz")
    assert rec.calls == [("artifact", LogLevel.EPOCH, "myrun/ep2-rank3.npz", Path("out/myrun-3.npz"), False)]


def test_file_artifact_overwrite_is_keyword_only():
    with pytest.raises(TypeError):
        Logger(State("r"), Recorder()).file_artifact(LogLevel.FIT, "a", "b", True)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/etc/passwd", "artifact_name: artifact name '/etc/passwd' is absolute"),
        ("{run_name}/../../x", "artifact_name: artifact name 'r/../../x' climbs out of the artifact root"),
        ("{rank.__class__}", "artifact_name: field {rank.__class__} in template '{rank.__class__}' uses attribute"),
    ],
)
def test_unsafe_artifact_names_are_refused(name, message):
    rec = Recorder()
    with pytest.raises(ConfigError, match=re.escape(message)):
        Logger(State("r"), rec).file_artifact(LogLevel.FIT, name, "x")
    assert rec.calls == []


def test_a_failing_destination_does_not_stop_the_others():
    class Failing(LoggerDestination):
        def log_data(self, state, log_level, data):
            raise OSError("disk full")

    before, after = Recorder(), Recorder()
    logger = Logger(State("r"), {"before": before, "broken": Failing(), "after": after})
    with pytest.raises(OSError, match="disk full") as caught:
        logger.data_batch(DATA)
    assert before.calls == after.calls == [("data", LogLevel.BATCH, DATA)]
    assert caught.value.__notes__ == ["raised by destination 'broken' in log_data: OSError: disk full"]


def test_run_event_reaches_each_hook_in_order(recorder):
    seen = []

    class Hooks(LoggerDestination):
        def epoch_start(self, state, logger):
            seen.append(("epoch_start", logger))

    logger = Logger(State("r"), [recorder, Hooks()])
    logger.run_event(Event.EPOCH_START)
    logger.run_event("batch_end")
    assert recorder.calls == [("event", "epoch_start"), ("event", "batch_end")]
    assert seen == [("epoch_start", logger)]


def test_close_calls_close_then_post_close_once():
    a, b = Recorder(), Recorder()
    logger = Logger(State("r"), [a, b])
    logger.close()
    logger.close()
    assert a.calls == [("close",), ("post_close",)] == b.calls


def test_post_close_skips_destinations_whose_close_raised():
    class BadClose(Recorder):
        def close(self, state, logger):
            raise RuntimeError("close failed")

    bad, good = BadClose(), Recorder()
    logger = Logger(State("r"), {"bad": bad, "good": good})
    with pytest.raises(RuntimeError, match="close failed"):
        logger.close()
    assert bad.calls == [] and good.calls == [("close",), ("post_close",)]


def test_context_manager_closes_on_error(recorder):
    with pytest.raises(KeyError):
        with Logger(State("r"), recorder) as logger:
            logger.data_fit(DATA)
            raise KeyError("boom")
    assert recorder.calls[-2:] == [("close",), ("post_close",)]


def test_every_event_has_a_default_hook():
    destination = LoggerDestination()
    logger = Logger(State("r"), destination)
    for event in Event:
        destination.run_event(event, logger.state, logger)
    assert destination.can_log_file_artifacts() is False
    assert destination.state_dict() == {}
    with pytest.raises(NotImplementedError):
        destination.get_file_artifact("a", "b")


def test_in_memory_logger_threshold_through_the_logger():
    memory = InMemoryLogger(log_level="epoch")
    logger = Logger(State("r"), memory)
    logger.data_batch({"loss": 1.0})
    logger.data_epoch({"acc": 0.5})
    assert memory.most_recent_values == {"acc": 0.5}


def test_hyperparameters_reach_each_destination_in_its_own_form(recorder):
    from composer_cfg import FileLogger, InMemoryLogger, JSONLinesLogger
    from composer_cfg.run.records import read_records

    memory = InMemoryLogger()
    hyperparameters = {"optimizer": {"name": "sgd", "betas": [0.9, 0.99]}, "seed": 0, "hub": {"api_token": "t0k"}}
    with Logger(State("hp"), {"file": FileLogger(), "jsonl": JSONLinesLogger(), "memory": memory,
                              "recorder": recorder}) as logger:
        logger.run_event("init")
        logger.log_hyperparameters(hyperparameters)
        hyperparameters["seed"] = 1  # what was logged does not change with the caller's dict
    logged = {"optimizer": {"name": "sgd", "betas": [0.9, 0.99]}, "seed": 0, "hub": {"api_token": "***"}}
    assert memory.hyperparameters == logged
    assert [(r["level"], r["data"]) for r in read_records("hp/metrics-rank0.jsonl")] == [("FIT", logged)]
    assert Path("hp/logs-rank0.txt").read_text() == ""  # a text log leaves them out
    assert [call for call in recorder.calls if call[0] == "data"] == []  # so does a destination by default
