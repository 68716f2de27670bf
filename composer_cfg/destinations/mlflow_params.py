"""What `MLFlowLogger`'s parameters mean, checked by MLflow's own rules: its registry of
tracking stores (the URI schemes the installed MLflow and its plugins accept), its validators
of experiment and tag names, and its limits. MLflow is imported when a value is checked."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse
from typing import Any, Mapping

from composer_cfg.config.meaning import LocalPath, Meaning
from composer_cfg.config.params import TemplateParam, working_directory
from composer_cfg.core.errors import ConfigError
from composer_cfg.core.secrets import redact_text
from composer_cfg.core.templates import DIST_FIELDS, Template, preview
from composer_cfg.runtime import workers

_TEMPLATE = TemplateParam(DIST_FIELDS)
#: Seconds a tracking server's address is given to take a connection when the config is checked.
PROBE_SECONDS = 5.0
#: The port of a URL (or proxy URL) that names none, by scheme.
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080, "socks4": 1080, "socks4a": 1080}


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
        uri = template.fill(DIST_FIELDS)
        try:
            _tracking_store_registry.get_store_builder(uri)
        except MlflowException as error:
            schemes = [scheme for scheme in getattr(error, "supported_uri_schemes", []) if scheme]
            known = f"; it knows {', '.join(schemes)} (and plain paths)" if schemes else f": {first_sentence(error)}"
            raise ConfigError(f"{key}: MLflow has no tracking store for {preview(value)}{known}", key=key) from None
        if not template.fields:  # a template's host is known when the run starts, and checked then
            _probe(key, uri)
        if _file_store(uri) and not _file_store_allowed():
            raise ConfigError(f"{key}: {preview(value)} is a directory, and the installed MLflow keeps runs in one only "
                              f"with MLFLOW_ALLOW_FILE_STORE=true (its file store is in maintenance); use a database "
                              f"such as 'sqlite:///{{run_name}}/mlflow.db' or a server such as 'http://host:5000'",
                              key=key)
        return template

    def local_path(self, value: Any, fields: Mapping[str, Any]) -> LocalPath | None:
        database = sqlite_path(Template(value, DIST_FIELDS).fill({**DIST_FIELDS, **fields}))
        return None if database is None else LocalPath(working_directory() / database, directory=False)


def _probe(key: str, uri: str) -> None:
    """A tracking server (``http(s)://``) that refuses connections, or can not be reached within
    `PROBE_SECONDS`, is a `ConfigError` before anything is created. One that takes connections
    and never answers passes: the Logger's start then times out after the destination's timeout."""
    parts = urlparse(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    proxy = _proxy_for(uri)
    try:
        hop = urlparse(proxy) if proxy else parts  # MLflow's requests connect to the proxy, if one applies
        address = (hop.hostname, hop.port or _DEFAULT_PORTS.get(hop.scheme, 80))
        # the name's lookup is bounded too: a resolver may not answer
        workers.run_bounded(f"probing {hop.hostname}", lambda: socket.create_connection(address, PROBE_SECONDS).close(),
                            PROBE_SECONDS)
    except (OSError, ValueError) as error:
        why = getattr(error, "strerror", None) or str(error) or type(error).__name__
        through = f" through the proxy {redact_text(proxy)}" if proxy else ""
        raise ConfigError(f"{key}: no tracking server takes connections at {redact_text(uri)}{through} ({why.lower()}); "
                          f"start it, or check the address", key=key) from None


def _proxy_for(uri: str) -> str | None:
    """The proxy MLflow's requests take to `uri`: the one the environment names (``HTTPS_PROXY``,
    ``ALL_PROXY``...) unless ``NO_PROXY`` exempts it, read as `requests` reads them."""
    from requests.utils import get_environ_proxies, select_proxy

    proxy = select_proxy(uri, get_environ_proxies(uri))
    return None if proxy is None else proxy if "://" in proxy else f"http://{proxy}"


def _file_store(uri: str) -> bool:
    """Whether MLflow keeps runs of `uri` in a directory (a plain path, ``file:``; not ``databricks``)."""
    from mlflow.utils.uri import is_databricks_uri

    scheme = urlparse(uri).scheme
    return (scheme in ("", "file") or len(scheme) == 1) and not is_databricks_uri(uri)  # (len 1: a Windows drive)


def file_store_path(uri: str) -> Path | None:
    """The directory of a file store's `uri` (a plain path or ``file:``); None for other stores."""
    if not _file_store(uri):
        return None
    parts = urlparse(uri)
    return Path(urllib.request.url2pathname(parts.path) if parts.scheme == "file" else uri)


def _file_store_allowed() -> bool:
    try:
        from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    except ImportError:  # an MLflow from before the file store's maintenance: it opens one
        return True
    try:
        return bool(MLFLOW_ALLOW_FILE_STORE.get())
    except ValueError:  # not a boolean: MLflow refuses it too
        return False


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
