"""``python -m composer_cfg``: the same as the ``composer-cfg`` command."""

from composer_cfg.cli.command import main

main()
