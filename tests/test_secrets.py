"""The secrets policy (`composer_cfg.core.secrets`), and the pieces that apply it: one table of keys."""

import io
import logging
import sys

import pytest

from composer_cfg.cli.masked_output import MaskedStream, mask_output
from composer_cfg.config.secret_overrides import by_reference, secrets_in
from composer_cfg.core.secrets import (
    MASK,
    is_secret_key,
    redact,
    redact_override,
    redact_text,
    remember,
    secret_values,
)

SECRET_KEYS = [
    "api_key", "password", "secret", "token", "access_token", "aws_secret_access_key", "MLFLOW_TRACKING_PASSWORD",
    "WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN", "HF_TOKEN", "AWS_SESSION_TOKEN", "apiKey", "accessToken", "x-api-key",
    "apikey", "authtoken", "key", "private_key", "client_secret", "db_passwd", "passphrase", "credentials",
    "Authorization", "logger.destinations.mlflow.tags.api_token", "hparams/api_key",
]
PLAIN_KEYS = [
    "max_tokens", "token_in_epoch", "num_tokens", "tokenizer", "tokenizer_name", "pad_token", "eos_token",
    "sort_key", "primary_key", "full_key", "monkey", "AWS_ACCESS_KEY_ID", "token_type", "tracking_uri", "run_name",
    "keys", "log_level", "secretless_but_named.url",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_keys_that_name_a_secret(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_keys_that_do_not(key):
    assert not is_secret_key(key)


def test_structures_mask_values_of_secret_keys_and_url_passwords_but_keep_references():
    config = {"storage_options": {"key": "AKIA", "secret": "s3cret", "region": "eu"},
              "tags": {"api_token": "tok", "team": "ml", "max_tokens": 512},
              "tracking_uri": "https://alice:pw0rd@mlflow.example.com/x", "api_key": "${oc.env:WANDB_API_KEY}",
              "password": None, "overrides": ["a.password=hunter22", "b=1"]}
    assert redact(config) == {
        "storage_options": {"key": MASK, "secret": MASK, "region": "eu"},
        "tags": {"api_token": MASK, "team": "ml", "max_tokens": 512},
        "tracking_uri": f"https://alice:{MASK}@mlflow.example.com/x", "api_key": "${oc.env:WANDB_API_KEY}",
        "password": None, "overrides": [f"a.password={MASK}", "b=1"]}
    assert secret_values(config) == {"AKIA", "s3cret", "tok", "pw0rd"}  # overrides: `secrets_in`


def test_nothing_secret_is_returned_as_is():
    data = {"loss": 0.5, "nested": {"max_tokens": 3, "names": ["a", "b"]}}
    assert redact(data) is data


@pytest.mark.parametrize(("override", "shown"), [
    ("x.api_key=abc", f"x.api_key={MASK}"),
    ("++a.tags={team: ml, api_token: 'a b', env_token: '${oc.env:T}'}",
     f"++a.tags={{team: ml, api_token: '{MASK}', env_token: '${{oc.env:T}}'}}"),
    ("a.tracking_uri=http://u:pw@host:5000", f"a.tracking_uri=http://u:{MASK}@host:5000"),
    ("a.url=s3://b/k?X-Amz-Security-Token=t0k&x=1", f"a.url=s3://b/k?X-Amz-Security-Token={MASK}&x=1"),
    ("x.api_key=${oc.env:WANDB_API_KEY}", "x.api_key=${oc.env:WANDB_API_KEY}"),
    ("a.max_tokens=512", "a.max_tokens=512"),
])
def test_overrides(override, shown):
    assert redact_override(override) == shown


def test_a_remembered_value_is_masked_in_any_text_but_short_ones_are_not():
    remember(["remembered-value-1", "abc"])
    assert redact_text("Error: ['x.y=remembered-value-1']") == f"Error: ['x.y={MASK}']"
    assert redact_text("abc") == "abc"


def test_literal_secrets_of_overrides_become_references_to_the_environment():
    overrides = ["demo.epochs=1", "x.api_key=abcdefgh,ijklmnop", "a.tags={team: ml, api_token: 'a b c'}",
                 "a.uri=http://u:pw0rd@h:5/x", "a.api_key='it\\'s a secret'", "a.token=12345678",
                 "x.password=${oc.env:MY_PASSWORD}"]
    rewritten, environment = by_reference(overrides)
    names = {value: f"${{oc.env:{name}}}" for name, value in environment.items()}
    assert rewritten == [
        "demo.epochs=1", f"x.api_key={names['abcdefgh']},{names['ijklmnop']}",
        f"a.tags={{team: ml, api_token: '{names['a b c']}'}}", f"a.uri=http://u:{names['pw0rd']}@h:5/x",
        "a.api_key='it\\'s a secret'",  # written with an escape: kept as given
        "a.token=12345678",  # not a string: kept as given
        "x.password=${oc.env:MY_PASSWORD}"]
    assert secrets_in(overrides) == {"abcdefgh", "ijklmnop", "a b c", "pw0rd", "it's a secret", "12345678"}


def test_masked_streams_and_log_records(monkeypatch):
    remember(["stream-secret-1"])
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    handler_stream = io.StringIO()  # a handler made before the masking keeps the raw stream
    handler = logging.StreamHandler(handler_stream)
    log = logging.getLogger("test_secrets")
    log.addHandler(handler)
    unmask = mask_output()
    try:
        assert isinstance(sys.stdout, MaskedStream)
        print("value stream-secret-1 and http://u:pw@h/")
        log.warning("multi\nline %s", "stream-secret-1")
        try:
            raise RuntimeError("stream-secret-1")
        except RuntimeError:
            log.exception("failed")
    finally:
        unmask()
        log.removeHandler(handler)
    assert sys.stdout is out
    assert out.getvalue() == f"value {MASK} and http://u:{MASK}@h/\n"
    assert "stream-secret-1" not in handler_stream.getvalue()
    assert f"multi\nline {MASK}" in handler_stream.getvalue() and f"RuntimeError: {MASK}" in handler_stream.getvalue()


def test_fit_data_is_masked_before_any_destination_gets_it_and_batch_data_is_not_inspected(tmp_path):
    from composer_cfg import FileLogger, InMemoryLogger, Logger, State

    memory = InMemoryLogger()
    with Logger(State("masked"), {"memory": memory, "file": FileLogger(log_level="batch")}) as logger:
        logger.data_fit({"api_token": "abc", "max_tokens": 512, "url": "http://u:pw@h/x"})
        logger.data_batch({"api_token": "abc"})
        print("fetching http://u:pw@h/x")  # captured by the FileLogger
    assert [(key, entries[-1][2]) for key, entries in memory.data.items()] == [
        ("api_token", "abc"), ("max_tokens", 512), ("url", f"http://u:{MASK}@h/x")]
    assert [level.name for _, level, _ in memory.data["api_token"]] == ["FIT", "BATCH"]
    assert memory.data["api_token"][0][2] == MASK
    lines = (tmp_path / "masked" / "logs-rank0.txt").read_text().splitlines()
    assert lines[0] == '[FIT][batch=0]: { "api_token": "***", "max_tokens": 512, "url": "http://u:***@h/x", }'
    assert lines[1] == '[BATCH][batch=0]: { "api_token": "abc", }'
    assert f"[stdout]: fetching http://u:{MASK}@h/x" in lines
