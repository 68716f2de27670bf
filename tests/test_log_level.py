import pytest

from composer_cfg import LogLevel


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (LogLevel.EPOCH, LogLevel.EPOCH),
        (1, LogLevel.FIT),
        (3, LogLevel.BATCH),
        ("2", LogLevel.EPOCH),
        (" 3 ", LogLevel.BATCH),
        ("batch", LogLevel.BATCH),
        ("BATCH", LogLevel.BATCH),
        ("Batch", LogLevel.BATCH),
        (" Epoch ", LogLevel.EPOCH),
        ("fit", LogLevel.FIT),
        (2.0, LogLevel.EPOCH),  # the reference's value lookup, kept
    ],
)
def test_parse_accepts_members_values_and_names(value, expected):
    assert LogLevel(value) is expected
    assert LogLevel.parse(value) is expected


@pytest.mark.parametrize("value", [0, 5, -1, 1.5, None, "0", "4", "verbose", "", "LogLevel.BATCH", [1]])
def test_parse_rejects_everything_else_naming_value_and_choices(value):
    with pytest.raises(ValueError) as caught:
        LogLevel.parse(value)
    assert str(caught.value) == (
        f"invalid log level {value!r}: expected one of FIT, EPOCH, BATCH (any case) or their values 1, 2, 3"
    )


def test_order_and_names():
    assert LogLevel.FIT < LogLevel.EPOCH < LogLevel.BATCH
    assert [level.name for level in LogLevel] == ["FIT", "EPOCH", "BATCH"]
    assert [int(level) for level in LogLevel] == [1, 2, 3]


@pytest.mark.parametrize("value", [0, 5, "verbose"])
def test_the_constructor_refuses_what_parse_refuses(value):
    """Composer's LogLevel(0) recursed until RecursionError; here it is a ValueError."""
    with pytest.raises(ValueError, match=f"invalid log level {value!r}"):
        LogLevel(value)
