"""Keep secrets out of what the project prints and saves.

A config value is secret when its key contains ``key``, ``token``, ``secret`` or ``password``
(any case), and a URL's password (``https://user:PASSWORD@host``) or a secret-looking query
parameter (``?api_key=...``) is secret wherever it appears.

>>> redact({"storage": {"aws_secret_access_key": "abc", "region": "eu"}, "uri": "http://u:pw@host/x"})
{'storage': {'aws_secret_access_key': '***', 'region': 'eu'}, 'uri': 'http://u:***@host/x'}
>>> redact_override("logger.destinations.mlflow.tags={api_token: abc, team: ml}")
'logger.destinations.mlflow.tags={api_token: ***, team: ml}'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_WORDS = ("key", "token", "secret", "password")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]+:)[^@/\s'\"]+@")
_QUERY_SECRET = re.compile(r"(?P<head>[?&][^=&\s'\"]*(?:key|token|secret|password)[^=&\s'\"]*=)[^&\s'\"]+", re.I)
_PAIR_SECRET = re.compile(r"(?P<head>[\w.-]*(?:key|token|secret|password)[\w.-]*['\"]?\s*:\s*['\"]?)"
                          r"(?!\*\*\*)[^,}\]\s'\"]+", re.I)
_ASSIGNMENT = re.compile(r"^(?P<head>[+~]*(?P<key>[^=\s]+)=)(?P<value>.+)$", re.S)


def is_secret_key(key: object) -> bool:
    """Whether a config key names a secret (its last dotted part contains a secret word)."""
    name = str(key).rsplit(".", 1)[-1].lower()
    return any(word in name for word in SECRET_WORDS)


def redact_text(text: str) -> str:
    """`text` with URL passwords, secret query parameters and ``api_key: value`` pairs masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    text = _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, text)
    return _PAIR_SECRET.sub(lambda m: m.group("head") + MASK, text)


def redact_override(override: str) -> str:
    """A command-line override (``a.b.api_key=xyz``) with a secret value masked."""
    match = _ASSIGNMENT.match(override)
    if match and is_secret_key(match.group("key")):
        return match.group("head") + MASK
    return redact_text(override)


def redact(value: Any) -> Any:
    """A copy of plain containers with secret values masked (keys kept); strings are read as
    overrides or text with URLs."""
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_key(k) and v is not None else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_override(value)
    return value


def redact_words(text: str) -> str:
    """`text` (a log line, a list of overrides) with each secret-looking word masked."""
    return " ".join(redact_override(word) for word in text.split(" "))
