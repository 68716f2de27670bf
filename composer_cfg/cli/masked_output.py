"""What a process prints and logs, with secrets masked by `composer_cfg.core.secrets.redact_text`.

`mask_output` wraps ``sys.stdout`` and ``sys.stderr`` (every write is masked) and installs a log
record factory (every record's message and traceback is masked before any handler sees it:
Hydra's console lines and its job log file included, whatever stream a handler kept from
before). The ``composer-cfg`` command installs it for its whole run, and its Hydra callback for
each job, in whatever process a launcher runs the job.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, TextIO

from composer_cfg.core.secrets import redact_text

_TRACEBACKS = logging.Formatter()


class MaskedStream:
    """A text stream whose writes reach `stream` with secrets masked."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact_text(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def mask_output() -> Callable[[], None]:
    """Mask secrets in this process's output from now on; returns what undoes it (a no-op when
    the output was masked already)."""
    undo = [_wrap(name) for name in ("stdout", "stderr") if not isinstance(getattr(sys, name), MaskedStream)]
    make_record = logging.getLogRecordFactory()
    if not getattr(make_record, "masks_secrets", False):
        logging.setLogRecordFactory(_masking(make_record))
        undo.append(lambda: _restore_factory(make_record))

    def unmask() -> None:
        for step in undo:
            step()

    return unmask


def _wrap(name: str) -> Callable[[], None]:
    original = getattr(sys, name)
    masked = MaskedStream(original)
    setattr(sys, name, masked)

    def restore() -> None:
        if getattr(sys, name) is masked:  # replaced since by someone else: theirs stands
            setattr(sys, name, original)

    return restore


def _masking(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def masked(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format: logging reports it when the record is handled
            return record
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:  # cached: every handler formats this text
            record.exc_text = redact_text(_TRACEBACKS.formatException(record.exc_info))
        return record

    masked.masks_secrets = True  # type: ignore[attr-defined]
    return masked


def _restore_factory(make_record: Callable[..., logging.LogRecord]) -> None:
    if getattr(logging.getLogRecordFactory(), "masks_secrets", False):
        logging.setLogRecordFactory(make_record)
