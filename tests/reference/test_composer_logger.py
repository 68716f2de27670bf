"""Composer 0.7.1/0.8.0's ``tests/loggers/test_logger.py``, replayed on composer_cfg.

v0.7.1's ``test_logger_run_name`` (two ranks agree on a generated run name) is replayed, with a
real gloo process group, by ``tests/test_distributed.py::test_a_process_group_broadcasts_rank_zeros_generated_name``:
in composer_cfg, as in Composer 0.8, the run name lives on the `State`.
"""

import pathlib

from composer_cfg import Logger, LoggerDestination, LogLevel, State


def test_logger_file_artifact():
    file_logged = False

    class DummyLoggerDestination(LoggerDestination):
        def log_file_artifact(self, state: State, log_level: LogLevel, artifact_name: str, file_path: pathlib.Path, *,
                              overwrite: bool):
            nonlocal file_logged
            file_logged = True
            assert artifact_name == "foo"
            assert file_path.name == "bar"
            assert overwrite

    logger = Logger(state=State("run"), destinations=[DummyLoggerDestination()])
    logger.file_artifact(log_level="epoch", artifact_name="foo", file_path="bar", overwrite=True)
    assert file_logged
