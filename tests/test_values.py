"""Logged values are checked and normalised once per call, so every destination records the same thing.

Each test logs through a real Logger into real destinations (text log, JSON Lines, InMemory,
TensorBoard event files, a recording destination) and reads back what each one kept.
"""

from __future__ import annotations

import uuid
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from composer_cfg import FileLogger, InMemoryLogger, JSONLinesLogger, Logger, LogLevel, State, TensorboardLogger
from composer_cfg.core import logger as logger_module
from composer_cfg.run.records import read_records
from conftest import Recorder, needs

torch = needs("torch")
ea = needs("tensorboard.backend.event_processing.event_accumulator")


class Everywhere:
    """One Logger into every kind of destination; reads back what each of them kept."""

    def __init__(self, run_name: str = "run") -> None:
        self.run_name = run_name
        self.memory = InMemoryLogger()
        self.recorder = Recorder()
        self.logger = Logger(State(run_name), {
            "recorder": self.recorder,  # first: shows whether anything reached a destination
            "file": FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
            "jsonl": JSONLinesLogger(flush_interval=1),
            "memory": self.memory,
            "tensorboard": TensorboardLogger(flush_interval=1),
        })

    def text(self) -> list[str]:
        path = Path(self.run_name, "logs-rank0.txt")
        return path.read_text().splitlines() if path.exists() else []

    def jsonl(self) -> list[dict[str, Any]]:
        path = Path(self.run_name, "metrics-rank0.jsonl")
        return [record["data"] for record in read_records(path)] if path.exists() else []

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        directory = Path(self.run_name, "tensorboard")
        if not directory.exists():
            return {}
        events = ea.EventAccumulator(str(directory), size_guidance={ea.SCALARS: 0})
        events.Reload()
        return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}

    def data_calls(self) -> list[dict[str, Any]]:
        return [call[2] for call in self.recorder.calls if call[0] == "data"]


def refused_between_two_good_calls(bad: Any, error: type[Exception]) -> tuple[str, Everywhere]:
    """Log ``{"ok": 1.0}``, then `bad` (which must raise `error`), then ``{"ok": 2.0}``, into every
    destination; return the error's message and the destinations, closed."""
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({"ok": 1.0})
        with pytest.raises(error) as caught:
            logger.data_batch(bad)
        logger.data_batch({"ok": 2.0})
    return str(caught.value), every


def assert_only_the_good_calls_were_written(every: Everywhere) -> None:
    assert every.text() == ['[BATCH][batch=0]: { "ok": 1.0000, }', '[BATCH][batch=0]: { "ok": 2.0000, }']
    assert every.jsonl() == [{"ok": 1.0}, {"ok": 2.0}]
    assert list(every.memory.data) == ["ok"]
    assert [(level, value) for _, level, value in every.memory.data["ok"]] == [(LogLevel.BATCH, 1.0),
                                                                               (LogLevel.BATCH, 2.0)]
    assert every.data_calls() == [{"ok": 1.0}, {"ok": 2.0}]
    assert every.scalars() == {"ok": [(0, 1.0), (0, 2.0)]}


# -- tensors -----------------------------------------------------------------------------------


def test_a_non_leaf_tensor_that_requires_grad_is_recorded_by_every_destination():
    w = torch.ones(3, requires_grad=True)
    loss = (w * 2).sum()  # what a training loop logs: a graph node, not a leaf
    assert loss.requires_grad and loss.grad_fn is not None
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({"loss": loss})
    kept = every.memory.most_recent_values["loss"]
    assert isinstance(kept, torch.Tensor) and float(kept) == 6.0
    assert not kept.requires_grad and kept.grad_fn is None  # detached: the graph is not kept alive
    assert every.text() == ['[BATCH][batch=0]: { "loss": 6.0000, }']
    assert every.jsonl() == [{"loss": 6.0}]
    assert every.scalars() == {"loss": [(0, 6.0)]}
    assert loss.grad_fn is not None  # the caller's tensor is untouched: backward still works
    loss.backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]


def test_every_destination_receives_the_same_copy_and_later_changes_by_the_caller_do_not_reach_it():
    first, second, memory = Recorder(), Recorder(), InMemoryLogger()
    tensor = torch.tensor([1.0, 2.0])
    items = [1, 2]
    array = np.array([1.0, 2.0])
    nested = {"inner": [1]}
    objects = np.empty(1, dtype=object)
    objects[0] = [1]
    data = {"tensor": tensor, "items": items, "array": array, "nested": nested, "objects": objects}
    with Logger(State("run"), [first, memory, second]) as logger:
        logger.data_batch(data)
        # the caller reuses its objects, as a training loop does
        tensor.add_(10)
        items.append(3)
        array[0] = 99.0
        nested["inner"].append(2)
        objects[0].append(2)
        data["tensor"] = "replaced"
    (received,) = [call[2] for call in first.calls if call[0] == "data"]
    (also,) = [call[2] for call in second.calls if call[0] == "data"]
    assert also == received and also is not received  # each Composer destination its own dict (it may rename keys)
    assert also["tensor"] is received["tensor"]  # the values in them: one copy for all
    assert received is not data
    kept = memory.most_recent_values
    assert kept["tensor"] is received["tensor"] and kept["tensor"] is not tensor  # one host copy, shared
    assert kept["tensor"].tolist() == [1.0, 2.0]
    assert kept["items"] == [1, 2]
    assert kept["array"].tolist() == [1.0, 2.0]
    assert kept["nested"] == {"inner": [1]}
    assert kept["objects"][0] == [1]  # an array of objects: its objects copied too
    assert received["tensor"].tolist() == [1.0, 2.0] and received["items"] == [1, 2]


# -- bounded structures --------------------------------------------------------------------------


def nested_list(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


class Unprintable:
    def __str__(self) -> str:
        raise ZeroDivisionError("division by zero")


def test_a_value_that_can_not_be_turned_into_text_is_refused_at_the_call_for_every_destination():
    memory = InMemoryLogger()
    logger = Logger(State("run"), {"file": FileLogger(capture_stdout=False, capture_stderr=False, log_level="batch"),
                                   "jsonl": JSONLinesLogger(), "memory": memory})
    with logger:
        with pytest.raises(TypeError, match=r"^log data value for key 'bad' can not be turned into text: its "
                                            r"__str__ raised ZeroDivisionError: division by zero$"):
            logger.data_batch({"loss": 0.25, "bad": Unprintable()})
        logger.data_batch({"loss": 0.5})
    assert memory.get_timeseries("loss")["loss"].tolist() == [0.5]  # refused alike: the call reached no one
    assert [r["data"] for r in read_records("run/metrics-rank0.jsonl")] == [{"loss": 0.5}]
    assert Path("run/logs-rank0.txt").read_text().splitlines() == ['[BATCH][batch=0]: { "loss": 0.5000, }']


def test_a_list_nested_5000_deep_is_a_value_error_naming_the_key_and_nothing_is_written():
    message, every = refused_between_two_good_calls({"deep": nested_list(5000)}, ValueError)  # not RecursionError
    assert message == "log data value for key 'deep" + "[0]" * 31 + "' is nested more than 32 levels deep"
    assert_only_the_good_calls_were_written(every)


def test_a_dict_nested_5000_deep_is_refused_the_same_way():
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}
    message, every = refused_between_two_good_calls({"deep": deep}, ValueError)
    path = "deep" + "['a']" * 31
    assert message == f"log data value for key {path!r} is nested more than 32 levels deep"
    assert_only_the_good_calls_were_written(every)


def test_a_list_nested_31_deep_is_within_the_limit_and_written_alike_everywhere():
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({"deep": nested_list(31)})
    assert every.text() == ['[BATCH][batch=0]: { "deep": ' + "[" * 31 + "0" + "]" * 31 + ", }"]
    assert every.jsonl() == [{"deep": nested_list(31)}]
    assert every.memory.most_recent_values == {"deep": nested_list(31)}


def test_a_list_containing_itself_is_a_value_error_naming_the_key():
    cycle: list[Any] = [1]
    cycle.append(cycle)
    message, every = refused_between_two_good_calls({"k": cycle}, ValueError)
    assert message == "log data value for key 'k[1]' contains itself (a cyclic container)"
    assert_only_the_good_calls_were_written(every)


def test_a_dict_containing_itself_is_a_value_error_naming_the_key():
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    message, every = refused_between_two_good_calls({"outer": cycle}, ValueError)
    assert message == "log data value for key \"outer['self']\" contains itself (a cyclic container)"
    assert_only_the_good_calls_were_written(every)


def test_the_log_data_itself_containing_itself_is_a_value_error():
    data: dict[str, Any] = {"a": 1}
    data["me"] = data
    message, every = refused_between_two_good_calls(data, ValueError)
    assert message == "log data value for key 'me' contains itself (a cyclic container)"
    assert_only_the_good_calls_were_written(every)


def test_one_object_under_two_keys_is_not_a_cycle():
    shared = [1, 2]
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({"a": shared, "b": [shared, shared]})
    assert every.text() == ['[BATCH][batch=0]: { "a": [1, 2], "b": [[1, 2], [1, 2]], }']
    assert every.jsonl() == [{"a": [1, 2], "b": [[1, 2], [1, 2]]}]


# -- iterators -----------------------------------------------------------------------------------

DESTINATION_SETS = {
    "file": lambda: [FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False)],
    "jsonl": lambda: [JSONLinesLogger(flush_interval=1)],
    "memory": lambda: [InMemoryLogger()],
    "tensorboard": lambda: [TensorboardLogger(flush_interval=1)],
    "recorder": lambda: [Recorder()],
    "all": lambda: [Recorder(), FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
                    JSONLinesLogger(flush_interval=1), InMemoryLogger(), TensorboardLogger(flush_interval=1)],
}


@pytest.mark.parametrize(
    ("make", "kind"),
    [(lambda: (i for i in range(3)), "generator"), (lambda: iter([0, 1, 2]), "list_iterator"),
     (lambda: map(int, "012"), "map")],
    ids=["generator", "iter", "map"],
)
def test_an_iterator_is_the_same_type_error_for_every_destination_set_and_is_not_consumed(make, kind):
    messages = {}
    for name, destinations in DESTINATION_SETS.items():
        run_name = f"run_{name}"
        built = destinations()
        iterator = make()
        with Logger(State(run_name), built) as logger:
            with pytest.raises(TypeError) as caught:
                logger.data_batch({"g": iterator})
        messages[name] = str(caught.value)
        assert next(iterator) == 0, name  # nobody took anything from it
        assert not Path(run_name).exists(), name  # no destination wrote (or even opened) anything
        for destination in built:
            if isinstance(destination, InMemoryLogger):
                assert destination.data == {}
            if isinstance(destination, Recorder):
                assert [call for call in destination.calls if call[0] == "data"] == []
    assert set(messages.values()) == {
        f"log data value for key 'g' is an iterator ({kind}): it can be read only once, so one destination would "
        f"take it from the others; log list(...) instead"
    }


def test_an_iterator_inside_a_list_is_refused_naming_its_place():
    message, every = refused_between_two_good_calls({"g": [1, (i for i in range(3))]}, TypeError)
    assert message.startswith("log data value for key 'g[1]' is an iterator (generator)")
    assert_only_the_good_calls_were_written(every)


def test_a_range_is_written_as_a_list_everywhere():
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({"r": range(3)})
    assert every.text() == ['[BATCH][batch=0]: { "r": [0, 1, 2], }']
    assert every.jsonl() == [{"r": [0, 1, 2]}]
    assert every.memory.most_recent_values == {"r": [0, 1, 2]}
    assert every.data_calls() == [{"r": [0, 1, 2]}]


# -- keys and the data itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"outer": {1: 2}}, "log data keys must be strings, got 1 (int) in the value of 'outer'"),
        ({"outer": [{"in": {2.5: 1}}]}, "log data keys must be strings, got 2.5 (float) in the value of \"outer[0]['in']\""),
        ({1: 2.0}, "log data keys must be strings, got 1 (int)"),
        ({"fine": 1.0, None: 2.0}, "log data keys must be strings, got None (NoneType)"),
    ],
    ids=["nested", "deeper", "top-level", "top-level-after-a-good-key"],
)
def test_a_non_string_key_at_any_depth_is_a_type_error_before_any_destination_is_called(data, message):
    refused, every = refused_between_two_good_calls(data, TypeError)
    assert refused == message
    assert_only_the_good_calls_were_written(every)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "log data must be a mapping of names to values, got NoneType: None"),
        ([("a", 1)], "log data must be a mapping of names to values, got list: [('a', 1)]"),
        ("loss", "log data must be a mapping of names to values, got str: 'loss'"),
    ],
    ids=["None", "list-of-pairs", "str"],
)
def test_log_data_that_is_not_a_mapping_is_a_type_error_naming_its_type(data, message):
    refused, every = refused_between_two_good_calls(data, TypeError)
    assert refused == message
    assert_only_the_good_calls_were_written(every)


# -- subclasses of plain types ---------------------------------------------------------------------


class OddFloat(float):
    """A float that reports other numbers and text through every conversion it can override."""

    def __float__(self) -> float:
        return 99.0

    def __str__(self) -> str:
        return "odd"

    def __repr__(self) -> str:
        return "OddFloat(?)"

    def __format__(self, spec: str) -> str:
        return "odd"


class OddInt(int):
    def __int__(self) -> int:
        return 99

    def __index__(self) -> int:
        return 99

    def __str__(self) -> str:
        return "odd"

    __repr__ = __str__


class Loud(str):
    def __str__(self) -> str:
        return self.upper()

    def __format__(self, spec: str) -> str:
        return self.upper()

    def __repr__(self) -> str:
        return "Loud(?)"


class Level(IntEnum):
    HIGH = 3


def test_subclasses_of_float_int_and_str_are_recorded_as_the_same_value_everywhere():
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({"odd_float": OddFloat(0.5), "np_float": np.float64(0.25), "odd_int": OddInt(7),
                           "level": Level.HIGH, "loud": Loud("quiet")})
    assert every.text() == [
        '[BATCH][batch=0]: { "odd_float": 0.5000, "np_float": 0.2500, "odd_int": 7, "level": 3, "loud": "quiet", }'
    ]
    assert every.jsonl() == [{"odd_float": 0.5, "np_float": 0.25, "odd_int": 7, "level": 3, "loud": "quiet"}]
    kept = every.memory.most_recent_values
    assert kept == {"odd_float": 0.5, "np_float": 0.25, "odd_int": 7, "level": 3, "loud": "quiet"}
    # numpy scalars are kept as given (Composer's InMemoryLogger kept them); other subclasses become plain
    assert {key: type(value) for key, value in kept.items()} == {
        "odd_float": float, "np_float": np.float64, "odd_int": int, "level": int, "loud": str}
    (received,) = every.data_calls()
    assert {key: type(value) for key, value in received.items()} == {
        "odd_float": float, "np_float": np.float64, "odd_int": int, "level": int, "loud": str}
    assert every.scalars() == {"odd_float": [(0, 0.5)], "np_float": [(0, 0.25)], "odd_int": [(0, 7.0)],
                               "level": [(0, 3.0)]}  # the string is not a scalar: skipped


class Colour(str, Enum):
    RED = "red"


def test_subclasses_inside_a_set_are_recorded_as_the_same_value_everywhere():
    # A set (or frozenset) holds only hashable values, but those may be int/str subclasses too:
    # each must read the same in the text log as in the JSON Lines file.
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({"ints": {OddInt(7)}, "strs": frozenset({Loud("quiet")}), "tags": {Colour.RED}})
    assert every.jsonl() == [{"ints": [7], "strs": ["quiet"], "tags": ["red"]}]
    assert every.text() == ['[BATCH][batch=0]: { "ints": [7], "strs": ["quiet"], "tags": ["red"], }']
    kept = every.memory.most_recent_values
    assert kept == {"ints": {7}, "strs": frozenset({"quiet"}), "tags": {"red"}}
    assert [type(value) for values in kept.values() for value in values] == [int, str, str]


def test_a_str_subclass_key_is_recorded_as_its_plain_string_everywhere_even_once_known():
    # A metric-name enum, a common pattern. Unique values keep the test independent of the
    # process-wide caches of keys and templates that other tests fill.
    suffix = uuid.uuid4().hex[:8]
    Metric = Enum("Metric", {"LOSS": f"loss_{suffix}", "ACC": f"acc_{suffix}"}, type=str)
    loss, acc = f"loss_{suffix}", f"acc_{suffix}"
    every = Everywhere()
    with every.logger as logger:
        logger.data_batch({Metric.LOSS: 0.5})
        logger.data_batch({Metric.ACC: 0.75})
        logger.data_batch({Metric.LOSS: 0.25, Metric.ACC: 0.5})  # both names seen before
    assert every.jsonl() == [{loss: 0.5}, {acc: 0.75}, {loss: 0.25, acc: 0.5}]
    assert every.text() == [
        f'[BATCH][batch=0]: {{ "{loss}": 0.5000, }}',
        f'[BATCH][batch=0]: {{ "{acc}": 0.7500, }}',
        f'[BATCH][batch=0]: {{ "{loss}": 0.2500, "{acc}": 0.5000, }}',
    ]
    assert [type(key) for call in every.data_calls() for key in call] == [str, str, str, str]
    assert sorted(every.scalars()) == sorted([loss, acc])


# -- the common case: unchanged ------------------------------------------------------------------

FLAT = {"loss": 0.123456, "step": 3, "phase": "train", "ok": True, "none": None, "tiny": 1e-05,
        "big": 123456.789, "neg": -2, "top%": 1, "nan": float("nan"), "inf": float("-inf"), "q": 'say "hi" 50%'}
FLAT_TEXT = ('{ "loss": 0.1235, "step": 3, "phase": "train", "ok": True, "none": None, "tiny": 0.0000, '
             '"big": 123456.7890, "neg": -2, "top%": 1, "nan": nan, "inf": -inf, "q": "say \\"hi\\" 50%", }')
FLAT_JSON = ('{"loss": 0.123456, "step": 3, "phase": "train", "ok": true, "none": null, "tiny": 1e-05, '
             '"big": 123456.789, "neg": -2, "top%": 1, "nan": "NaN", "inf": "-Infinity", "q": "say \\"hi\\" 50%"}')


def test_a_flat_dict_of_plain_values_is_copied_once_and_written_as_before(monkeypatch):
    monkeypatch.setattr(logger_module.time, "time", lambda: 1764031234.5)
    recorder, memory = Recorder(), InMemoryLogger()
    state = State("flat_run")
    calls = [dict(FLAT), dict(FLAT)]
    with Logger(state, [recorder, FileLogger(log_level="batch", capture_stdout=False, capture_stderr=False),
                        JSONLinesLogger(), memory]) as logger:
        for data in calls:
            logger.data_batch(data)
            state.timestamp = state.timestamp.to_next_batch(samples=4)
        logger.data_epoch({"acc": 0.5})
        logger.data_fit({"lr": 0.1, "name": "x"})
    received = [call[2] for call in recorder.calls if call[0] == "data"]
    assert received[1] == calls[1] and received[1] is not calls[1]  # a shallow copy: the caller may reuse its dict
    assert [type(v) for v in received[1].values()] == [type(v) for v in FLAT.values()]
    # Byte for byte what the previous release wrote for such data (checked against commit 31b146d),
    # but for the quotes inside a string, escaped since: they could forge a key.
    assert Path("flat_run/logs-rank0.txt").read_bytes() == (
        f"[BATCH][batch=0]: {FLAT_TEXT}\n"
        f"[BATCH][batch=1]: {FLAT_TEXT}\n"
        '[EPOCH][batch=2]: { "acc": 0.5000, }\n'
        '[FIT][batch=2]: { "lr": 0.1000, "name": "x", }\n'
    ).encode()
    header = '{"level": "%s", "run_name": "flat_run", "rank": 0, "epoch": 0, "batch": %d, "batch_in_epoch": %d, ' \
             '"sample": %d, "time": 1764031234.5, "data": '
    assert Path("flat_run/metrics-rank0.jsonl").read_bytes() == (
        header % ("BATCH", 0, 0, 0) + FLAT_JSON + "}\n"
        + header % ("BATCH", 1, 1, 4) + FLAT_JSON + "}\n"
        + header % ("EPOCH", 2, 2, 8) + '{"acc": 0.5}}\n'
        + header % ("FIT", 2, 2, 8) + '{"lr": 0.1, "name": "x"}}\n'
    ).encode()
    kept = memory.most_recent_values
    assert {key: kept[key] for key in FLAT if key != "nan"} == {key: v for key, v in FLAT.items() if key != "nan"}
    assert kept["nan"] != kept["nan"]
    assert [type(kept[key]) for key in FLAT] == [type(v) for v in FLAT.values()]


@pytest.mark.parametrize(("value", "kind"), [(OddFloat(0.5), float), (np.float64(0.5), np.float64)])
def test_a_flat_dict_holding_a_float_subclass_is_not_passed_through(value, kind):
    recorder = Recorder()
    with Logger(State("run"), recorder) as logger:
        for _ in range(2):
            data = {"loss": value}
            logger.data_batch(data)
    received = [call[2] for call in recorder.calls if call[0] == "data"]
    assert all(r is not data and type(r["loss"]) is kind and r == {"loss": 0.5} for r in received)


def test_a_mapping_of_more_than_100000_items_is_refused_like_a_list_by_every_destination():
    memory = InMemoryLogger()
    logger = Logger(State("run"), {"memory": memory, "jsonl": JSONLinesLogger()})
    for data in ({f"k{i}": i for i in range(100_001)}, {"x": {f"k{i}": i for i in range(100_001)}}):
        with pytest.raises(ValueError, match=r"is too large to log \(100,001 items, at most 100,000\)"):
            logger.data_batch(data)
    logger.close()
    assert memory.most_recent_values == {} and not Path("run").exists()
