"""Close Loggers when the process ends: at interpreter exit and on SIGTERM. Installed on request.

`close_at_exit(logger)` is what `build_logger`, `instantiate_logger` and the ``composer-cfg``
command call; a script that builds its own `Logger` calls it too (or uses ``with logger:``).
The first call installs an `atexit` hook and, from the main thread, a SIGTERM handler (unless
the program ignores SIGTERM or handles it with a handler of its own, which are left alone); when
the last guarded Logger closes, both are removed and the previous SIGTERM handler is put back.

On SIGTERM the handler raises `Killed` in the main thread: the stack unwinds, releasing any lock
a destination held when the signal landed, and ``with logger:`` (or, at the top, the atexit
hook) closes every guarded Logger with status KILLED; then the previous handler runs (the
default one ends the process, whose exit status still says SIGTERM). If no Logger has started
closing a second later (the main thread is stuck in a call, or swallowed the exception), a
watchdog thread closes them. Closing is bounded: after `SIGTERM_GRACE` seconds, or at a second
SIGTERM, the process ends anyway. A SIGTERM that lands while a Logger is already closing lets
that close finish first.

>>> from composer_cfg import Logger, State
>>> logger = close_at_exit(Logger(State("docs")))
>>> logger.close()   # closing forgets it; nothing stays installed
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from composer_cfg.status import Killed, RunStatus

if TYPE_CHECKING:
    from composer_cfg.logger import Logger

#: Seconds a SIGTERM leaves the Loggers to close before the process ends regardless (SLURM and
#: Kubernetes send SIGKILL 30 s after SIGTERM by default).
SIGTERM_GRACE = 20.0

_lock = threading.RLock()
_guarded: dict[int, Logger] = {}
_handler_installed = False
_terminating = False
_terminated = False


def close_at_exit(logger: Logger) -> Logger:
    """Close `logger` at interpreter exit and on SIGTERM, unless it is closed before; return it."""
    with _lock:
        if not _guarded:
            atexit.register(_close_all_at_exit)
            _install_sigterm_handler()
        _guarded[id(logger)] = logger
    return logger


def forget(logger: Logger) -> None:
    """`logger` has closed: stop guarding it, and undo the hooks once no Logger is left.

    After a SIGTERM, the last Logger to close ends the process instead.
    """
    with _lock:
        if _guarded.pop(id(logger), None) is None:
            return
        last = not _guarded
        if last and not _terminating:
            atexit.unregister(_close_all_at_exit)
            _restore_sigterm_handler()
    if _terminating:
        _terminate() if last else _close_all(RunStatus.KILLED)


def guarded() -> list[Logger]:
    """The Loggers that will be closed when the process ends."""
    with _lock:
        return list(_guarded.values())


def _close_all(status: RunStatus) -> None:
    for logger in guarded():
        try:
            logger.close(status)
        except Exception:  # noqa: BLE001 - the process is ending; close reported what it could
            pass


def _close_all_at_exit() -> None:
    """At interpreter exit: an exception that ended the program marks the runs FAILED, a SIGTERM
    KILLED."""
    _close_all(RunStatus.KILLED if _terminating else RunStatus.of(getattr(sys, "last_value", None)))


def _install_sigterm_handler() -> None:
    global _handler_installed
    if _handler_installed or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous != signal.SIG_DFL:  # ignored, or handled by the program itself: its choice stands
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    _handler_installed = True


def _restore_sigterm_handler() -> None:
    global _handler_installed
    if not _handler_installed or threading.current_thread() is not threading.main_thread():
        return  # a handler left installed with nothing to guard just passes the signal on
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _handler_installed = False


def _on_sigterm(signum: int, frame: Any) -> None:
    global _terminating
    _terminating = True
    # From here a second SIGTERM, or the watchdog after the grace period, ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch, name="composer_cfg-sigterm", daemon=True).start()
    loggers = guarded()
    if not loggers:
        _terminate()
    elif not any(logger.closing for logger in loggers):
        # Closing right here could wait for a lock the interrupted frame holds: unwind it first.
        raise Killed()
    # else: this signal interrupted a close, which finishes first; its `forget` carries on


def _watch() -> None:
    """Close from this thread if the main thread has not started within a second; end the
    process after the grace period whatever happens."""
    deadline = time.monotonic() + SIGTERM_GRACE
    time.sleep(min(1.0, SIGTERM_GRACE / 2))
    if not any(logger.closing for logger in guarded()):
        _close_all(RunStatus.KILLED)  # the last one to close calls _terminate
    time.sleep(max(0.0, deadline - time.monotonic()))
    os.kill(os.getpid(), signal.SIGTERM)


def _terminate() -> None:
    """After closing on SIGTERM: the default action, so the process dies of SIGTERM and its exit
    status says so."""
    global _terminated, _handler_installed
    with _lock:
        if _terminated:
            return
        _terminated, _handler_installed = True, False
    os.kill(os.getpid(), signal.SIGTERM)
