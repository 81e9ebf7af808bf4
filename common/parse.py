"""Column functions that type raw strings (Column in, Column out).

Each returns null when the text cannot be typed; callers compare with the raw
value to tell "absent" from "unparseable". Spark runs with ANSI mode on, so
everything here uses the ``try_`` forms and never raises on bad data.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from common import privacy

_FULL_WIDTH = "０１２３４５６７８９＋－．，"
_HALF_WIDTH = "0123456789+-.,"
_THOUSANDS = r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$"
_INTEGER = r"^[+-]?\d+$"
_DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
_TRUE = ["true", "1", "yes", "y", "t"]
_FALSE = ["false", "0", "no", "n", "f"]
# Pattern letters that carry a zone or offset: such text is an instant already.
_ZONE_LETTERS = set("XxZOVz")
# Last instant Spark supports (9999-12-31 23:59:59.999 UTC); past it timestamp_millis /
# timestamp_seconds overflow and, with ANSI on, fail the whole job instead of the record.
_MAX_EPOCH = {"epoch_ms": 253_402_300_799_999, "epoch_s": 253_402_300_799}


def blank_to_null(col: Column) -> Column:
    """Null for empty or whitespace-only text; the text unchanged otherwise."""
    return F.when(F.regexp_replace(col, r"^\s+|\s+$", "") == "", F.lit(None)).otherwise(col)


def strip(col: Column) -> Column:
    """Trim all whitespace (Spark's ``trim`` only removes spaces)."""
    return F.regexp_replace(col, r"^\s+|\s+$", "")


def normalise_number_text(col: Column) -> Column:
    """Full-width digits to ASCII and ``1,234,567.5`` to ``1234567.5``; other text unchanged."""
    text = F.translate(strip(col), _FULL_WIDTH, _HALF_WIDTH)
    return F.when(text.rlike(_THOUSANDS), F.regexp_replace(text, ",", "")).otherwise(text)


def integer_from_number_text(text: Column, dtype: str = "int") -> Column:
    """Type text already passed through :func:`normalise_number_text`."""
    return F.when(text.rlike(_INTEGER), text.try_cast(dtype))


def decimal_from_number_text(text: Column, precision: int = 18, scale: int = 2) -> Column:
    return F.when(text.rlike(_DECIMAL), text.try_cast(f"decimal({precision},{scale})"))


def double_from_number_text(text: Column) -> Column:
    return F.when(text.rlike(_DECIMAL), text.try_cast("double"))


def parse_integer(col: Column, dtype: str = "int") -> Column:
    return integer_from_number_text(normalise_number_text(col), dtype)


def parse_decimal(col: Column, precision: int = 18, scale: int = 2) -> Column:
    return decimal_from_number_text(normalise_number_text(col), precision, scale)


def parse_double(col: Column) -> Column:
    return double_from_number_text(normalise_number_text(col))


def parse_boolean(col: Column) -> Column:
    text = F.lower(strip(col))
    return F.when(text.isin(_TRUE), F.lit(True)).when(text.isin(_FALSE), F.lit(False))


def _has_zone(pattern: str) -> bool:
    # Letters inside quotes ('T') are literals, not pattern letters.
    unquoted = "".join(part for i, part in enumerate(pattern.split("'")) if i % 2 == 0)
    return any(ch in _ZONE_LETTERS for ch in unquoted)


def parse_timestamp(col: Column, formats: list[str], time_zone: str) -> Column:
    """The first format that parses wins. Naive text is wall-clock time in ``time_zone``;
    ``epoch_ms`` / ``epoch_s`` and patterns with an offset are instants already."""
    text = strip(col)
    candidates = []
    for fmt in formats or ["yyyy-MM-dd HH:mm:ss"]:
        if fmt in ("epoch_ms", "epoch_s"):
            digits = F.when(text.rlike(r"^\d{1,16}$"), text.try_cast("long"))
            digits = F.when(digits <= _MAX_EPOCH[fmt], digits)
            fn = "timestamp_millis" if fmt == "epoch_ms" else "timestamp_seconds"
            candidates.append(F.call_function(fn, digits))
            continue
        parsed = F.try_to_timestamp(text, F.lit(fmt))
        candidates.append(parsed if _has_zone(fmt) else F.to_utc_timestamp(parsed, time_zone))
    return F.coalesce(*candidates) if len(candidates) > 1 else candidates[0]


def parse_date(col: Column, formats: list[str]) -> Column:
    """The first format that parses a real calendar date wins (2024-02-30 does not)."""
    text = strip(col)
    candidates = [F.to_date(F.try_to_timestamp(text, F.lit(fmt))) for fmt in formats or ["yyyy-MM-dd"]]
    return F.coalesce(*candidates) if len(candidates) > 1 else candidates[0]


def mapped_category(col: Column, mapping: dict[str, str]) -> Column:
    """Canonical code for a categorical value (keys compared lower-cased and trimmed);
    unmapped values are kept lower-cased so new codes show up rather than vanish."""
    text = F.lower(F.trim(privacy.text_normalised(col)))
    if not mapping:
        return text
    lookup = F.create_map(*[x for k, v in mapping.items() for x in (F.lit(k.strip().lower()), F.lit(v))])
    return F.coalesce(lookup[text], text)
