"""What `MLFlowLogger`'s parameters mean, checked by MLflow's own rules: its registry of
tracking stores (the URI schemes the installed MLflow and its plugins accept), its validators
of experiment and tag names, and its limits. MLflow is imported when a value is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from composer_cfg.config.meaning import LocalPath, Meaning
from composer_cfg.config.params import TemplateParam, working_directory
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.templates import DIST_FIELDS, Template, preview

_TEMPLATE = TemplateParam(DIST_FIELDS)


class TrackingURI(Meaning):
    """A template of a tracking URI whose scheme the installed MLflow has a tracking store for
    (``sqlite:///{run_name}/mlflow.db``, ``http://host:5000``, ``databricks``, a plugin's...).
    A SQLite database is a local file the run creates."""

    def check(self, key: str, value: Any, world_size: int = 1) -> Template:
        template = _TEMPLATE.check(key, value, world_size)
        if not value.strip():
            raise ConfigError(f"{key}: expected a tracking URI, such as 'sqlite:///{{run_name}}/mlflow.db' or "
                              f"'http://host:5000', got {value!r}", key=key)
        from mlflow.exceptions import MlflowException

        try:
            from mlflow.tracking._tracking_service.utils import _tracking_store_registry  # the stores MLflow has
        except ImportError:  # moved in another MLflow: the store says so when the run starts
            return template
        try:
            _tracking_store_registry.get_store_builder(template.fill(DIST_FIELDS))
        except MlflowException as error:
            schemes = [scheme for scheme in getattr(error, "supported_uri_schemes", []) if scheme]
            known = f"; it knows {', '.join(schemes)} (and plain paths)" if schemes else f": {first_sentence(error)}"
            raise ConfigError(f"{key}: MLflow has no tracking store for {preview(value)}{known}", key=key) from None
        return template

    def local_path(self, value: Any, fields: Mapping[str, Any]) -> LocalPath | None:
        database = sqlite_path(Template(value, DIST_FIELDS).fill({**DIST_FIELDS, **fields}))
        return None if database is None else LocalPath(working_directory() / database, directory=False)


class ExperimentName(Meaning):
    """An MLflow experiment's name: not blank, within MLflow's length limit."""

    def check(self, key: str, value: Any, world_size: int = 1) -> str:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.validation import _validate_experiment_name

        if not value.strip():
            raise ConfigError(f"{key}: expected the name of an MLflow experiment, got {value!r}", key=key)
        try:
            _validate_experiment_name(value)
        except MlflowException as error:
            raise ConfigError(f"{key}: MLflow refuses {preview(value)}: {first_sentence(error)}", key=key) from None
        return value


class RunTags(Meaning):
    """Tags of an MLflow run: names MLflow accepts, within its length limits (a value over its
    limit is an error only if MLflow would not truncate it: ``MLFLOW_TRUNCATE_LONG_VALUES``)."""

    def check(self, key: str, value: Any, world_size: int = 1) -> Mapping[str, str]:
        from mlflow.environment_variables import MLFLOW_TRUNCATE_LONG_VALUES
        from mlflow.exceptions import MlflowException
        from mlflow.utils.validation import (
            MAX_ENTITY_KEY_LENGTH,
            MAX_TAG_VAL_LENGTH,
            _validate_length_limit,
            _validate_tag_name,
        )

        for name, text in value.items():
            try:
                _validate_tag_name(name)
                _validate_length_limit("tag name", MAX_ENTITY_KEY_LENGTH, name)
                if not MLFLOW_TRUNCATE_LONG_VALUES.get():
                    _validate_length_limit("tag value", MAX_TAG_VAL_LENGTH, text)
            except MlflowException as error:
                raise ConfigError(f"{key}.{name}: MLflow refuses this tag: {first_sentence(error)}",
                                  key=f"{key}.{name}") from None
        return value


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory, or absolute)."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def first_sentence(error: Exception) -> str:
    """The first sentence of an MLflow error's message."""
    return str(getattr(error, "message", error)).split(". ")[0].rstrip(".")
