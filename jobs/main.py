"""spark-submit entry point.

    shoplake package   # dist/shoplake-<version>.zip, dist/main.py (a copy of this file), the wheel
    spark-submit --py-files dist/shoplake-0.1.0.zip dist/main.py pipeline --env cluster --set lake.root=s3a://...

The first argument is a job name (as for ``shoplake run``) or a CLI command
(``pipeline``, ``generate``); the rest are that command's options. The master
comes from spark-submit, never from here.
"""

from __future__ import annotations

import os
import sys


def to_cli_args(argv: list[str]) -> list[str]:
    """``<job> [options]`` -> ``run <job> [options]``; CLI commands pass through."""
    from jobs.cli import cli
    from jobs.registry import JOBS

    if argv and argv[0] in JOBS:
        return ["run", *argv]
    if argv and argv[0] in cli.commands:
        return argv
    return argv or ["--help"]


if __name__ == "__main__":
    # Run as a script, Python puts this file's folder first on sys.path; for jobs/main.py
    # that is jobs/, whose profile.py would shadow the standard library's profile module
    # (imported by pyspark via cProfile). The package comes from the install or --py-files.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    from jobs.cli import main

    main(to_cli_args(sys.argv[1:]))
