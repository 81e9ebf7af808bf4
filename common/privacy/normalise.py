"""Normalisation of free text, phone numbers (E.164) and e-mail addresses."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


# Longer inputs are not phone numbers, e-mail addresses, ID numbers or IPs; refusing them
# early keeps every regex here linear on hostile data.
MAX_FIELD_LENGTH = 320

# ----------------------------------------------------------------------------- text

# Invisible characters that only ever get in the way of matching (a BOM pasted from an
# Excel export, zero-width spaces from web forms). ZWJ/ZWNJ are kept: they carry meaning
# in emoji sequences and some scripts.
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u2060"), None)


def normalise_text(value: Any) -> str | None:
    """Unicode NFKC, invisible characters removed, whitespace trimmed and collapsed to one space.

    NFKC folds full-width letters, digits and punctuation (``ＡＢＣ１２３，``) to their
    half-width forms and the ideographic space to a plain space. Idempotent.

    Args:
        value: Any value; only ``str`` is used.

    Returns:
        The normalised text, or None for a non-string, empty or whitespace-only value.
    """
    if not isinstance(value, str):
        return None
    text = value
    # One pass is a fixed point for all text seen so far; the loop only guarantees
    # idempotence should NFKC and whitespace folding ever interact.
    for _ in range(3):
        folded = " ".join(unicodedata.normalize("NFKC", text).translate(_INVISIBLE).split())
        if folded == text:
            break
        text = folded
    return text or None


# ----------------------------------------------------------------------------- phones

CN_COUNTRY_CODE = "86"
CN_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")
# What people put between digits: spaces, hyphens and dashes, dots, parentheses.
_PHONE_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015.()]+")
_PHONE_BODY = re.compile(r"\+?[0-9]+")
_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")


def _international(digits: str) -> str | None:
    """E.164 for the digits after ``+`` (or ``00``): country code then national number."""
    if not digits or digits[0] == "0":
        return None
    if digits.startswith(CN_COUNTRY_CODE):
        # Mainland numbers must be mobiles: the shop collects them for SMS, and a
        # landline in the phone field is a data-entry error, not a contact point.
        national = digits[len(CN_COUNTRY_CODE) :]
        return f"+{digits}" if CN_MOBILE_RE.fullmatch(national) else None
    return f"+{digits}" if 8 <= len(digits) <= 15 else None


def normalise_phone(value: Any, default_country: str = CN_COUNTRY_CODE) -> str | None:
    """A phone number in E.164 form (``+8613800138000``), or None.

    Accepted: full-width digits, spaces, hyphens, dots and parentheses between digits, a
    leading ``+<cc>`` or ``00<cc>``; for China also ``86`` without a plus (``86-138...``).
    A number without a country code belongs to ``default_country``: for China it must be an
    11-digit mobile (``1[3-9]`` and nine digits); elsewhere one trunk ``0`` is dropped.
    A mainland number must be a mobile; another country's number is kept when it has 8 to
    15 digits in all (no per-country numbering plan is checked). Idempotent: an E.164
    result normalises to itself.

    Args:
        value: Any value; only ``str`` is used.
        default_country: Country calling code for numbers written without one.

    Raises:
        ValueError: when ``default_country`` is not a 1-3 digit calling code.
    """
    if not isinstance(default_country, str) or not _COUNTRY_CODE.fullmatch(default_country):
        raise ValueError(f"default_country must be a calling code of 1-3 digits such as '86', got {default_country!r}")
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH:
        return None
    text = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", value))
    if not _PHONE_BODY.fullmatch(text):
        return None
    if text.startswith("+"):
        return _international(text[1:])
    if text.startswith("00"):
        return _international(text[2:])
    if default_country == CN_COUNTRY_CODE:
        if CN_MOBILE_RE.fullmatch(text):
            return f"+{CN_COUNTRY_CODE}{text}"
        if len(text) == 13 and text.startswith(CN_COUNTRY_CODE):
            return _international(text)
        return None
    national = text[1:] if text.startswith("0") else text
    candidate = _international(default_country + national)
    # Re-checking the result guarantees idempotence even where the default country's
    # digits and the national number combine into another country's code.
    return candidate if candidate is not None and _international(candidate[1:]) == candidate else None


# ----------------------------------------------------------------------------- e-mail

# Deliberately narrower than RFC 5322: letters, digits and ``._%+-`` in the local part
# (no leading, trailing or doubled dot), LDH labels and an alphabetic TLD in the domain.
# ``*`` is not allowed, so a masked address (``z***@qq.com``) never passes as a real one.
_EMAIL_RE = re.compile(
    r"(?P<local>[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})"
)


def normalise_email(value: Any) -> str | None:
    """NFKC, trimmed and lower-cased e-mail address, or None when it does not look like one.

    Lower-casing the local part is technically lossy, but every mainstream provider treats it
    case-insensitively and people re-register as ``Zhang@QQ.COM``. Internationalised
    addresses (non-ASCII local part or domain) are rejected. Idempotent.

    Args:
        value: Any value; only ``str`` is used.
    """
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH:
        return None
    text = unicodedata.normalize("NFKC", value).strip().lower()
    if len(text) > 254 or not _EMAIL_RE.fullmatch(text) or len(text.partition("@")[0]) > 64:
        return None
    return text


def email_domain(email: Any) -> str | None:
    """The domain of a (normalisable) e-mail address, lower-case: ``"qq.com"``; else None."""
    normalised = normalise_email(email)
    return normalised.partition("@")[2] if normalised else None
