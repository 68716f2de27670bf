"""Every Python block of docs/ runs as shown and prints what the page says it prints; the commands, transcripts,
examples and test names the pages (most moved from the README) show are what the code does and has."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from composer_cfg import Event, compose_config
from composer_cfg.run.records import read_records
from conftest import needs, needs_destinations

DOCS = Path(__file__).parents[1] / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# Scripts to run as they are; a block starting "# file: NAME" is a file of an example project (hydra-app.md's is run
# by its own test below).
BLOCKS = [(page, block) for page in PAGES for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
          if not block.startswith("# file:")]
#: What a page's Python blocks need beyond the package: skipped, with the install hint, without it.
NEEDS = {"distributed": "torch"}


def read(name: str) -> str:
    return (DOCS / name).read_text()


@pytest.mark.parametrize("page, code", BLOCKS, ids=[f"{page.stem}-{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_every_python_block_runs_and_prints_what_follows_it(tmp_path, page, code):
    if page.stem in NEEDS:
        needs(NEEDS[page.stem])
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    after = text[text.index(code) + len(code):]
    shown = re.match(r"```\s*\n+prints\n+```\n(.*?)```", after, re.S)
    if shown:
        assert out.stdout == shown.group(1)


def test_the_foundry_block_of_the_media_page_composes_into_its_destinations(tmp_path):
    block = re.search(r"```yaml\n(loggers:.*?)```", (DOCS / "media.md").read_text(), re.S).group(1)
    (tmp_path / "train.yaml").write_text("defaults:\n  - config\n  - _self_\n" + block)
    cfg = compose_config(["logger=none"], config_name="train", config_dir=tmp_path)
    assert {name: node._target_ for name, node in cfg.logger.destinations.items()} == {
        "tensorboard": "composer_cfg.TensorboardLogger", "in_memory": "composer_cfg.InMemoryLogger"}


@pytest.mark.slow
def test_the_torchrun_command_of_the_distributed_page_runs_the_example_and_rank_zero_records_every_rank(tmp_path):
    needs("torch")
    (command,) = re.findall(r"```sh\n(torchrun .*?)\n```", (DOCS / "distributed.md").read_text(), re.S)
    shutil.copytree(DOCS.parent / "examples", tmp_path / "examples")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RANK", "WORLD_SIZE", "LOCAL_"))}
    out = subprocess.run([str(Path(sys.executable).parent / "torchrun"), *shlex.split(command)[1:]], cwd=tmp_path,
                         env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [[record for record in read_records(tmp_path / "ddp" / f"metrics-rank{rank}.jsonl")
              if record["level"] == "BATCH"] for rank in range(2)]
    assert [len(records) for records in ranks] == [16, 16]
    for mine, theirs in zip(*ranks):
        assert list(mine["data"]) == ["loss", "tokens", "grad_norm", "step_seconds", "step_seconds/rank"]
        assert list(theirs["data"]) == ["loss", "tokens", "grad_norm", "step_seconds"]  # rank 1 keeps its own
        assert (mine["data"]["tokens"], theirs["data"]["tokens"]) == (128, 64)
        assert mine["data"]["grad_norm"] == pytest.approx(theirs["data"]["grad_norm"], rel=1e-6)  # the same everywhere
        assert mine["data"]["step_seconds"] >= theirs["data"]["step_seconds"]
        assert mine["data"]["step_seconds/rank"] in (0, 1)


# Links and test names on every page, the README included.

ROOT = DOCS.parent
PAGES_AND_README = [ROOT / "README.md", *PAGES]


def without_code(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    headings = re.findall(r"^#+ (.*)$", without_code(page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES_AND_README, ids=[str(page.relative_to(ROOT)) for page in PAGES_AND_README])
def test_every_link_to_a_file_or_heading_of_the_repository_resolves(page):
    links = re.findall(r"\]\(([^)\s]+)\)", without_code(page.read_text()))
    for link in links:
        if re.match(r"\w+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link}"
        if anchor:
            assert anchor in anchors(target), f"{page.name}: {link}"


def test_every_page_is_in_the_index_and_reached_from_the_readme():
    index = read("README.md")
    for page in PAGES:
        if page != DOCS / "README.md":
            assert f"]({page.relative_to(DOCS)})" in index, page
    assert "](docs/README.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("page", PAGES_AND_README, ids=[str(page.relative_to(ROOT)) for page in PAGES_AND_README])
def test_every_test_a_page_names_exists(page):
    module = None  # `…::test_x` names a test of the module named last
    for file, test in re.findall(r"`(?:((?:reference/)?test_\w+)::|…::)(test_\w+)(?:\[[^\]`]*\])?`", page.read_text()):
        module = file or module
        assert module, test
        source = (Path(__file__).parent / f"{module}.py").read_text()
        assert f"def {test}(" in source, f"{page.name}: {module}::{test}"


# Moved from tests/test_readme.py with the sections they read.

@pytest.mark.slow
def test_error_transcript_is_what_the_command_prints(tmp_path):
    transcript = re.search(r"## Validation and errors.*?```\n(.*?)```", read("reference/config.md"), re.S).group(1)
    commands = re.findall(r"^\$ composer-cfg (.*)$", transcript, re.M)
    printed = [line for line in transcript.splitlines() if line.startswith("composer-cfg: error:")]
    produced = []
    for command in commands:
        args = [arg.strip("'") for arg in command.split()]
        out = subprocess.run([sys.executable, "-m", "composer_cfg", *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2
        produced += out.stderr.splitlines()
    assert produced == printed


def test_every_test_named_in_the_reliability_table_exists():
    table = re.search(r"\| what was tried .*?\n\n", read("reliability.md"), re.S).group(0)
    named = re.findall(r"`(?:test_(\w+)::|…::)?(test_\w+)(?:\[\w+\])?`", table)
    assert len(named) >= 15
    module = None
    for file, test in named:
        module = f"test_{file}" if file else module
        source = (Path(__file__).parent / f"{module}.py").read_text()
        assert f"def {test}(" in source, f"{module}::{test}"


def test_every_test_named_in_the_differences_list_exists():
    section = read("reference/differences-from-composer.md")
    named = re.findall(r"`(?:((?:reference/)?test_\w+)::|…::)(test_\w+)`", section)
    assert len(named) >= 20
    module = None
    for file, test in named:
        module = file or module
        source = (Path(__file__).parent / f"{module}.py").read_text()
        assert f"def {test}(" in source, f"{module}::{test}"


@pytest.mark.slow
def test_the_hydra_app_example_runs_as_shown(tmp_path):
    needs_destinations("tensorboard")  # logger=all_local
    section = read("hydra-app.md")
    config = re.search(r"```yaml\n# conf/config.yaml\n(.*?)```", section, re.S).group(1)
    script = re.search(r"```python\n# file: train.py\n(.*?)```", section, re.S).group(1)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(config)
    (tmp_path / "train.py").write_text(script)
    commands = re.findall(r"^python (train.py.*?)(?:\s+#.*)?$", re.search(r"```sh\n(.*?)```", section, re.S).group(1), re.M)
    assert len(commands) == 5
    for number, command in enumerate([*commands, commands[0], commands[-1]]):  # run again: a new run, or exp1 on
        args = [arg.strip("'") for arg in command.split()]
        job = [] if "resume=auto" in args else [f"hydra.run.dir=hydra{number}"]  # exp1: outputs/exp1, both times
        out = subprocess.run([sys.executable, *args, *job], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (command, out.stderr)
    runs = sorted(str(path.parent.relative_to(tmp_path)) for path in tmp_path.rglob("logs-rank0.txt")
                  if "mlartifacts" not in path.parts)  # (MLflow's copy of a log it was given)
    assert len(runs) == 1 + 1 + 1 + 1 + 1  # logger=null writes nothing; exp1 is one run, continued
    assert "outputs/exp1/exp1" in runs and list(tmp_path.glob("*/logs-rank0.txt")) == []  # each in its job's directory
    exp1 = tmp_path / "outputs/exp1/exp1"
    assert (exp1 / "logs-rank0.txt").read_text().splitlines()[:2] == [
        '[EPOCH][batch=10]: { "epoch": 0, }', '[EPOCH][batch=20]: { "epoch": 1, }']
    assert json.loads((exp1 / "run-rank0.json").read_text())["run"]["status"] == "FINISHED"
    assert (tmp_path / "mlflow.db").exists()  # the project's store


@pytest.mark.slow
def test_the_mlflow_ui_command_serves_the_run(tmp_path):
    import socket
    import time
    import urllib.request

    command = re.search(r"^(MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui .*)$", read("reference/destinations.md"),
                        re.M).group(1)
    database = tmp_path / "mlflow.db"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{database}").create_experiment("made")  # a store to browse
    database.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    variable, mlflow, *args = command.replace("$PWD", str(tmp_path)).split()
    server = subprocess.Popen([str(Path(sys.executable).parent / mlflow), *args, "--port", str(port)], cwd=tmp_path,
                              env={**os.environ, variable.split("=")[0]: "false"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                experiments = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=made", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow ui did not answer"
                time.sleep(0.2)
        assert b'"name": "made"' in experiments.read().replace(b'"name":"made"', b'"name": "made"')
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)


@pytest.mark.slow
def test_the_sync_example_runs_as_shown(tmp_path):
    section = read("offline-and-sync.md")
    lines = re.search(r"```sh\n(.*?)```", section, re.S).group(1).splitlines()
    for line in lines[:2]:  # the others need a tracking server or a W&B account
        command = line.split("#")[0].split()
        module = {"composer-cfg": "composer_cfg", "composer-cfg-sync": "composer_cfg.run.sync"}[command[0]]
        out = subprocess.run([sys.executable, "-m", module, *command[1:]], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "WANDB_MODE": "offline"})
        assert out.returncode == 0, (line, out.stderr)
    records = len((tmp_path / "runs/exp1/metrics-rank0.jsonl").read_text().splitlines())
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    synced = json.loads((tmp_path / "runs/exp1/sync-progress-rank0.json").read_text())["metrics-rank0.jsonl"]["mlflow"]
    assert out.stdout.splitlines() == [
        f"mlflow: {records} new record(s) from runs/exp1/metrics-rank0.jsonl into "
        f"{store} (run {synced[store]['identity']['run_id']})",
        "  files: exp1/logs-rank0.txt, exp1/run-config.yaml",  # MLflow takes files; TensorBoard does not
        f"tensorboard: {records} new record(s) from runs/exp1/metrics-rank0.jsonl into "
        f"{tmp_path / 'runs/exp1/tensorboard'}",  # beside the run
    ]


def test_the_destinations_reference_names_every_parameter_of_each_destination_and_no_other():
    import inspect

    from composer_cfg.destinations.registry import BUILT_IN

    page = (DOCS / "reference" / "destinations.md").read_text()
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## |\Z)", page, re.S | re.M))
    assert sorted(sections) == sorted(BUILT_IN)
    for name, text in sections.items():
        parameters = set(inspect.signature(BUILT_IN[name]).parameters) - {"self", "args", "kwargs"}
        listing = text.split("Parameters:", 1)[1].split("\n\n")[0]  # the paragraph that lists them
        listed = {key for pair in re.findall(r"`([a-z_]\w*)`(?:/`([a-z_]\w*)`)? \(", listing) for key in pair if key}
        mentioned = set(re.findall(r"`(\w+)`", text))
        assert parameters <= mentioned, f"{name}: not in its section: {sorted(parameters - mentioned)}"
        listed -= {event.value for event in Event}  # "... at every `fit_end` (as Composer ...)"
        assert listed <= parameters, f"{name}: listed, but not a parameter: {sorted(listed - parameters)}"


def test_the_config_reference_lists_the_logger_nodes_keys_with_the_presets_defaults():
    from composer_cfg.config.validate import LOGGER_KEYS, LOGGER_SETTINGS

    section = (DOCS / "reference" / "config.md").read_text().split("## The logger node's own keys")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*?) \|", section, re.M))
    assert list(rows) == [*LOGGER_KEYS, *LOGGER_SETTINGS]
    for preset in ("default", "all_local", "trackers"):
        logger = compose_config([f"logger={preset}"]).logger
        for key, default in rows.items():
            if key != "destinations":
                assert default.strip("`") == str(logger[key]).replace("None", "null").replace("False", "false"), key
