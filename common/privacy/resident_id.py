"""Mainland resident ID numbers (GB 11643-1999): parsing, the check character, birth date and gender."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from common.privacy.normalise import MAX_FIELD_LENGTH

# ----------------------------------------------------------------------------- resident ID numbers

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
_ID_NUMBER_RE = re.compile(r"[0-9]{17}[0-9X]")
_MIN_BIRTH_YEAR = 1900


@dataclass(frozen=True)
class ResidentId:
    """A parsed 18-character resident identity card number.

    ``number`` is left out of ``repr`` so that logging a parsed ID never prints the ID.

    Attributes:
        number: Normalised number: 18 ASCII characters, the check character upper-case.
        valid: True when the check character is right and the birth date is a real date.
        region_code: First 6 digits, the administrative division of first registration.
        province_code: First 2 digits.
        birth_date: The encoded birth date, or None when digits 7-14 are not a real date
            from 1900 on.
        gender: ``"M"`` when the 17th digit is odd, ``"F"`` when even.
    """

    number: str = field(repr=False)
    valid: bool
    region_code: str
    province_code: str
    birth_date: date | None
    gender: str


def id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for 17 ASCII digits (caller guarantees the format)."""
    return ID_CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def _id_birth_date(number: str) -> date | None:
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None
    return born if born.year >= _MIN_BIRTH_YEAR else None


def parse_resident_id(value: Any) -> ResidentId | None:
    """Parse an 18-character resident ID number; None when it is not one.

    NFKC (full-width digits and ``Ｘ``), whitespace removed, ``x`` upper-cased. A number
    of the right shape is returned even with a wrong check character or an impossible
    birth date, with ``valid=False``, so that callers can count bad numbers.

    Legacy 15-digit numbers (issued before 1999, two-digit year, no check character)
    return None: they cannot be validated, and a 15-digit run is too easily something
    else, so treating them as usable would invent facts. They are long expired.

    Args:
        value: Any value; only ``str`` is used.
    """
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH:
        return None
    number = "".join(unicodedata.normalize("NFKC", value).split()).upper()
    if not _ID_NUMBER_RE.fullmatch(number):
        return None
    born = _id_birth_date(number)
    return ResidentId(
        number=number,
        valid=born is not None and id_check_char(number[:17]) == number[17],
        region_code=number[:6],
        province_code=number[:2],
        birth_date=born,
        gender="M" if int(number[16]) % 2 == 1 else "F",
    )


def valid_id_birth_date(value: Any) -> date | None:
    parsed = parse_resident_id(value)
    return parsed.birth_date if parsed is not None and parsed.valid else None


def valid_id_gender(value: Any) -> str | None:
    parsed = parse_resident_id(value)
    return parsed.gender if parsed is not None and parsed.valid else None


def id_valid_or_null(value: Any) -> bool | None:
    if not isinstance(value, str) or not value.strip():
        return None
    parsed = parse_resident_id(value)
    return parsed is not None and parsed.valid
