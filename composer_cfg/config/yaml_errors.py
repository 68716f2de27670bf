"""A config file that is not YAML OmegaConf reads (a syntax error, a tab, a duplicate key, a
``!!python`` tag) as one line naming the file, the line and the column."""

from __future__ import annotations

import re
from typing import Any

from composer_cfg.core.errors import ConfigError


def yaml_error(error: Any) -> ConfigError:
    """`ConfigError` for a `yaml.MarkedYAMLError`, its key the file (``path:line:column``)."""
    mark = error.problem_mark or error.context_mark
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else "config file"
    problem = " ".join(str(error.problem or "").split())
    tag = re.search(r"'tag:yaml\.org,2002:([^']*)'", problem)  # a tag OmegaConf's loader has no constructor for
    if tag is not None:
        reason = (f"the tag !!{tag.group(1)} is not allowed: config files are plain YAML, and OmegaConf builds no Python "
                  f"objects from them (name code with _target_ instead)")
    else:
        context = " ".join(str(error.context or "").split())
        reason = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
        if "'\\t'" in problem:
            reason += "; indent with spaces, not tabs"
    return ConfigError(f"{where}: {reason}", key=where)
