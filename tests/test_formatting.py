"""format_log_data_value: the reference outputs, byte for byte (spec section 4)."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from composer_cfg import format_log_data_value
from composer_cfg.core.formatting import _as_is, _render, escape_text, format_log_text
from conftest import needs

torch = needs("torch")
given = needs("hypothesis").given
st = needs("hypothesis.strategies")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "None"),
        ("abc", '"abc"'),
        ("", '""'),
        ('say "hi"', '"say "hi""'),  # no escaping, as in the reference
        (5, "5"),
        (-3, "-3"),
        (True, "True"),
        (0.123456, "0.1235"),
        (2.0, "2.0000"),
        (1e-5, "0.0000"),
        (123456.789, "123456.7890"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (-0.0, "-0.0000"),
        ({}, "{ }"),
        ({"a": 1, "b": "x"}, '{ "a": 1, "b": "x", }'),
        ({"loss": 0.5, "nested": {"acc": [1, 0.25]}}, '{ "loss": 0.5000, "nested": { "acc": [1, 0.2500], }, }'),
        ({"metric": "fit"}, '{ "metric": "fit", }'),
        ({"n": None, "ok": False}, '{ "n": None, "ok": False, }'),
        ([1, 2.5, "s"], '[1, 2.5000, "s"]'),
        ((1,), "[1]"),
        ([], "[]"),
        ({1}, "[1]"),
        (b"hi", "[104, 105]"),
        ((x for x in [1, 2]), "[1, 2]"),
    ],
)
def test_reference_outputs(value, text):
    assert format_log_data_value(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (np.float64(0.123456), "0.1235"),  # a float subclass
        (np.int64(5), "5"),  # str() fallback
        (np.float32(0.5), "0.5"),  # str() fallback, as in the reference
        (np.bool_(True), "True"),
        (np.array([1.5, 2.0]), "[1.5000, 2.0000]"),
        (np.array([[1, 2], [3, 4]]), "[[1, 2], [3, 4]]"),
        (np.array(3.0), "3.0000"),  # 0-d array: its value (the reference raised on iteration)
        ({"loss": np.float64(0.25)}, '{ "loss": 0.2500, }'),
    ],
)
def test_numpy_values(value, text):
    assert format_log_data_value(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (torch.tensor(3.14159), "3.1416"),
        (torch.tensor([7]), "7"),
        (torch.tensor([[0.5]]), "0.5000"),
        (torch.zeros(2, 3), "Tensor of shape torch.Size([2, 3])"),
        (torch.zeros(0), "Tensor of shape torch.Size([0])"),
        ({"loss": torch.tensor(0.25)}, '{ "loss": 0.2500, }'),
    ],
)
def test_torch_values(value, text):
    assert format_log_data_value(value) == text


def test_non_string_key_is_a_type_error_naming_the_key():
    with pytest.raises(TypeError) as caught:
        format_log_data_value({"ok": 1, 7: 2})
    assert str(caught.value) == "log data keys must be strings, got 7 (int)"


def test_cycles_are_value_errors_naming_the_key():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError) as caught:
        format_log_data_value({"outer": {"inner": loop}})
    assert str(caught.value) == "log data value for key 'inner' contains itself (a cyclic container)"
    with pytest.raises(ValueError, match="contains itself"):
        format_log_data_value(loop)


def test_shared_but_acyclic_values_are_fine():
    shared = [1]
    assert format_log_data_value({"a": shared, "b": shared}) == '{ "a": [1], "b": [1], }'


def test_percent_signs_in_keys_and_values():
    assert format_log_data_value({"a%d": "%s", "%": 1}) == '{ "a%d": "%s", "%": 1, }'


def test_same_keys_with_new_types_are_formatted_for_their_type():
    assert format_log_data_value({"x": 1}) == '{ "x": 1, }'
    assert format_log_data_value({"x": 1.0}) == '{ "x": 1.0000, }'
    assert format_log_data_value({"x": True}) == '{ "x": True, }'


flat_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())


@given(st.dictionaries(st.text(), flat_values, max_size=6))
def test_fast_path_equals_the_general_walk(data):
    for format_value, escape in ((format_log_data_value, _as_is), (format_log_text, escape_text)):
        expected = _render(data, (), escape)
        assert format_value(data) == expected
        assert format_value(data) == expected  # the cached template gives the same text


def test_float_rendering_matches_python_fixed_point():
    for value in (0.0, 1 / 3, -2.5, 1e20, math.pi):
        assert format_log_data_value(value) == f"{value:.4f}"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a\nb": "c\r\nd"}, '{ "a\\nb": "c\\r\\nd", }'),
        ({'k", "forged': 'v", "x'}, '{ "k\\", \\"forged": "v\\", \\"x", }'),
        ({"path": "C:\\temp\\"}, '{ "path": "C:\\\\temp\\\\", }'),
        ({"esc": "\x1b[31mred\t\x00\x7f\x85\u2028\u2029"},
         '{ "esc": "\\u001b[31mred\\t\\u0000\\u007f\\u0085\\u2028\\u2029", }'),
        ({"nested": {"k\n": ["x\ny", Path("a\nb")]}}, '{ "nested": { "k\\n": ["x\\ny", a\\nb], }, }'),
        ({"loss": 0.5, "日本": "ümlaut ✓"}, '{ "loss": 0.5000, "日本": "ümlaut ✓", }'),
    ],
)
def test_text_lines_escape_keys_and_strings_as_json_does(value, text):
    assert format_log_text(value) == text
    assert format_log_text(value) == text  # the cached template gives the same text
    assert "\n" not in text and len(text.splitlines()) == 1


@given(st.dictionaries(st.text(), st.one_of(st.text(), st.floats(), st.lists(st.text(), max_size=2)), max_size=4))
def test_every_key_and_string_of_a_text_line_reads_back_as_json(data):
    text = format_log_text(data)
    assert len(text.splitlines()) == 1
    strings = [json.loads(token) for token in re.findall(r'"(?:[^"\\]|\\.)*"', text)]
    expected = [piece for key, value in data.items()
                for piece in (key, *([value] if isinstance(value, str) else value if isinstance(value, list) else []))]
    assert strings == expected


@given(st.dictionaries(st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp"), blacklist_characters='"\\')),
                       flat_values.filter(lambda v: not isinstance(v, str) or escape_text(v) == v), max_size=6))
def test_text_lines_are_the_reference_formatting_for_ordinary_data(data):
    assert format_log_text(data) == format_log_data_value(data)
