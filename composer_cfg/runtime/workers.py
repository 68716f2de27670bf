"""Worker threads: every thread composer_cfg starts, but the SIGTERM watchdog's, starts here.

Each is a daemon (one stuck in a call to a back end that never answers never keeps the process
from exiting) named ``composer_cfg-<name>``, so a thread dump says whose it is.

>>> run_bounded("adding", lambda: 1 + 1, timeout=5)
2
"""

from __future__ import annotations

import threading
from typing import Any, Callable


def start(name: str, target: Callable[[], None]) -> threading.Thread:
    """Start `target` on a daemon thread named after `name`."""
    thread = threading.Thread(target=target, name=f"composer_cfg-{name}", daemon=True)
    thread.start()
    return thread


def run_bounded(what: str, call: Callable[[], Any], timeout: float | None) -> Any:
    """`call()`'s result, waiting at most `timeout` seconds (its own thread keeps a call that never
    returns); `TimeoutError` naming `what` after that."""
    done = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # noqa: BLE001 - raised on the caller's thread
            outcome.append((False, error))
        finally:
            done.set()

    start(what.split()[0], run)
    if not done.wait(timeout):
        raise TimeoutError(f"{what} did not finish within {timeout:.3g} s (the back end did not answer)")
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value
