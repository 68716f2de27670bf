"""Close Loggers when the process ends: at interpreter exit and on SIGTERM. Installed on request.

`close_at_exit(logger)` is what `build_logger`, `instantiate_logger` and the ``composer-cfg``
command call; a script that builds its own `Logger` calls it too (or uses ``with logger:``).
The first call installs an exit hook and, from the main thread, a SIGTERM handler (unless the
program ignores SIGTERM or handles it itself: its choice stands). When the last guarded Logger
closes, the handler is removed and the previous one put back; the exit hook does nothing more.

The exit hook runs with the threading module's own exit hooks, before `concurrent.futures` stops
its executors: a final upload that needs one (s3fs does) still works.

On SIGTERM the handler raises `Killed` in the main thread: the stack unwinds, releasing any lock
a destination held when the signal landed, and ``with logger:`` (or, at the top, the exit hook)
closes every guarded Logger with status KILLED; then the process dies of SIGTERM, as its exit
status says. Closing then waits for back ends no later than `termination_deadline`, `SIGTERM_GRACE`
seconds after the signal. A watchdog
thread, woken at once even while the main thread is stuck in a native call (through the
signal wake-up file descriptor, when the program does not use it itself), closes the Loggers
itself if none has started closing a second later, and ends the process after the grace period
whatever happens (exit status 143 when it must end the process from a thread). A SIGTERM that
lands while a Logger is closing lets that close finish first.

>>> from composer_cfg import Logger, State
>>> logger = close_at_exit(Logger(State("docs")))
>>> logger.close()   # closing forgets it
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered before ours runs
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from composer_cfg.core.status import Killed, RunStatus
from composer_cfg.runtime.deadline import Deadline

if TYPE_CHECKING:
    from composer_cfg.core.logger import Logger

#: Seconds a SIGTERM leaves the Loggers to close before the process ends regardless (SLURM and
#: Kubernetes send SIGKILL 30 s after SIGTERM by default).
SIGTERM_GRACE = 20.0

_lock = threading.RLock()
_guarded: dict[int, Logger] = {}
_exit_hook_registered = False
_handler_installed = False
_wakeup: tuple[int, int] | None = None  # the signal wake-up pipe (read end, write end), ours
_closing = 0  # Loggers closing right now, in any thread
_terminating = False
_terminated = False
_watchdog_started = False
_last_value_before: Any = None  # sys.last_value when guarding began: not this program's ending
_deadline = Deadline.never()  # set when a SIGTERM arrives: closing must be done by then


def close_at_exit(logger: Logger) -> Logger:
    """Close `logger` at interpreter exit and on SIGTERM, unless it is closed before; return it."""
    global _exit_hook_registered, _last_value_before
    with _lock:
        if not _guarded:
            _last_value_before = getattr(sys, "last_value", None)
            if not _exit_hook_registered:
                _register_exit_hook(_close_all_at_exit)
                _exit_hook_registered = True
            _install_sigterm_handler()
        _guarded[id(logger)] = logger
    return logger


def forget(logger: Logger) -> None:
    """`logger` has closed: stop guarding it, and remove the handler once no Logger is left.

    After a SIGTERM, the last Logger to close ends the process instead.
    """
    with _lock:
        if _guarded.pop(id(logger), None) is None:
            return
        last = not _guarded
        if last and not _terminating:
            _restore_sigterm_handler()
    if _terminating:
        _terminate() if last else _close_all(RunStatus.KILLED)


def guarded() -> list[Logger]:
    """The Loggers that will be closed when the process ends."""
    with _lock:
        return list(_guarded.values())


def terminating() -> bool:
    """Whether a SIGTERM is ending the process."""
    return _terminating


def termination_deadline() -> Deadline:
    """By when closing must be done: 90% of `SIGTERM_GRACE` after a SIGTERM; never otherwise."""
    return _deadline


def forget_in_child() -> None:
    """In a forked child: guard nothing of the parent's, leave SIGTERM to its default, and let go of
    the parent's signal pipe (its reader thread is the parent's); then work as in a fresh process."""
    global _lock, _handler_installed, _wakeup, _closing
    _lock = threading.RLock()  # another thread of the parent may have held it at the fork
    _guarded.clear()
    _closing = 0
    if _handler_installed and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _handler_installed = False
    if _wakeup is not None:
        read_end, write_end = _wakeup
        _wakeup = None
        current = signal.set_wakeup_fd(-1)
        if current != write_end:  # the program's own since: leave it in place
            signal.set_wakeup_fd(current)
        for descriptor in (read_end, write_end):
            with contextlib.suppress(OSError):
                os.close(descriptor)


@contextlib.contextmanager
def closing() -> Iterator[None]:
    """Wraps a Logger's close: a SIGTERM meanwhile waits for it instead of interrupting it."""
    global _closing
    with _lock:
        _closing += 1
    try:
        yield
    finally:
        with _lock:
            _closing -= 1


def _register_exit_hook(hook: Any) -> None:
    """Run `hook` at interpreter exit, before `concurrent.futures` shuts its executors down (the
    threading module's exit hooks run before `atexit`'s, most recent first); `atexit` where the
    interpreter has no such hook."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(hook)
    else:
        register(hook)


def _close_all(status: RunStatus) -> None:
    for logger in guarded():
        try:
            logger.close(status)
        except Exception:  # noqa: BLE001 - the process is ending; close said what it could
            pass


def _close_all_at_exit() -> None:
    """At interpreter exit: an exception that ended the program marks the runs FAILED, a SIGTERM
    KILLED (``sys.exit(n)`` outside ``with logger:`` can not be seen here: FINISHED)."""
    ending = getattr(sys, "last_value", None)
    if ending is _last_value_before or _interactive():
        ending = None  # an error shown in an interactive session did not end the program
    _close_all(RunStatus.KILLED if _terminating else RunStatus.of(ending))


def _interactive() -> bool:
    """A REPL, ``python -i``, IPython or Jupyter: errors shown there do not end the program."""
    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or "IPython" in sys.modules


def _install_sigterm_handler() -> None:
    global _handler_installed
    if _handler_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:  # ignored or handled by the program: its choice
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    _handler_installed = True
    _watch_wakeup_fd()


def _restore_sigterm_handler() -> None:
    global _handler_installed
    if not _handler_installed or threading.current_thread() is not threading.main_thread():
        return  # a handler left installed with nothing to guard just ends the process
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _handler_installed = False
    _unwatch_wakeup_fd()


def _watch_wakeup_fd() -> None:
    """Learn of a SIGTERM at once, even while the main thread is stuck in a native call (a Python
    handler only runs when it comes back): the C-level handler writes the signal's number to
    the wake-up descriptor, which a thread reads. Skipped when the program uses it (asyncio)."""
    global _wakeup
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    if previous != -1:  # someone else's: put it back
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
        return
    _wakeup = (read_end, write_end)
    threading.Thread(target=_read_wakeups, args=(read_end,), name="composer_cfg-signals", daemon=True).start()


def _unwatch_wakeup_fd() -> None:
    global _wakeup
    if _wakeup is None:
        return
    read_end, write_end = _wakeup
    _wakeup = None
    current = signal.set_wakeup_fd(-1)
    if current != write_end:  # the program installed its own since: leave it in place
        signal.set_wakeup_fd(current)
    os.close(write_end)  # the reader sees the end of the pipe and stops; it closes its end


def _read_wakeups(read_end: int) -> None:
    try:
        while True:
            received = os.read(read_end, 64)
            if not received:
                return
            if signal.SIGTERM in received:
                _sigterm_received()
    finally:
        os.close(read_end)


def _sigterm_received() -> None:
    """Whoever learns of the SIGTERM first (the wake-up reader or the handler) starts the clock."""
    global _terminating, _watchdog_started, _deadline
    with _lock:
        _terminating = True
        if _watchdog_started:
            return
        _watchdog_started = True
        _deadline = Deadline.after(SIGTERM_GRACE * 0.9)  # every wait for a back end fits
    threading.Thread(target=_watch, name="composer_cfg-sigterm", daemon=True).start()


def _on_sigterm(signum: int, frame: Any) -> None:
    _sigterm_received()
    # From here a second SIGTERM ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not guarded():
        _terminate()
    elif not _closing:
        # Closing right here could wait for a lock the interrupted frame holds: unwind it first.
        raise Killed()
    # else: this signal interrupted a close, which finishes first; its `forget` carries on


def _watch() -> None:
    """Close from this thread if no Logger has started closing within a second (the main thread is
    stuck, or swallowed `Killed`); end the process after the grace period whatever happens."""
    deadline = time.monotonic() + SIGTERM_GRACE
    time.sleep(min(1.0, SIGTERM_GRACE / 2))
    if not _closing:
        _close_all(RunStatus.KILLED)  # the last one to close calls _terminate
    while (_closing or guarded()) and time.monotonic() < deadline:  # nothing left to wait for: end now
        time.sleep(0.05)
    _die()


def _terminate() -> None:
    """After closing on SIGTERM: the process dies of it."""
    global _terminated
    with _lock:
        if _terminated:
            return
        _terminated = True
    _die()


def _die() -> None:
    """End the process with SIGTERM's default action, so the exit status says SIGTERM."""
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        if threading.current_thread() is not threading.main_thread():
            os._exit(128 + signal.SIGTERM)  # our handler can only be replaced from the main thread
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
