"""Errors a user can act on.

Every error raised on purpose by ShopLake derives from :class:`ShopLakeError`;
the CLI prints its message on one line and exits non-zero. Messages say what
was expected, what was found and where.
"""

from __future__ import annotations


class ShopLakeError(Exception):
    """Base class for errors with a message meant for the person running a job."""

    exit_code = 1


class ConfigError(ShopLakeError):
    """A configuration file or override is invalid; the message names the key."""

    exit_code = 2


class MissingSecretError(ShopLakeError):
    """A secret expected in the environment is not set; the message names the variable."""

    exit_code = 2


class EnvironmentProblem(ShopLakeError):
    """The machine lacks something the run needs (Java, a writable lake path, ...)."""

    exit_code = 3


class InputError(ShopLakeError):
    """Input files are missing or unreadable as a whole (bad records go to quarantine)."""

    exit_code = 4


class SchemaMismatch(ShopLakeError):
    """A DataFrame does not match the declared schema of the table it is written to."""

    exit_code = 5


class ReconciliationError(ShopLakeError):
    """Counts that must add up do not (input records != bronze rows + quarantined rows)."""

    exit_code = 6
