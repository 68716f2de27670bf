"""Keep secrets out of what the project prints and saves: the one policy, used by every channel.

A config or data key names a secret when, in its last dotted part split into words
(``WANDB_API_KEY``, ``apiKey`` and ``api-key`` all give ``api key``):

* a word contains ``password``, ``passwd``, ``passphrase``, ``secret`` or ``credential``;
* or the last word is ``token`` (``token``, ``access_token``, ``HF_TOKEN``), unless it names a
  tokenizer's special token (``pad_token``, ``eos_token``...), or ends in ``token``
  (``authtoken``); ``num_tokens``, ``max_tokens``, ``token_in_epoch``, ``tokenizer`` are not;
* or the last word is ``key`` alone (s3fs's ``key``) or after a credential word (``api_key``,
  ``private_key``, ``aws_secret_access_key``; ``sort_key``, ``primary_key`` are not), or is
  ``apikey``, ``privatekey``...; or the last word is ``authorization`` (a header).

A value under such a key is masked unless it is a reference (``${oc.env:WANDB_API_KEY}``),
resolved only where it is used. A URL's password (``https://user:PASSWORD@host``) and a secret
query parameter (``?api_key=...``) are masked wherever they appear, and so is every value
`remember` was given (a secret the running command found in its config) in any text.

>>> redact({"storage": {"aws_secret_access_key": "abc", "region": "eu"}, "uri": "http://u:pw@host/x"})
{'storage': {'aws_secret_access_key': '***', 'region': 'eu'}, 'uri': 'http://u:***@host/x'}
>>> redact_override("logger.destinations.mlflow.tags={api_token: abc, team: ml}")
'logger.destinations.mlflow.tags={api_token: ***, team: ml}'
>>> redact({"api_key": "${oc.env:WANDB_API_KEY}", "max_tokens": 512})
{'api_key': '${oc.env:WANDB_API_KEY}', 'max_tokens': 512}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

MASK = "***"
#: Shorter values are masked by key and pattern only, never by value wherever they appear
#: (masking a 3-letter string in every line would garble the output).
MIN_REMEMBERED = 6

_ANY_WORD = ("password", "passwd", "passphrase", "secret", "credential")
_CREDENTIAL_KEYS = frozenset({
    "api", "access", "secret", "private", "auth", "client", "account", "signing", "encryption", "master",
    "session", "ssh", "service", "license", "subscription", "storage", "shared", "sas", "deploy", "consumer",
    "app", "admin", "bot", "pgp", "gpg",
})
_SPECIAL_TOKENS = frozenset({"pad", "bos", "eos", "cls", "sep", "unk", "mask", "start", "end", "special"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]+:)(?P<value>[^@/\s'\"]+)@")
_QUERY = re.compile(r"(?P<head>[?&](?P<key>[^=&\s'\"]+)=)(?P<value>[^&\s'\"]+)")
# ``key: value`` or ``key=value`` inside an override's value (``{api_token: abc, team: ml}``).
_PAIR = re.compile(r"(?P<head>(?P<key>[\w.-]+)['\"]?\s*[:=]\s*)"
                   r"(?P<value>'[^']*'|\"[^\"]*\"|\$\{[^}]*\}|[^,}\]\s'\"]+)")
_ASSIGNMENT = re.compile(r"^(?P<head>[+~]*(?P<key>[^=\s]+)=)(?P<value>.+)$", re.S)
_remembered: tuple[str, ...] = ()  # longest first


def is_secret_key(key: object) -> bool:
    """Whether a config or data key names a secret (see the module's docstring)."""
    return _names_secret(key if type(key) is str else str(key))


@functools.lru_cache(maxsize=4096)
def _names_secret(key: str) -> bool:
    name = re.split(r"[./]", key)[-1]
    lowered = name.lower()
    if any(word in lowered for word in _ANY_WORD):
        return True
    words = [word.lower() for word in _WORDS.findall(name)]
    if not words:
        return False
    last, before = words[-1], (words[-2] if len(words) > 1 else None)
    if last == "authorization":
        return True
    if last.endswith("token"):
        qualifier = before if last == "token" else last[: -len("token")]
        return qualifier not in _SPECIAL_TOKENS
    if last.endswith("key"):
        qualifier = before if last == "key" else last[: -len("key")]
        return (qualifier is None and last == "key") or qualifier in _CREDENTIAL_KEYS
    return False


def is_reference(value: object) -> bool:
    """Whether `value` is an interpolation (``${oc.env:NAME}``): it names a secret, it holds none."""
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def remember(values: Iterable[str]) -> None:
    """Mask each of `values` (of `MIN_REMEMBERED` characters or more) in every text from now on."""
    global _remembered
    new = {value for value in values if len(value) >= MIN_REMEMBERED and value != MASK} - set(_remembered)
    if new:
        _remembered = tuple(sorted({*_remembered, *new}, key=len, reverse=True))


def secret_values(value: Any) -> set[str]:
    """The secrets a plain container holds: values under secret keys (not references), URL passwords."""
    return set(_secret_values(value, False))


def _secret_values(value: Any, under_secret_key: bool) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secret_values(item, under_secret_key or is_secret_key(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secret_values(item, under_secret_key)
    elif isinstance(value, str):
        if under_secret_key and not is_reference(value):
            yield value
        yield from (match.group("value") for match in _URL_PASSWORD.finditer(value)
                    if not is_reference(match.group("value")))
    elif under_secret_key and value is not None:
        yield str(value)


def redact_text(text: str) -> str:
    """`text` with remembered secrets, URL passwords and secret query parameters masked."""
    for value in _remembered:
        if value in text:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(_masked_unless_reference, text)
    if "=" in text:
        text = _QUERY.sub(_masked_if_secret, text)
    return text


def redact_override(override: str) -> str:
    """A command-line override (``a.b.api_key=xyz``, ``a.tags={api_token: xyz}``) with secrets masked."""
    match = _ASSIGNMENT.match(override)
    if match and is_secret_key(match.group("key")) and not is_reference(match.group("value")):
        return match.group("head") + MASK
    if match:
        override = match.group("head") + _PAIR.sub(_masked_if_secret, match.group("value"))
    return redact_text(override)


def redact(value: Any) -> Any:
    """`value` with secrets masked: plain containers copied (keys kept, secret values masked),
    strings read as overrides or text. Returns `value` itself when nothing in it is secret."""
    if isinstance(value, Mapping):
        masked = {key: MASK if _masks(key, item) else redact(item) for key, item in value.items()}
        return value if all(masked[key] is item for key, item in value.items()) else masked
    if isinstance(value, (list, tuple)):
        items = [redact(item) for item in value]
        return value if all(new is old for new, old in zip(items, value)) else type(value)(items)
    if isinstance(value, str):
        masked_text = redact_override(value)
        return value if masked_text == value else masked_text
    return value


def redact_exception(error: BaseException) -> None:
    """Mask, in place, the text arguments and notes of `error` (what its message and a pickle of
    it hold: a launcher saves a failed job's exception to disk)."""
    error.args = tuple(redact_text(arg) if isinstance(arg, str) else arg for arg in error.args)
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [redact_text(note) if isinstance(note, str) else note for note in notes]


def _masks(key: object, value: Any) -> bool:
    return value is not None and value != MASK and not is_reference(value) and is_secret_key(key)


def _masked_unless_reference(match: re.Match[str]) -> str:
    return match.group(0) if is_reference(match.group("value")) else match.group("head") + MASK + "@"


def _masked_if_secret(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[0] in "'\"" else ""
    if is_secret_key(match.group("key")) and not is_reference(value.strip(quote)):
        return f"{match.group('head')}{quote}{MASK}{quote}"
    return match.group(0)
