"""`scripted://`: an in-memory fsspec store whose uploads a test can hold, slow, fail and watch.

Composer's own object-store tests used a dummy store sleeping a random time per upload; this is
fsspec's real memory file system with those hooks, shared by the object-store tests.
"""

import threading
from collections import Counter, defaultdict
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem


class ScriptedFileSystem(MemoryFileSystem):
    """memory://, under the protocol "scripted", whose uploads a test can steer and watch.

    Every `put_file` records the bytes it uploads (`uploads`, per object name, failed attempts
    included) and how many uploads of each name, and in all, run at once. `before_put(name, data)`,
    if set, runs at the start of each upload (to hold it, slow it or line it up with others);
    then the next of `errors`, if any, is raised instead of uploading.
    """

    protocol = "scripted"
    lock = threading.Lock()
    uploads: dict = defaultdict(list)
    active: Counter = Counter()
    most_active: Counter = Counter()
    most_in_flight = 0
    errors: list = []
    before_put = None

    @classmethod
    def reset(cls):
        cls.uploads, cls.active, cls.most_active, cls.most_in_flight = defaultdict(list), Counter(), Counter(), 0
        cls.errors, cls.before_put = [], None
        MemoryFileSystem.store.clear()

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace("scripted://", "memory://", 1))

    def put_file(self, lpath, rpath, *args, **kwargs):
        cls = ScriptedFileSystem
        data = Path(lpath).read_bytes()
        with cls.lock:
            cls.uploads[rpath].append(data)
            cls.active[rpath] += 1
            cls.most_active[rpath] = max(cls.most_active[rpath], cls.active[rpath])
            cls.most_in_flight = max(cls.most_in_flight, sum(cls.active.values()))
            error = cls.errors.pop(0) if cls.errors else None
        try:
            if cls.before_put is not None:
                cls.before_put(rpath, data)
            if error is not None:
                raise error
            return super().put_file(lpath, rpath, *args, **kwargs)
        finally:
            with cls.lock:
                cls.active[rpath] -= 1


@pytest.fixture
def scripted():
    fsspec.register_implementation("scripted", ScriptedFileSystem, clobber=True)
    ScriptedFileSystem.reset()
    yield ScriptedFileSystem
    ScriptedFileSystem.reset()


def stored(name):
    """The bytes of object `name` in the memory store behind scripted://bucket."""
    return fsspec.filesystem("memory").cat(f"/bucket/{name}")


def hold_upload_of(data):
    """A `before_put` that holds the upload of `data` until released: (hook, started, release)."""
    started, release = threading.Event(), threading.Event()

    def before_put(name, uploading):
        if uploading == data:
            started.set()
            assert release.wait(10), "the held upload was never released"

    return before_put, started, release
