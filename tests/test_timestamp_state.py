import pickle
from datetime import timedelta
from pathlib import Path

import pytest

from composer_cfg import ConfigError, FileLogger, Logger, State, Time, Timestamp, TimeUnit
from composer_cfg.core.dist import DistInfo


def test_defaults_are_zero():
    ts = Timestamp()
    assert (ts.epoch, ts.batch, ts.batch_in_epoch, ts.sample, ts.sample_in_epoch, ts.token, ts.token_in_epoch) == (
        0, 0, 0, 0, 0, 0, 0
    )
    assert ts.total_wct == ts.epoch_wct == ts.batch_wct == timedelta(0)


def test_to_next_batch_advances_counts_and_clocks():
    ts = Timestamp(epoch=1, batch=10, batch_in_epoch=2, sample=320, sample_in_epoch=64, total_wct=timedelta(seconds=5))
    nxt = ts.to_next_batch(samples=32, tokens=100, duration=timedelta(seconds=0.5))
    assert nxt.as_dict() == {
        "epoch": 1, "batch": 11, "batch_in_epoch": 3, "sample": 352, "sample_in_epoch": 96,
        "token": 100, "token_in_epoch": 100, "total_wct": timedelta(seconds=5.5),
        "epoch_wct": timedelta(seconds=0.5), "batch_wct": timedelta(seconds=0.5),
    }
    assert ts.batch == 10  # unchanged: immutable


def test_to_next_epoch_resets_in_epoch_counters_and_clocks():
    ts = Timestamp(epoch=0, batch=7, batch_in_epoch=7, sample=70, sample_in_epoch=70, token=9, token_in_epoch=9,
                   total_wct=3.0, epoch_wct=3.0, batch_wct=0.5)
    assert ts.to_next_epoch() == Timestamp(epoch=1, batch=7, sample=70, token=9, total_wct=3.0)


def test_copy_and_equality():
    ts = Timestamp(batch=3)
    assert ts.copy(epoch=2) == Timestamp(epoch=2, batch=3)
    assert ts == Timestamp(batch=3) and ts != Timestamp(batch=4)
    assert ts != tuple(ts)  # a Timestamp only equals a Timestamp
    assert hash(ts) == hash(Timestamp(batch=3))
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs'"):
        ts.copy(epochs=1)


def test_immutable_and_picklable():
    ts = Timestamp(batch=3, total_wct=timedelta(seconds=2))
    with pytest.raises(AttributeError):
        ts.batch = 4
    assert pickle.loads(pickle.dumps(ts)) == ts


def test_counters_compare_as_ints():
    ts = Timestamp(batch=1)
    assert ts.batch == 1 and int(ts.batch) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batch": -1}, ValueError, "Timestamp.batch must be >= 0, got -1"),
        ({"epoch": 1.5}, TypeError, "Timestamp.epoch must be an int, got 1.5"),
        ({"total_wct": "1s"}, TypeError, "Timestamp.total_wct must be a timedelta or seconds, got '1s'"),
    ],
)
def test_bad_fields(kwargs, error, message):
    with pytest.raises(error) as caught:
        Timestamp(**kwargs)
    assert str(caught.value) == message


def test_keyword_only():
    with pytest.raises(TypeError):
        Timestamp(1, 2)


def test_template_fields_give_seconds():
    ts = Timestamp(epoch=2, total_wct=timedelta(hours=10), batch_wct=timedelta(seconds=5))
    fields = ts.template_fields()
    assert fields["epoch"] == 2 and fields["total_wct"] == 36000.0 and fields["batch_wct"] == 5.0


def test_state_is_mutable_and_carries_rank_facts():
    state = State("run", dist_info=DistInfo(rank=1, local_rank=1, world_size=2, local_world_size=2))
    state.timestamp = state.timestamp.to_next_batch()
    assert state.timestamp.batch == 1
    assert (state.rank, state.local_rank, state.world_size, state.local_world_size, state.node_rank) == (1, 1, 2, 2, 0)


@pytest.mark.parametrize("name", ["", None, 3])
def test_state_needs_a_run_name(name):
    with pytest.raises(ConfigError) as caught:
        State(name)
    assert str(caught.value) == f"run_name: expected a non-empty string, got {name!r}"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "'../x' must not contain '/' or '\\\\' or be '.' or '..': it names a directory"),
        ("..", "'..' must not contain '/' or '\\\\' or be '.' or '..': it names a directory"),
        ("a\nb", "'a\\nb' contains a control character"),
        ("r" * 300, f"{'r' * 50!r}… is 300 bytes long, more than a file name may have (255 bytes)"),
    ],
)
def test_a_run_name_given_in_a_state_is_checked_and_nothing_is_written_outside(name, message):
    with pytest.raises(ConfigError) as caught:
        with Logger(State(name), FileLogger(capture_stdout=False, capture_stderr=False)) as logger:
            logger.data_fit({"a": 1})
    assert str(caught.value) == f"run_name: {message}"
    state = State("run")
    with pytest.raises(ConfigError):
        state.run_name = name
    assert state.run_name == "run"
    assert not Path("../x").exists() and list(Path().iterdir()) == []


def test_counters_are_composer_time_values_that_stay_ints():
    ts = Timestamp(epoch=1, batch=12, sample=384)
    assert (ts.batch.value, ts.batch.unit, ts.get("ba"), ts.get(TimeUnit.SAMPLE)) == (12, TimeUnit.BATCH, 12, 384)
    assert type(ts.batch.value) is int and int(ts.batch) == 12 and ts.batch == 12 and hash(ts.batch) == hash(12)
    assert f"ep{ts.epoch:03d}-ba{ts.batch}" == "ep001-ba12" and str(ts.batch) == repr(ts.batch) == "12"
    assert ts.to_next_batch().batch.unit is TimeUnit.BATCH and ts.to_next_epoch().epoch == 2
    # differs from Composer, documented: arithmetic gives a plain int, and units are not compared
    assert type(ts.batch + 1) is int and ts.batch + 1 == 13 and Time(1, "ep") == Time(1, "ba")
    assert Time.from_timestring("3ep") == Time(3, TimeUnit.EPOCH) and Time(5, "tok").to_timestring() == "5tok"
    assert pickle.loads(pickle.dumps(ts)).batch.unit is TimeUnit.BATCH
    with pytest.raises(ValueError, match="a Timestamp has no DURATION counter"):
        ts.get("dur")
    with pytest.raises(ValueError, match="a Time counts EPOCH, BATCH, SAMPLE, TOKEN; got unit 'dur'"):
        Time(1, "dur")
    with pytest.raises(ValueError, match="invalid time string '3 epochs'"):
        Time.from_timestring("3 epochs")
