"""spark-submit entry point.

    shoplake package   # dist/shoplake-<version>.zip, dist/main.py (a copy of this file), the wheel
    spark-submit --py-files dist/shoplake-0.1.0.zip dist/main.py pipeline --env cluster --set lake.root=s3a://...

The first argument is a job name (as for ``shoplake run``) or a CLI command
(``pipeline``, ``generate``); the rest are that command's options. The master
comes from spark-submit, never from here.
"""

from __future__ import annotations

import sys


def to_cli_args(argv: list[str]) -> list[str]:
    """``<job> [options]`` -> ``run <job> [options]``; CLI commands pass through."""
    from shoplake.cli import cli
    from shoplake.registry import JOBS

    if argv and argv[0] in JOBS:
        return ["run", *argv]
    if argv and argv[0] in cli.commands:
        return argv
    return argv or ["--help"]


if __name__ == "__main__":
    # The package comes from the install or --py-files. (Run as a script, this file's
    # folder is first on sys.path, so no module in shoplake/ may share a standard library
    # module's name: tests/unit/test_registry.py checks that.)
    from shoplake.cli import main

    main(to_cli_args(sys.argv[1:]))
