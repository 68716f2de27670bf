"""Literal secrets of the command line, handed to the job by reference instead.

Hydra records the command line's overrides wherever it writes (``.hydra/``, ``multirun.yaml``,
its log lines, a launcher's pickles such as submitit's ``_submitted.pkl``), and libraries read
``sys.argv`` (W&B's run metadata). `by_reference` moves each literal secret of an override (a
value under a secret key, a URL's password: `composer_cfg.core.secrets`) into an environment variable,
which every job process inherits, and writes ``${oc.env:NAME}`` in its place: the job resolves
it when it builds its logger, and what Hydra records holds the reference, not the value.

>>> by_reference(["demo.epochs=1", "x.api_key=s3cr3t-value"])
(['demo.epochs=1', 'x.api_key=${oc.env:COMPOSER_CFG_SECRET_0}'], {'COMPOSER_CFG_SECRET_0': 's3cr3t-value'})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from composer_cfg.core.secrets import secret_values

ENV_PREFIX = "COMPOSER_CFG_SECRET_"


def secrets_in(overrides: Sequence[str]) -> set[str]:
    """The literal secrets the overrides hold (empty if they do not parse: Hydra reports that)."""
    return {secret for _, _, secrets in _parsed(overrides) for secret in secrets}


def by_reference(overrides: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """`overrides` with each literal secret replaced by an ``${oc.env:...}`` reference, and the
    environment variables those references name.

    An override is rewritten only when parsing it again gives the same value once the references
    are resolved; one whose secret is written with escapes, or is not a string, is kept as given.
    """
    names: dict[str, str] = {}
    result = []
    for line, value, secrets in _parsed(overrides):
        key, _, text = line.partition("=")
        for secret in sorted(secrets, key=len, reverse=True):
            name = names.setdefault(secret, f"{ENV_PREFIX}{len(names)}")
            text = text.replace(secret, "${oc.env:%s}" % name)
        rewritten = f"{key}={text}"
        result.append(rewritten if rewritten == line or _same(rewritten, value, names) else line)
    used = {name: secret for secret, name in names.items() if any(name in line for line in result)}
    return result, used


def _parsed(overrides: Sequence[str]) -> list[tuple[str, Any, set[str]]]:
    """(override, its parsed value, the literal secrets in it) for each override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - composing the overrides reports the parse error
        return [(line, None, set()) for line in overrides]
    return [(o.input_line, _value(o), set() if o.is_delete() else secret_values({o.key_or_group: _value(o)}))
            for o in parsed]


def _value(override: Any) -> Any:
    value = override.value()
    return getattr(value, "list", value)  # a choice sweep: its choices


def _same(line: str, value: Any, names: dict[str, str]) -> bool:
    """Whether `line` parses to `value` once its references are replaced by their secrets."""
    (_, rewritten, _), = _parsed([line])
    return _resolved(rewritten, {"${oc.env:%s}" % name: secret for secret, name in names.items()}) == value


def _resolved(value: Any, references: dict[str, str]) -> Any:
    if isinstance(value, str):
        for reference, secret in references.items():
            value = value.replace(reference, secret)
        return value
    if isinstance(value, dict):
        return {key: _resolved(item, references) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, references) for item in value]
    return value
