"""Why a record went to quarantine: one code per record, shared by the ingest
job, the sample-data generator's manifest and the tests."""

from __future__ import annotations

from enum import Enum


class Reason(str, Enum):
    """Quarantine reason codes, checked in this order (the first that applies wins)."""

    ENCODING_ERROR = "encoding_error"  # bytes that do not decode in the feed's encoding
    MALFORMED_JSON = "malformed_json"  # not a JSON object (truncated, invalid syntax, a bare value)
    WRONG_COLUMN_COUNT = "wrong_column_count"  # CSV/whitespace record with too few or too many fields
    MISSING_KEY = "missing_key"  # a required field is absent or empty
    UNPARSEABLE_NUMBER = "unparseable_number"  # an int/long/double/decimal field that is not a number
    UNPARSEABLE_BOOLEAN = "unparseable_boolean"
    UNPARSEABLE_DATE = "unparseable_date"  # includes impossible dates (2024-02-30)
    UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"

    def __str__(self) -> str:
        return self.value


REASONS = tuple(r.value for r in Reason)
