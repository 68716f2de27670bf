"""Safe `{field}` templates for file, artifact and object names.

One formatter fills every template in the project. A template is checked once, when it is
built: unknown fields (with the closest valid one suggested), positional ``{}``, attribute or
index access (``{rank.__class__}``, ``{x[0]}``), bad format specs, widths and precisions above
`NAME_MAX` and templates longer than `PATH_MAX` raise `ConfigError`; so does a filled name too
long for a file system. Format specs are allowed:

>>> Template("{run_name}/ep{epoch:03d}-rank{rank}.npz", TIME_FIELDS).fill(
...     dict(run_name="r", epoch=7, rank=1))
'r/ep007-rank1.npz'
"""

from __future__ import annotations

import difflib
import os
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

from composer_cfg.core import dist
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.formatting import has_control_character
from composer_cfg.core.timestamp import COUNTERS, DURATIONS, Timestamp

#: Fields every template may use, with a sample value of the type they are filled with.
DIST_FIELDS: dict[str, Any] = {
    "run_name": "run",
    "rank": 0,
    "local_rank": 0,
    "world_size": 1,
    "local_world_size": 1,
    "node_rank": 0,
}
#: The dist fields plus the fields of a known timestamp.
TIME_FIELDS: dict[str, Any] = {**DIST_FIELDS, **dict.fromkeys(COUNTERS, 0), **dict.fromkeys(DURATIONS, 0.0)}

#: What each field holds (the tables below).
FIELD_DESCRIPTIONS: dict[str, str] = {
    "run_name": "The name of the training run (State.run_name).",
    "rank": "The global rank of this process.",
    "local_rank": "The rank of this process on its node.",
    "world_size": "The number of processes in the run.",
    "local_world_size": "The number of processes on this node.",
    "node_rank": "The rank of this node.",
    "epoch": "The epoch count (Timestamp.epoch).",
    "batch": "The batch count, all epochs (Timestamp.batch).",
    "batch_in_epoch": "The batch count in this epoch (Timestamp.batch_in_epoch).",
    "sample": "The sample count, all epochs (Timestamp.sample).",
    "sample_in_epoch": "The sample count in this epoch (Timestamp.sample_in_epoch).",
    "token": "The token count, all epochs (Timestamp.token).",
    "token_in_epoch": "The token count in this epoch (Timestamp.token_in_epoch).",
    "total_wct": "The run's wall-clock time, in seconds (Timestamp.total_wct).",
    "epoch_wct": "This epoch's wall-clock time, in seconds (Timestamp.epoch_wct).",
    "batch_wct": "The last batch's wall-clock time, in seconds (Timestamp.batch_wct).",
}


def _field_table(names: Iterable[str]) -> str:
    """An RST grid table of `names` and their descriptions, as Composer's docs show them."""
    rows = [("Variable", "Description")] + [(f"``{{{name}}}``", FIELD_DESCRIPTIONS[name]) for name in names]
    widths = [max(len(row[column]) for row in rows) + 2 for column in (0, 1)]

    def rule(fill: str) -> str:
        return "+" + "+".join(fill * width for width in widths) + "+\n"

    lines = [rule("-")]
    for index, row in enumerate(rows):
        lines.append("|" + "|".join(f" {cell:<{width - 1}}" for cell, width in zip(row, widths)) + "|\n")
        lines.append(rule("=" if index == 0 else "-"))
    return "".join(lines)


#: The fields `format_name_with_dist` fills, as an RST table (Composer's name).
FORMAT_NAME_WITH_DIST_TABLE = _field_table(DIST_FIELDS)
#: The fields `format_name_with_dist_and_time` fills, as an RST table (Composer's name).
FORMAT_NAME_WITH_DIST_AND_TIME_TABLE = _field_table(TIME_FIELDS)

#: The longest file name and path, in bytes (Linux's NAME_MAX and PATH_MAX): the bounds of a
#: filled name, of a format width or precision, and of a template.
NAME_MAX = 255
PATH_MAX = 4096
PREVIEW = 50  # characters of a long value an error message shows

_PARSER = string.Formatter()


class Template:
    """A validated format string; `fields` is the set of field names it uses."""

    __slots__ = ("text", "fields", "key")

    def __init__(self, text: str, allowed: Mapping[str, Any] | Iterable[str], *, key: str | None = None) -> None:
        samples = allowed if isinstance(allowed, Mapping) else dict.fromkeys(allowed, "x")
        where = f"{key}: " if key else ""
        if not isinstance(text, str):
            raise ConfigError(f"{where}template must be a string, got {text!r}", key=key)
        if len(text) > PATH_MAX:
            raise ConfigError(f"{where}template {preview(text)} is {len(text):,} characters long, "
                              f"more than a path may have ({PATH_MAX:,} bytes)", key=key)
        self.text = text
        self.key = key
        self.fields = frozenset(_check_fields(text, samples, where, key))
        try:
            text.format_map({name: samples[name] for name in self.fields})
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}bad format spec in template {text!r}: {err}", key=key) from None

    def fill(self, values: Mapping[str, Any]) -> str:
        """The template with its fields replaced by `values` (which may hold more fields);
        `ConfigError` if the name is too long for a file system (see `check_name_length`)."""
        return check_name_length(self.text.format_map(values), key=self.key, template=self.text)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _check_fields(text: str, samples: Mapping[str, Any], where: str, key: str | None) -> set[str]:
    try:
        parts = list(_PARSER.parse(text))
    except ValueError as err:
        raise ConfigError(f"{where}malformed template {text!r}: {err} (write a literal brace as {{{{ or }}}})",
                          key=key) from None
    names: set[str] = set()
    for _literal, name, spec, _conversion in parts:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ConfigError(f"{where}positional field {{{name}}} in template {text!r}: name a field, e.g. {{rank}}",
                              key=key)
        if not name.isidentifier():
            raise ConfigError(
                f"{where}field {{{name}}} in template {text!r} uses attribute or index access, "
                f"which is not allowed: use a plain field name", key=key
            )
        if name not in samples:
            raise ConfigError(f"{where}unknown field {{{name}}} in template {text!r}{_suggest(name, samples)}", key=key)
        if spec and "{" in spec:
            raise ConfigError(f"{where}nested field in the format spec of {{{name}}} in template {text!r}", key=key)
        for number in re.findall(r"\d+", spec or ""):  # a width, a precision (or a digit as fill)
            digits = number.lstrip("0")
            if len(digits) > len(str(NAME_MAX)) or int(digits or 0) > NAME_MAX:
                shown = number if len(number) <= PREVIEW else f"{number[:PREVIEW]}…"
                raise ConfigError(f"{where}format width or precision {shown} in template {preview(text)} "
                                  f"is above {NAME_MAX}, the longest a file name may be", key=key)
        names.add(name)
    return names


def check_name_length(name: str, *, key: str | None = None, template: str | None = None) -> str:
    """`name` if it fits a file system: at most `PATH_MAX` bytes (UTF-8), each ``/``-separated
    part at most `NAME_MAX`; else `ConfigError` naming `key` and the `template` it was filled from."""
    size = _size(name)
    if size <= NAME_MAX:
        return name
    if size > PATH_MAX:
        too_long = f"{preview(name)} is {size:,} bytes long, more than a path may have ({PATH_MAX:,} bytes)"
    else:
        part = next((part for part in name.replace(os.sep, "/").split("/") if _size(part) > NAME_MAX), None)
        if part is None:
            return name
        too_long = f"{preview(part)} is {_size(part):,} bytes long, more than a file name may have ({NAME_MAX} bytes)"
    where = f"{key}: " if key else ""
    source = f", in the name filled from template {preview(template)}" if template is not None else ""
    raise ConfigError(f"{where}{too_long}{source}", key=key)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def preview(text: str, limit: int = PREVIEW) -> str:
    """`text` quoted, cut after `limit` characters: an error message stays one readable line."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}…"


def _suggest(name: str, samples: Iterable[str]) -> str:
    valid = sorted(samples)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" did you mean {{{close[0]}}}?" if close else ""
    return f":{hint} valid fields: {', '.join(valid)}"


def literal(text: str) -> str:
    """`text` as a template that fills to itself (braces doubled): for paths that are not templates."""
    return text.replace("{", "{{").replace("}", "}}")


def check_artifact_name(name: str, *, key: str | None = None) -> str:
    """Return `name` if it is a relative, non-escaping artifact name; else raise `ConfigError`."""
    where = f"{key}: " if key else ""
    if not name.strip():
        raise ConfigError(f"{where}artifact name is empty", key=key)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ConfigError(f"{where}artifact name {name!r} is absolute; artifact names are relative, like 'run/logs.txt'",
                          key=key)
    if ".." in name.replace("\\", "/").split("/"):
        raise ConfigError(f"{where}artifact name {name!r} climbs out of the artifact root with '..'", key=key)
    if has_control_character(name):
        raise ConfigError(f"{where}artifact name {name!r} contains a control character", key=key)
    return name


def default_artifact_name(path: str) -> str:
    """The artifact name of a local file published under its own path: ``/`` separators, no
    leading ``/``, ``.`` or ``..`` parts."""
    parts = path.replace(os.path.sep, "/").split("/")
    while parts and parts[0] in ("", ".", ".."):
        parts.pop(0)
    return "/".join(parts)


def format_name_with_dist(format_str: str, run_name: str, **extra_format_kwargs: Any) -> str:
    """Fill `format_str` with `run_name`, this process's rank facts and `extra_format_kwargs`.

    >>> format_name_with_dist("{run_name}/rank{rank}.{extension}", "awesome_training_run", extension="json")
    'awesome_training_run/rank0.json'
    """
    values = _merge({"run_name": run_name, **dist.current().template_fields()}, extra_format_kwargs)
    return Template(format_str, values).fill(values)


def format_name_with_dist_and_time(
    format_str: str, run_name: str, timestamp: Timestamp, **extra_format_kwargs: Any
) -> str:
    """Like `format_name_with_dist`, plus the timestamp's fields (durations in seconds).

    >>> format_name_with_dist_and_time("{run_name}/ep{epoch}-ba{batch}", "r", Timestamp(epoch=2, batch=9))
    'r/ep2-ba9'
    """
    base = {"run_name": run_name, **dist.current().template_fields(), **timestamp.template_fields()}
    values = _merge(base, extra_format_kwargs)
    return Template(format_str, values).fill(values)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    clash = sorted(set(base) & set(extra))
    if clash:
        raise TypeError(f"extra template fields {clash} would replace built-in fields of the same name")
    return {**base, **extra}
