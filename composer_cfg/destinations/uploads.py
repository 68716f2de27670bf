"""`UploadQueue`: background uploads where, per object name, the newest version always wins.

Composer's semantics: for each object name at most one upload is in flight, and of the versions
waiting behind it only the newest is kept (an older one is dropped, its staged copy deleted). So
a slow or retried old version can never land after a newer one, and a log file republished on
every flush costs one upload at a time, not a backlog. Uploads run on daemon threads: one stuck
on a server that never answers does not keep the process from exiting, and `drain` waits at most
the time it is given. At most `policy.queue_size` names wait or upload at once; one more is
waited for or dropped as the policy's `when_full` says (`composer_cfg.delivery.Admission`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from composer_cfg.delivery import Admission, DeliveryPolicy

Upload = Callable[[Path, str, bool], None]


class UploadQueue:
    """Runs ``upload(staged_file, object_name, overwrite)`` on up to `workers` daemon threads."""

    def __init__(self, upload: Upload, workers: int, name: str = "upload", policy: DeliveryPolicy = DeliveryPolicy()
                 ) -> None:
        self._upload = upload
        self._workers = workers
        self._name = name
        self._cond = threading.Condition()
        self._admission = Admission(policy, self._cond)
        self._uploaded = 0
        self._peak = 0
        self.dropped: list[str] = []  # names refused because the queue was full
        self._waiting: dict[str, tuple[Path, bool]] = {}  # object name -> newest version not started
        self._running: set[str] = set()
        self._threads = 0
        self._stopping = False
        self.failures: list[Exception] = []

    def submit(self, target: str, staged: Path, overwrite: bool) -> bool:
        """Queue `staged` for `target`, replacing a waiting older version of it; False when the
        queue is full and the policy let it go (counted in `dropped`; the staged file is the
        caller's).

        ``overwrite=False`` for a name already waiting or uploading is refused here, at once,
        with `FileExistsError` (the two versions could only clobber each other).
        """
        with self._cond:
            if self._stopping:
                raise RuntimeError(f"the {self._name} queue is closed: no more uploads")
            if not overwrite and (target in self._waiting or target in self._running):
                raise FileExistsError(f"{target} is already being uploaded and overwrite is False")
            if target not in self._waiting and not self._admission.admit(self._size):
                self.dropped.append(target)
                return False
            superseded = self._waiting.get(target)
            self._waiting[target] = (staged, overwrite)  # an existing name keeps its place in line
            if self._threads < min(self._workers, len(self._waiting) + len(self._running)):
                self._threads += 1
                threading.Thread(target=self._work, name=f"composer_cfg-{self._name}", daemon=True).start()
            self._peak = max(self._peak, self._size())
            self._cond.notify()
        if superseded is not None:
            superseded[0].unlink(missing_ok=True)
        return True

    def _size(self) -> int:
        return len(self._waiting) + len(self._running)

    def report(self) -> dict[str, Any]:
        """``queued`` (waiting or uploading), ``peak_queued``, ``uploaded``, ``failed``, ``dropped``,
        and the logging threads' ``waits`` for room and ``blocked_seconds``."""
        with self._cond:
            return {"queued": self._size(), "peak_queued": self._peak, "uploaded": self._uploaded,
                    "failed": len(self.failures), "dropped": len(self.dropped), "waits": self._admission.waits,
                    "blocked_seconds": self._admission.blocked_seconds}

    @property
    def stopped(self) -> bool:
        """True once `stop` was called."""
        return self._stopping

    def pending(self) -> list[str]:
        """Object names waiting or uploading."""
        with self._cond:
            return sorted({*self._waiting, *self._running})

    def drain(self, timeout: float | None) -> list[str]:
        """Wait until every upload so far has finished or `timeout` seconds passed; return the names
        still waiting or uploading (empty when everything finished)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._waiting and not self._running, timeout)
            return sorted({*self._waiting, *self._running})

    def stop(self) -> None:
        """Refuse new uploads; threads end once nothing waits. Staged copies left are the caller's."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                target = self._next()
                while target is None:
                    if self._stopping and not self._waiting:
                        self._threads -= 1
                        return
                    self._cond.wait()
                    target = self._next()
                staged, overwrite = self._waiting.pop(target)
                self._running.add(target)
            try:
                self._upload(staged, target, overwrite)
            except Exception as error:  # noqa: BLE001 - kept for the owner to raise on its thread
                with self._cond:
                    self.failures.append(error)
            else:
                with self._cond:
                    self._uploaded += 1
            finally:
                with self._cond:
                    self._running.discard(target)
                    self._admission.taken()

    def _next(self) -> str | None:
        """The oldest waiting name with no upload in flight."""
        return next((target for target in self._waiting if target not in self._running), None)
