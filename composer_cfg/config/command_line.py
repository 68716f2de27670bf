"""The command line of ``composer-cfg``: Hydra's flags, read without Hydra's private parser.

`read` takes the flags the command acts on before Hydra starts (which config, which overrides,
a sweep or not, an introspection flag); `hydra_argv` gives Hydra the command line it should run.
`jobs` expands a sweep into one override list per job, as Hydra's basic sweeper does, with
Hydra's public override parser.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: The flags that take a value, and those that take none (Hydra 1.3's command line).
_VALUED = {"--config-path": "-cp", "--config-name": "-cn", "--config-dir": "-cd", "--package": "-p",
           "--experimental-rerun": None}
_SWITCHES = {"--help": "-h", "--hydra-help": None, "--version": None, "--resolve": None, "--run": "-r",
             "--multirun": "-m", "--shell-completion": "-sc"}


@dataclass
class CommandLine:
    """What ``composer-cfg`` was asked to do."""

    argv: list[str]
    overrides: list[str] = field(default_factory=list)
    config_name: str = "config"
    config_dir: str | None = None  # -cd or -cp: the user's configs, searched before the packaged ones
    multirun: bool = False
    cfg: str | None = None
    info: str | None = None
    package: str | None = None
    resolve: bool = False
    introspection: bool = False  # --help, --cfg, --info...: Hydra prints, nothing runs
    version: bool = False

    def hydra_argv(self, extra: Sequence[str] = ()) -> list[str]:
        """The arguments for Hydra: the user's configs as its primary config path, then `extra`."""
        argv, skip = [], False
        for arg in self.argv:
            if skip:
                skip = False
            elif arg in ("-cd", "--config-dir", "-cp", "--config-path"):
                skip = True
            elif not arg.startswith(("--config-dir=", "--config-path=")):
                argv.append(arg)
        if self.config_dir is not None:  # first: Hydra's parser wants the overrides together, at the end
            argv.insert(0, f"--config-path={Path(self.config_dir).expanduser().resolve()}")
        return [*argv, *extra]


def read(argv: Sequence[str]) -> CommandLine:
    """Parse `argv` as Hydra would, keeping what the command needs."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("overrides", nargs="*")
    for name, short in _VALUED.items():
        parser.add_argument(name, *([short] if short else []))
    for name, short in _SWITCHES.items():
        parser.add_argument(name, *([short] if short else []), action="store_true")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    parser.add_argument("--info", "-i", nargs="?", const="all")
    args, _ = parser.parse_known_intermixed_args(list(argv))  # overrides before and after flags, as Hydra takes them
    return CommandLine(
        argv=list(argv), overrides=list(args.overrides), config_name=args.config_name or "config",
        config_dir=args.config_dir or args.config_path, multirun=args.multirun, cfg=args.cfg, info=args.info,
        package=args.package, resolve=args.resolve, version=args.version,
        introspection=bool(args.help or args.hydra_help or args.cfg or args.info or args.shell_completion),
    )


def jobs(overrides: Sequence[str]) -> list[list[str]]:
    """One override list per job of a sweep (the cartesian product of every sweep override)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))  # a parse error is reported by composing
    choices = [[f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in parsed]
    return [list(job) for job in itertools.product(*choices)]


def jobs_to_check(overrides: Sequence[str], multirun: bool) -> list[tuple[list[str], list[str]]]:
    """Each job's overrides, and those to compose it with for a check that it runs as Hydra will
    run it: a sweep's jobs expanded, each in its own directory (``hydra.mode=MULTIRUN`` and its
    ``hydra.job.num``: ``hydra.sweep.dir``/``hydra.sweep.subdir``)."""
    if not multirun:
        return [(list(overrides), list(overrides))]
    try:
        expanded = jobs(overrides)
    except Exception:  # noqa: BLE001 - composing the overrides as given reports the parse error
        return [(list(overrides), list(overrides))]
    return [(job, [*job, "hydra.mode=MULTIRUN", f"hydra.job.num={number}"]) for number, job in enumerate(expanded)]
