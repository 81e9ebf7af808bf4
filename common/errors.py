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


class WriteConflict(ShopLakeError):
    """Another writer committed to the same Delta table first; nothing was written, a
    re-run applies the write on top of the other one."""


class UnsupportedTableProtocol(EnvironmentProblem):
    """A Delta table needs a newer reader or writer than this ShopLake's Delta engine."""


class DiskFull(EnvironmentProblem):
    """The file system ran out of space during a write; nothing was committed."""


DISK_FULL_TEXT = "No space left on device"


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` or an exception in its chain is ENOSPC.

    Spark reports it as a Java IOException inside a Py4J error and delta-rs as a
    Rust I/O error, so the message is checked as well as ``errno``.
    """
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if DISK_FULL_TEXT in str(current) or DISK_FULL_TEXT in _java_causes(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _java_causes(exc: BaseException) -> str:
    """The Java exception chain behind a PySpark error, as text ("" for others).

    PySpark's message leaves out the JVM causes unless
    spark.sql.pyspark.jvmStacktrace.enabled is set, and ENOSPC is a cause.
    """
    cause = getattr(exc, "_origin", None) or getattr(exc, "java_exception", None)
    texts = []
    try:
        for _ in range(20):
            if cause is None:
                break
            texts.append(str(cause.toString()))
            cause = cause.getCause()
    except Exception:  # noqa: BLE001 - the JVM may be gone; the Python message was checked already
        pass
    return "\n".join(texts)
