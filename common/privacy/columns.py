"""Spark column twins of the pure functions (pandas UDFs), so Python and Spark agree."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

from common.privacy.detect import find_pii
from common.privacy.masking import DEFAULT_AGE_BANDS, age_band, mask_phone, pseudonym, truncate_ip
from common.privacy.normalise import CN_COUNTRY_CODE, normalise_email, normalise_phone, normalise_text
from common.privacy.resident_id import id_valid_or_null, valid_id_birth_date, valid_id_gender

# ----------------------------------------------------------------------------- Spark column functions


def _series_udf(fn: Callable[[Any], Any], return_type: str, name: str) -> Callable[..., Column]:
    """A scalar pandas UDF applying the one-value function ``fn`` to each element.

    ``fn`` is a module-level function of this module (or a picklable wrapper around one), so
    cloudpickle ships it by reference and the Python worker only imports this
    standard-library-only module: the pure function stays the single definition of each rule.
    """
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def apply(values):
        # Series.map also calls fn on nulls (None / NaN / NA); every fn returns None for them.
        return values.map(fn)

    # Real classes, not strings: this module's postponed annotations could not be resolved by
    # pyspark's type-hint inference, as pandas is deliberately not imported at module level.
    apply.__annotations__ = {"values": pd.Series, "return": pd.Series}
    apply.__name__ = apply.__qualname__ = name  # the default column name in plans
    return pandas_udf(apply, return_type)


class _Keyed:
    """``pseudonym(secret, value, namespace)`` as a one-argument function for a UDF.

    A class rather than a lambda or ``functools.partial`` so that its ``repr`` (which can end
    up in plans, logs and tracebacks) never shows the secret.
    """

    def __init__(self, secret: bytes, namespace: str) -> None:
        self._secret = bytes(secret)
        self._namespace = namespace

    def __call__(self, value: Any) -> str | None:
        return pseudonym(self._secret, value, self._namespace)

    def __repr__(self) -> str:
        return f"<pseudonym namespace={self._namespace!r}>"


def text_normalised(col: Column | str) -> Column:
    """Column version of :func:`normalise_text`."""
    return _series_udf(normalise_text, "string", "text_normalised")(col)


def phone_e164(col: Column | str, default_country: str = CN_COUNTRY_CODE) -> Column:
    """Column version of :func:`normalise_phone`; ``default_country`` is checked on the driver."""
    normalise_phone(None, default_country)
    fn = functools.partial(normalise_phone, default_country=default_country)
    return _series_udf(fn, "string", "phone_e164")(col)


def phone_masked(col: Column | str, default_country: str = CN_COUNTRY_CODE) -> Column:
    """Column version of :func:`mask_phone`."""
    normalise_phone(None, default_country)
    fn = functools.partial(mask_phone, default_country=default_country)
    return _series_udf(fn, "string", "phone_masked")(col)


def email_normalised(col: Column | str) -> Column:
    """Column version of :func:`normalise_email`."""
    return _series_udf(normalise_email, "string", "email_normalised")(col)


def ip_prefix(col: Column | str) -> Column:
    """Column version of :func:`truncate_ip`."""
    return _series_udf(truncate_ip, "string", "ip_prefix")(col)


def pseudonym_col(col: Column | str, secret: bytes, namespace: str = "user") -> Column:
    """Column version of :func:`pseudonym` (null for a null or empty value).

    The secret and namespace are checked here, on the driver, so a missing secret fails
    before any task is scheduled.
    """
    pseudonym(secret, None, namespace)
    # The secret necessarily travels to the executors inside the pickled UDF closure (the
    # _Keyed instance): whoever can read task payloads or executor memory can read it, so the
    # cluster must be trusted with it. It never appears in the plan string or in any output.
    return _series_udf(_Keyed(secret, namespace), "string", f"pseudonym_{namespace}")(col)


def resident_id_birth_date(col: Column | str) -> Column:
    """Birth date encoded in a resident ID number; null unless the number is valid."""
    return _series_udf(valid_id_birth_date, "date", "resident_id_birth_date")(col)


def resident_id_gender(col: Column | str) -> Column:
    """``"M"``/``"F"`` from a resident ID number's 17th digit; null unless the number is valid."""
    return _series_udf(valid_id_gender, "string", "resident_id_gender")(col)


def resident_id_valid(col: Column | str) -> Column:
    """Whether a resident ID number is valid; null for a null or blank value, false for junk."""
    return _series_udf(id_valid_or_null, "boolean", "resident_id_valid")(col)


def age_band_col(col: Column | str, as_of: date, bands: Sequence[int] = DEFAULT_AGE_BANDS) -> Column:
    """Column version of :func:`age_band` for a date column; ``as_of`` and ``bands`` checked on the driver."""
    age_band(None, as_of, bands)
    fn = functools.partial(age_band, as_of=as_of, bands=tuple(bands))
    return _series_udf(fn, "string", "age_band")(col)


def pii_kinds(col: Column | str) -> Column:
    """Column version of :func:`find_pii`: an array of kinds, empty when the value looks clean."""
    return _series_udf(find_pii, "array<string>", "pii_kinds")(col)
