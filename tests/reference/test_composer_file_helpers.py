"""Composer 0.7.1/0.8.0's ``tests/utils/test_file_helpers.py``: its template tests, replayed.

(Its ``get_file``, ``is_tar`` and ``ensure_folder_*`` tests cover checkpoint helpers that are
not part of the logger API composer_cfg re-implements.)
"""

import datetime

import pytest

from composer_cfg import ConfigError, Time, Timestamp, TimeUnit, format_name_with_dist, format_name_with_dist_and_time

DIST = ["run_name", "rank", "node_rank", "world_size", "local_world_size", "local_rank", "extra"]


def template(names):
    return ",".join(f"{name}={{{name}}}" for name in names)


def test_format_name_with_dist():
    expected = "run_name=awesome_run,rank=0,node_rank=0,world_size=1,local_world_size=1,local_rank=0,extra=42"
    assert format_name_with_dist(template(DIST), "awesome_run", extra=42) == expected


def test_format_name_with_dist_and_time():
    names = DIST + ["epoch", "batch", "batch_in_epoch", "sample", "sample_in_epoch", "token", "token_in_epoch",
                    "total_wct", "epoch_wct", "batch_wct"]
    expected = ("run_name=awesome_run,rank=0,node_rank=0,world_size=1,local_world_size=1,local_rank=0,extra=42,"
                "epoch=0,batch=1,batch_in_epoch=1,sample=2,sample_in_epoch=2,token=3,token_in_epoch=3,"
                "total_wct=36000.0,epoch_wct=3000.0,batch_wct=5.0")
    timestamp = Timestamp(
        epoch=Time.from_timestring("0ep"),
        batch=Time.from_timestring("1ba"),
        batch_in_epoch=Time.from_timestring("1ba"),
        sample=Time.from_timestring("2sp"),
        sample_in_epoch=Time.from_timestring("2sp"),
        token=Time.from_timestring("3tok"),
        token_in_epoch=Time.from_timestring("3tok"),
        total_wct=datetime.timedelta(hours=10),  # formatted as seconds
        epoch_wct=datetime.timedelta(minutes=50),
        batch_wct=datetime.timedelta(seconds=5),
    )
    assert format_name_with_dist_and_time(template(names), "awesome_run", timestamp=timestamp, extra=42) == expected


def test_a_timestamp_takes_times_of_its_own_units_only():
    """Composer's Timestamp refused a Time of the wrong unit (``batch=Time(1, 'ep')``)."""
    assert Timestamp(batch=Time(7, TimeUnit.BATCH)).batch == 7
    with pytest.raises(ValueError, match="Timestamp.batch counts BATCH, got '1ep'"):
        Timestamp(batch=Time(1, TimeUnit.EPOCH))


def test_an_unknown_field_is_a_config_error_naming_the_valid_ones():
    # Differs on purpose: Composer's str.format raised a bare KeyError('nope'); composer_cfg's
    # ConfigError (a ValueError) lists the valid fields, since the template usually comes from a config.
    with pytest.raises(ConfigError, match=r"unknown field \{nope\} .* valid fields: .*run_name"):
        format_name_with_dist("{nope}", "awesome_run")
