"""A planted secret reaches no file and no stream: every destination, every launcher, a run that
succeeds, one whose training code raises, and a bad config.

Three secrets are planted: one in the user's config file under a secret-named key
(``demo.api_token``), one on the command line (``demo.db_password`` and an MLflow tag
``api_token``), and one as the password of a URL (the user's ``data_url`` and MLflow's tracking
URI). The user's training code logs the token as a hyperparameter and prints the URL; when it
fails, its exception names both. Then every byte under the working directory (run or sweep
directory, W&B's and submitit's files, the object store; the user's own config directory
aside), every byte of the MLflow server's store, and the command's stdout and stderr are
searched for each secret.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from servers import child_env, mlflow, mlflow_server, silent_listener  # noqa: F401 - fixtures
from wandb_records import offline_run
from conftest import needs

MlflowClient = needs("mlflow").MlflowClient

IN_FILE = "file-secret-7f3a9c"
ON_ARGV = "argv-secret-2b8e41"
IN_URI = "uri-secret-5d1c07"
SECRETS = (IN_FILE, ON_ARGV, IN_URI)
DESTINATIONS = ["file", "jsonl", "tensorboard", "mlflow", "wandb", "object_store"]

TRAINING_CODE = '''
def train(logger, api_token, db_password, data_url, fail=False):
    logger.data_fit({"api_token": api_token, "db_password": db_password, "source": data_url,
                     "note": f"token {api_token}", "learning_rate": 0.1})
    for step in range(3):
        logger.data_batch({"loss": 1.0 / (step + 1)})
    print(f"reading {data_url}")
    if fail:
        raise RuntimeError(f"could not read {data_url} with token {api_token} and {db_password}")
    return {"loss": 0.25}
'''

USER_CONFIG = f'''
defaults:
  - logger: default
  - _self_
run_name: planted
dry_run: false
logger:
  allowed_modules: [secret_training]
demo:
  _target_: secret_training.train
  _partial_: true
  api_token: {IN_FILE}
  db_password: null
  data_url: "http://reader:{IN_URI}@127.0.0.1:9/data"
  fail: false
hydra:
  job:
    name: composer_cfg
    chdir: true
'''


def plant(tmp_path: Path) -> Path:
    (tmp_path / "secret_training.py").write_text(textwrap.dedent(TRAINING_CODE))
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(USER_CONFIG)
    return conf


def command(conf: Path, launcher: str, outcome: str, tracking_uri: str) -> list[str]:
    args = ["-cd", str(conf), f"demo.db_password={ON_ARGV}",
            f"+logger/destinations=[{','.join(name for name in DESTINATIONS if name != 'file')}]",
            "logger.destinations.object_store.url=store",
            f"logger.destinations.mlflow.tracking_uri={tracking_uri}",
            f"++logger.destinations.mlflow.tags={{team: ml, api_token: {ON_ARGV}}}"]
    if launcher == "run":
        args += ["hydra.run.dir=run", "hydra.verbose=true"]  # Hydra's debug records, the config among them
    else:
        args = ["-m", *args, f"hydra/launcher={launcher}", "hydra.sweep.dir=sweep"]
    if outcome == "training_fails":
        args.append("demo.fail=true")
    elif outcome == "bad_config":
        args.append("logger.destinations.jsonl.flush_interval=0")
    return args


def files_holding(root: Path, secret: str, skip: Path | None = None) -> list[str]:
    return [str(path.relative_to(root)) for path in root.rglob("*")
            if path.is_file() and (skip is None or skip not in path.parents) and secret.encode() in path.read_bytes()]


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["succeeds", "training_fails", "bad_config"])
@pytest.mark.parametrize("launcher", ["run", "basic", "joblib", "submitit_local"])  # run: no -m, hydra.verbose=true
def test_a_planted_secret_reaches_no_file_and_no_stream(tmp_path, mlflow, launcher, outcome):  # noqa: F811
    conf = plant(tmp_path)
    tracking_uri = mlflow.url.replace("http://", f"http://alice:{IN_URI}@")
    out = subprocess.run([sys.executable, "-m", "composer_cfg", *command(conf, launcher, outcome, tracking_uri)],
                         cwd=tmp_path, capture_output=True, timeout=300,
                         env=child_env(PYTHONPATH=str(tmp_path), OMP_NUM_THREADS="1", COMPOSER_CFG_SHOW_SECRETS=""))
    stdout, stderr = out.stdout.decode(), out.stderr.decode()
    assert out.returncode == {"succeeds": 0, "training_fails": 1, "bad_config": 2}[outcome], stderr
    for secret in SECRETS:
        assert secret not in stdout and secret not in stderr
        assert files_holding(tmp_path, secret, skip=conf) == []
        assert files_holding(mlflow.directory, secret) == []
    if outcome == "bad_config":
        assert stderr.startswith("composer-cfg: error: logger.destinations.jsonl.flush_interval")
        assert sorted(path.name for path in tmp_path.iterdir()) == ["conf", "secret_training.py"]
        return
    # Every destination wrote something, and the secrets were there to leak.
    job = tmp_path / "run" if launcher == "run" else tmp_path / "sweep" / "0"
    files = job / "planted"
    written = {"file": files / "logs-rank0.txt", "jsonl": files / "metrics-rank0.jsonl",
               "tensorboard": files / "tensorboard", "wandb": job / "wandb", "object_store": job / "store"}
    assert {name: path.exists() for name, path in written.items()} == dict.fromkeys(written, True)
    assert '"api_token": "***"' in written["file"].read_text()
    assert "reading http://reader:***@127.0.0.1:9/data" in written["file"].read_text()
    client = MlflowClient(tracking_uri=mlflow.url)
    (run,) = client.search_runs([client.get_experiment_by_name("composer_cfg").experiment_id],
                                filter_string="tags.team = 'ml' and attributes.run_name = 'planted'",
                                order_by=["attributes.start_time DESC"], max_results=1)
    assert run.data.tags["api_token"] == "***" and run.data.params["api_token"] == "***"
    assert run.info.status == ("FINISHED" if outcome == "succeeds" else "FAILED")
    config = offline_run(job / "wandb")["config"]
    assert config["api_token"] == "***" and config["db_password"] == "***"
    if outcome == "training_fails":
        assert "RuntimeError: could not read http://reader:***@127.0.0.1:9/data with token *** and ***" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("introspection", [["--help"], ["--info", "config"], ["--info", "all"], ["--cfg", "all"],
                                           ["--cfg", "hydra"], ["--cfg", "job", "--resolve"], ["dry_run=true"]])
def test_help_info_cfg_and_dry_runs_show_no_secret(tmp_path, introspection, silent_listener):  # noqa: F811
    conf = plant(tmp_path)  # (a dry run checks that a server takes connections at the tracking URI)
    args = command(conf, "run", "succeeds", silent_listener.url.replace("http://", f"http://alice:{IN_URI}@"))
    out = subprocess.run([sys.executable, "-m", "composer_cfg", *args, *introspection], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env=child_env(PYTHONPATH=str(tmp_path), COMPOSER_CFG_SHOW_SECRETS=""))
    assert out.returncode == 0, out.stderr
    assert "api_token" in out.stdout or introspection == ["--cfg", "hydra"]
    for secret in SECRETS:
        assert secret not in out.stdout and secret not in out.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["conf", "secret_training.py"]


@pytest.mark.slow
def test_a_tracking_uri_password_is_masked_when_the_tracking_server_does_not_answer(tmp_path, silent_listener):  # noqa: F811
    uri = silent_listener.url.replace("http://", f"http://alice:{IN_URI}@")
    out = subprocess.run([sys.executable, "-m", "composer_cfg", "run_name=hang", "hydra.run.dir=run",
                          "+logger/destinations=mlflow", f"logger.destinations.mlflow.tracking_uri={uri}",
                          "logger.destinations.mlflow.timeout=1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=child_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"))
    assert out.returncode == 1
    shown = silent_listener.url.replace("http://", "http://alice:***@")
    assert f"composer-cfg: error: TimeoutError: destination 'mlflow' at {shown} did not start within 1 s" in out.stderr
    assert IN_URI not in out.stdout + out.stderr and files_holding(tmp_path, IN_URI) == []


@pytest.mark.slow
def test_mlflow_prints_no_view_run_line_showing_a_tracking_uri_password(tmp_path, mlflow):  # noqa: F811
    script = ("import sys\nfrom composer_cfg import Logger, MLFlowLogger, State\n"
              "with Logger(State('view'), MLFlowLogger(tracking_uri=sys.argv[1])) as logger:\n"
              "    logger.data_batch({'loss': 1.0})\n")

    def printed(uri: str) -> str:
        out = subprocess.run([sys.executable, "-c", script, uri], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120, env=child_env())
        assert out.returncode == 0, out.stderr
        return out.stdout + out.stderr

    assert f"View run view at: {mlflow.url}/#/experiments/" in printed(mlflow.url)  # MLflow's own line...
    shown = printed(mlflow.url.replace("http://", f"http://alice:{IN_URI}@"))
    assert IN_URI not in shown and "View run" not in shown  # ...left out when it would show the password


APP_CONFIG = f'''
defaults:
  - logger: default
  - _self_
hydra:
  searchpath:
    - pkg://composer_cfg.conf
  callbacks:
    mask_secrets:
      _target_: composer_cfg.config.masking_callback.MaskSecrets
run_name: app
credentials:
  api_token: {IN_FILE}
data_url: "http://reader:{IN_URI}@127.0.0.1:9/data"
'''

APP = '''
import hydra

from composer_cfg import instantiate_logger


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    logger = instantiate_logger(cfg.logger, run_name=cfg.run_name)  # closed at exit: capture still on
    logger.data_fit({**cfg.credentials, "db_password": cfg.db_password})
    print(f"reading {cfg.data_url}")
    raise RuntimeError(f"could not read {cfg.data_url} with {cfg.credentials.api_token} and {cfg.db_password}")


main()
'''


@pytest.mark.slow
def test_in_a_hydra_app_of_your_own_the_callback_masks_hydras_banner_files_and_the_captured_log(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(APP_CONFIG)
    (tmp_path / "train.py").write_text(APP)
    out = subprocess.run([sys.executable, "train.py", f"+db_password={ON_ARGV}", "hydra.run.dir=run",
                          "logger.destinations.file.log_level=fit"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env=child_env())
    assert out.returncode == 1
    log = (tmp_path / "app" / "logs-rank0.txt").read_text()
    # Hydra's banner reached the log file (the logger, closed at exit, still captured stderr), masked.
    assert ("[stderr]: Error executing job with overrides: ['+db_password=***', 'logger.destinations.file.log_level=fit']\n"
            "[stderr]: Traceback (most recent call last):\n") in log
    assert "[stderr]: RuntimeError: could not read http://reader:***@127.0.0.1:9/data with *** and ***\n" in log
    assert '"api_token": "***", "db_password": "***"' in log
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text().startswith("- +db_password=***\n")
    for secret in SECRETS:
        assert secret not in out.stdout and secret not in out.stderr
        assert files_holding(tmp_path, secret, skip=conf) == []
