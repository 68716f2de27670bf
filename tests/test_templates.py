import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest

from composer_cfg import (
    ConfigError,
    FileLogger,
    Logger,
    State,
    Timestamp,
    format_name_with_dist,
    format_name_with_dist_and_time,
)
from composer_cfg.core.templates import DIST_FIELDS, TIME_FIELDS, Template, check_artifact_name


def test_reference_examples():
    assert format_name_with_dist("{run_name}/rank{rank}.{extension}", "awesome_training_run", extension="json") == (
        "awesome_training_run/rank0.json"
    )
    name = format_name_with_dist_and_time(
        "{run_name}/ep{epoch}-ba{batch}-rank{rank}.{extension}", "awesome_training_run", Timestamp(), extension="json"
    )
    assert name == "awesome_training_run/ep0-ba0-rank0.json"


def test_dist_fields_come_from_the_environment(monkeypatch):
    for name, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                        "NODE_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    text = format_name_with_dist("{rank}-{local_rank}-{world_size}-{local_world_size}-{node_rank}", "r")
    assert text == "3-1-4-2-1"


def test_time_fields_and_wall_clock_seconds():
    ts = Timestamp(epoch=3, batch=42, batch_in_epoch=2, sample=9, sample_in_epoch=1, token=8, token_in_epoch=7,
                   total_wct=timedelta(hours=10), epoch_wct=timedelta(seconds=5), batch_wct=timedelta(seconds=0.25))
    fmt = "{epoch}|{batch}|{batch_in_epoch}|{sample}|{sample_in_epoch}|{token}|{token_in_epoch}|{total_wct}|{epoch_wct}|{batch_wct}"
    assert format_name_with_dist_and_time(fmt, "r", ts) == "3|42|2|9|1|8|7|36000.0|5.0|0.25"


def test_format_specs_and_literal_braces():
    assert format_name_with_dist_and_time("ep{epoch:03d}-{{x}}", "r", Timestamp(epoch=7)) == "ep007-{x}"


def test_unused_extra_fields_are_ignored():
    assert format_name_with_dist("{run_name}", "r", unused=1) == "r"


def test_extra_field_colliding_with_a_built_in_is_a_type_error():
    with pytest.raises(TypeError, match=r"extra template fields \['rank'\] would replace built-in fields"):
        format_name_with_dist("{rank}", "r", rank=3)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{rnak}.txt", "unknown field {rnak} in template '{rnak}.txt': did you mean {rank}? valid fields: "
                       "local_rank, local_world_size, node_rank, rank, run_name, world_size"),
        ("{}.txt", "positional field {} in template '{}.txt': name a field, e.g. {rank}"),
        ("{0}.txt", "positional field {0} in template '{0}.txt': name a field, e.g. {rank}"),
        ("{rank.__class__}", "field {rank.__class__} in template '{rank.__class__}' uses attribute or index access, "
                             "which is not allowed: use a plain field name"),
        ("{run_name[0]}", "field {run_name[0]} in template '{run_name[0]}' uses attribute or index access, "
                          "which is not allowed: use a plain field name"),
        ("{rank:xyz}", "bad format spec in template '{rank:xyz}': Invalid format specifier 'xyz' for object of type 'int'"),
        ("{rank", "malformed template '{rank': expected '}' before end of string "
                  "(write a literal brace as {{ or }})"),
        ("a}b", "malformed template 'a}b': Single '}' encountered in format string (write a literal brace as {{ or }})"),
        ("{rank:{width}}", "nested field in the format spec of {rank} in template '{rank:{width}}'"),
        ("{xyzzy}", "unknown field {xyzzy} in template '{xyzzy}': valid fields: "
                    "local_rank, local_world_size, node_rank, rank, run_name, world_size"),
    ],
)
def test_bad_templates_are_config_errors(template, message):
    with pytest.raises(ConfigError) as caught:
        Template(template, DIST_FIELDS, key="logger.destinations.file.filename")
    assert str(caught.value) == f"logger.destinations.file.filename: {message}"


def test_template_functions_raise_config_errors_too():
    with pytest.raises(ConfigError, match=r"unknown field \{epoch\}"):
        format_name_with_dist("{epoch}", "r")


def test_template_reports_its_fields():
    assert Template("{run_name}/ep{epoch}-rank{rank:02d}", TIME_FIELDS).fields == {"run_name", "epoch", "rank"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/abs/x", "artifact name '/abs/x' is absolute; artifact names are relative, like 'run/logs.txt'"),
        ("C:/x", "artifact name 'C:/x' is absolute; artifact names are relative, like 'run/logs.txt'"),
        ("a/../../x", "artifact name 'a/../../x' climbs out of the artifact root with '..'"),
        ("..", "artifact name '..' climbs out of the artifact root with '..'"),
        ("a\nb", "artifact name 'a\\nb' contains a control character"),
        ("", "artifact name is empty"),
    ],
)
def test_artifact_names_stay_inside_the_root(name, message):
    with pytest.raises(ConfigError) as caught:
        check_artifact_name(name, key="artifact_name")
    assert str(caught.value) == f"artifact_name: {message}"


def test_good_artifact_names_pass():
    assert check_artifact_name("run/a..b/ckpt.npz") == "run/a..b/ckpt.npz"


@pytest.mark.parametrize(
    ("template", "number"),
    [("{rank:>99999999}", "99999999"), ("ep{total_wct:.1000f}", "1000"), ("{rank:0256d}", "0256"),
     ("{run_name:x<9}{rank:" + "9" * 4000 + "}", "9" * 4000)],
    ids=["width", "precision", "zero-padded", "4000-digits"],
)
def test_format_widths_and_precisions_are_bounded_before_anything_is_allocated(template, number):
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as caught:
            Template(template, TIME_FIELDS, key="logger.destinations.file.filename")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    shown = number if len(number) <= 50 else f"{number[:50]}…"
    quoted = repr(template) if len(template) <= 50 else f"{template[:50]!r}…"
    assert str(caught.value) == (f"logger.destinations.file.filename: format width or precision {shown} in template "
                                 f"{quoted} is above 255, the longest a file name may be")
    assert peak < 1_000_000


def test_widths_up_to_the_bound_pass():
    assert Template("{rank:0>255}", DIST_FIELDS).fill({"rank": 7}) == "0" * 254 + "7"
    assert Template("ep{epoch:03d}-{total_wct:.2f}", TIME_FIELDS).fill({"epoch": 7, "total_wct": 1.5}) == "ep007-1.50"


def test_a_template_longer_than_a_path_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        Template("x" * 5000, DIST_FIELDS, key="filename")
    assert str(caught.value) == (f"filename: template {'x' * 50!r}… is 5,000 characters long, "
                                 f"more than a path may have (4,096 bytes)")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"run_name": "r" * 250}, f"{'r' * 50!r}… is 260 bytes long, more than a file name may have (255 bytes), "
                                  f"in the name filled from template '{{run_name}}-rank{{rank}}.txt'"),
        ({"run_name": "é" * 130}, f"{'é' * 50!r}… is 270 bytes long, more than a file name may have (255 bytes), "
                                  f"in the name filled from template '{{run_name}}-rank{{rank}}.txt'"),
    ],
    ids=["ascii", "two-byte-characters"],
)
def test_a_filled_name_part_longer_than_a_file_name_is_a_config_error(fields, message):
    with pytest.raises(ConfigError) as caught:
        Template("{run_name}-rank{rank}.txt", DIST_FIELDS, key="filename").fill({**fields, "rank": 0})
    assert str(caught.value) == f"filename: {message}"


def test_a_filled_name_longer_than_a_path_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        format_name_with_dist("{run_name}/" * 20 + "x", "d" * 250)
    assert str(caught.value) == (
        f"{('d' * 250 + '/')[:50]!r}… is 5,021 bytes long, more than a path may have (4,096 bytes), "
        f"in the name filled from template {('{run_name}/' * 20)[:50]!r}…"
    )


def test_a_log_file_name_too_long_for_the_file_system_is_a_config_error_and_nothing_is_created():
    logger = Logger(State("r" * 250), FileLogger("{run_name}-logs-rank{rank}.txt", capture_stdout=False,
                                                 capture_stderr=False))
    with pytest.raises(ConfigError, match=r"^filename: 'r{50}'… is 265 bytes long, more than a file name may have"):
        logger.data_fit({"a": 1})
    logger.close()
    assert list(Path().iterdir()) == []
