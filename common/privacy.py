"""Privacy building blocks: standardise, pseudonymise, mask and generalise personal data.

Everything here is a pure Python function first. The Spark column functions at the
end wrap *the same* Python functions in pandas UDFs, so a value gets the same answer
in a unit test, a notebook and a job, and no rule is written twice.

Contract of the pure functions: they never raise on bad *data* (any value, any type,
any text) and return None when the input cannot be used. They do raise ``ValueError``
on bad *configuration* (an empty secret, a malformed country code, unsorted age bands),
because that is a programming error that must stop the job, not silently null a column.
No message ever quotes the personal data it was given.

Module imports are standard library only: the Python workers import this module to run
the UDFs, and pyspark/pandas are imported inside the functions that need them.

Formats handled are the ones the sample shop produces (see ``shoplake.generate``): mainland
mobiles typed as ``13800138000``, ``+86 138-0013-8000``, ``138 0013 8000``, ``86-13800138000``,
``0086 138 0013 8000``; 18-character resident ID numbers with an ISO 7064 MOD 11-2 check
character; IPv4 and IPv6 client addresses.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

__all__ = [
    "DEFAULT_AGE_BANDS",
    "PII_KINDS",
    "ResidentId",
    "age_band",
    "age_band_col",
    "email_domain",
    "email_normalised",
    "find_pii",
    "ip_prefix",
    "mask_digits",
    "mask_email",
    "mask_phone",
    "normalise_email",
    "normalise_phone",
    "normalise_text",
    "parse_resident_id",
    "phone_e164",
    "phone_masked",
    "pii_kinds",
    "pseudonym",
    "pseudonym_col",
    "resident_id_birth_date",
    "resident_id_gender",
    "resident_id_valid",
    "text_normalised",
    "truncate_ip",
]

# Longer inputs are not phone numbers, e-mail addresses, ID numbers or IPs; refusing them
# early keeps every regex here linear on hostile data.
_MAX_FIELD = 320

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
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
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
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
        return None
    text = unicodedata.normalize("NFKC", value).strip().lower()
    if len(text) > 254 or not _EMAIL_RE.fullmatch(text) or len(text.partition("@")[0]) > 64:
        return None
    return text


def email_domain(email: Any) -> str | None:
    """The domain of a (normalisable) e-mail address, lower-case: ``"qq.com"``; else None."""
    normalised = normalise_email(email)
    return normalised.partition("@")[2] if normalised else None


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
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
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


def _valid_id_birth_date(value: Any) -> date | None:
    parsed = parse_resident_id(value)
    return parsed.birth_date if parsed is not None and parsed.valid else None


def _valid_id_gender(value: Any) -> str | None:
    parsed = parse_resident_id(value)
    return parsed.gender if parsed is not None and parsed.valid else None


def _id_valid_or_null(value: Any) -> bool | None:
    if not isinstance(value, str) or not value.strip():
        return None
    parsed = parse_resident_id(value)
    return parsed is not None and parsed.valid


# ----------------------------------------------------------------------------- pseudonyms

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.\-]+")


def pseudonym(secret: bytes, value: Any, namespace: str = "user") -> str | None:
    """Keyed pseudonym: HMAC-SHA256(secret, ``"<namespace>:<value>"``) as 64 hex characters.

    Stable for the same secret, unlinkable without it (unlike a plain SHA-256, which anyone
    can recompute from a guessed phone number). The namespace keeps pseudonyms of different
    kinds of identifier apart (a customer id and a phone never share a pseudonym). The
    value is used exactly as given: normalise it first (e.g. :func:`normalise_phone`).

    Args:
        secret: The key, from the environment. Use at least 32 random bytes.
        value: The identifier. None, non-strings and ``""`` give None: hashing a missing
            id would merge every record that lacks one into a single fake person.
        namespace: Letters, digits, ``_.-``; no ``:``, so that namespaces cannot collide.

    Raises:
        ValueError: for an empty secret or a malformed namespace.
        TypeError: when ``secret`` is not bytes (e.g. an un-encoded ``str``).
    """
    if not isinstance(secret, (bytes, bytearray, memoryview)):
        raise TypeError(f"secret must be bytes (encode the environment variable), got {type(secret).__name__}")
    if len(secret) == 0:
        raise ValueError("pseudonym secret is empty: set it from the environment, there is no default")
    if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
        raise ValueError(f"namespace must match {_NAMESPACE_RE.pattern}, got {namespace!r}")
    if not isinstance(value, str) or value == "":
        return None
    # surrogatepass: arbitrary Python text (lone surrogates included) still gets a pseudonym.
    message = f"{namespace}:{value}".encode("utf-8", "surrogatepass")
    return hmac.new(bytes(secret), message, "sha256").hexdigest()


# ----------------------------------------------------------------------------- masking


def mask_digits(value: Any, keep_start: int, keep_end: int, mask: str = "*") -> str | None:
    """Replace digits by ``mask``, keeping the first ``keep_start`` and last ``keep_end`` digits.

    Other characters stay where they are, so the result has the input's length:
    ``mask_digits("138-0013-8000", 3, 4) == "138-****-8000"``. When the value has no more
    digits than would be kept, every digit is masked: a mask must always hide something.

    Args:
        value: Any value; only ``str`` is used (None otherwise).
        keep_start: Digits to keep at the start (>= 0).
        keep_end: Digits to keep at the end (>= 0).
        mask: One character that is not a digit.

    Raises:
        ValueError: for negative counts or a mask that is not a single non-digit character.
    """
    if keep_start < 0 or keep_end < 0:
        raise ValueError(f"keep_start and keep_end must be >= 0, got {keep_start} and {keep_end}")
    if len(mask) != 1 or mask.isdigit():
        raise ValueError(f"mask must be one non-digit character, got {mask!r}")
    if not isinstance(value, str):
        return None
    total = sum(1 for ch in value if ch.isdigit())
    if total <= keep_start + keep_end:
        keep_start = keep_end = 0
    out, seen = [], 0
    for ch in value:
        if ch.isdigit():
            out.append(ch if seen < keep_start or seen >= total - keep_end else mask)
            seen += 1
        else:
            out.append(ch)
    return "".join(out)


def mask_phone(e164_or_raw: Any, default_country: str = CN_COUNTRY_CODE) -> str | None:
    """Display form of a phone number keeping the first 3 and last 4 digits.

    A mainland mobile shows its national number: ``138****8000``. Other countries keep the
    plus and mask the international digits the same way (``+447*****0123``), since the
    country-code length is not known. None when the value is not a usable phone number.
    """
    e164 = normalise_phone(e164_or_raw, default_country)
    if e164 is None:
        return None
    if e164.startswith(f"+{CN_COUNTRY_CODE}"):
        return mask_digits(e164[1 + len(CN_COUNTRY_CODE) :], 3, 4)
    return "+" + (mask_digits(e164[1:], 3, 4) or "")


def mask_email(email: Any) -> str | None:
    """``zhang.san@qq.com`` -> ``z***@qq.com``: first character of the local part, the domain."""
    normalised = normalise_email(email)
    if normalised is None:
        return None
    local, _, domain = normalised.partition("@")
    return f"{local[0]}***@{domain}"


# ----------------------------------------------------------------------------- IP addresses

IPV4_PREFIX = 24
IPV6_PREFIX = 48


def _network(address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int | None = None) -> str:
    """The network of ``address`` at ``prefix`` (capped at /24 or /48), built from integers so
    that a scope id (``fe80::1%eth0``) never reaches the output."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:1.2.3.4 is an IPv4 client behind a dual stack
        prefix = None
    if address.version == 4:
        limit, network_class = IPV4_PREFIX, ipaddress.IPv4Network
    else:
        limit, network_class = IPV6_PREFIX, ipaddress.IPv6Network
    bits = limit if prefix is None else min(prefix, limit)
    return network_class((int(address), bits), strict=False).compressed


def truncate_ip(value: Any) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of an address: ``1.2.3.0/24``, ``2001:db8:1234::/48``.

    An IPv4-mapped IPv6 address is treated as the IPv4 address. Network forms are
    accepted too, so the function is idempotent: a longer prefix is cut to /24 or /48,
    a shorter one (already coarser) is kept. Invalid text gives None.

    Args:
        value: Any value; only ``str`` is used.
    """
    if not isinstance(value, str) or len(value) > _MAX_FIELD:
        return None
    text = unicodedata.normalize("NFKC", value).strip()
    try:
        if "/" not in text:
            return _network(ipaddress.ip_address(text))
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return _network(net.network_address, net.prefixlen)


# ----------------------------------------------------------------------------- age bands

DEFAULT_AGE_BANDS: tuple[int, ...] = (18, 25, 35, 45, 55, 65)


def _band_labels(bands: Sequence[int]) -> tuple[str, ...]:
    if not bands or any(not isinstance(b, int) or isinstance(b, bool) or b < 0 for b in bands):
        raise ValueError(f"age bands must be a non-empty list of non-negative integers, got {list(bands)!r}")
    if any(a >= b for a, b in zip(bands, bands[1:])):
        raise ValueError(f"age bands must be strictly increasing lower bounds, got {list(bands)!r}")
    labels = [f"<{bands[0]}"] if bands[0] > 0 else []
    labels += [f"{lo}-{hi - 1}" for lo, hi in zip(bands, bands[1:])]
    labels.append(f"{bands[-1]}+")
    return tuple(labels)


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        if value != value:  # pandas.NaT is a datetime that is not equal to itself
            return None
        return value.date()
    return value if isinstance(value, date) else None


def age_band(birth_date: Any, as_of: date, bands: Sequence[int] = DEFAULT_AGE_BANDS) -> str | None:
    """The age band on ``as_of`` of someone born on ``birth_date``: ``"25-34"``.

    Age is in completed years (someone born on 29 February turns a year older on 1 March in
    common years). ``bands`` are the lower bounds of each band; the default gives
    ``<18, 18-24, 25-34, 35-44, 45-54, 55-64, 65+``.

    Args:
        birth_date: A ``date`` (``datetime`` accepted); anything else gives None.
        as_of: The reference date, a parameter of the run, never today's date by default.
        bands: Strictly increasing non-negative lower bounds.

    Returns:
        The band label, or None when the birth date is missing, not a date or after ``as_of``.

    Raises:
        ValueError: for malformed ``bands`` or an ``as_of`` that is not a date.
    """
    labels = _band_labels(bands)
    ref = _as_date(as_of)
    if ref is None:
        raise ValueError(f"as_of must be a date, got {as_of!r}")
    born = _as_date(birth_date)
    if born is None or born > ref:
        return None
    age = ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))
    index = sum(1 for b in bands if age >= b)  # number of lower bounds reached
    return labels[index - (0 if bands[0] > 0 else 1)]


# ----------------------------------------------------------------------------- leak detection

PII_KINDS = ("mobile", "email", "resident_id", "ipv4_full", "ipv6_full")

# Hex runs of 16+ characters with at least one letter are hashes and opaque ids
# (pseudonyms, event ids, session ids); the decimal digits inside them are not numbers,
# so they are not scanned. A run of decimal digits only is still scanned.
_HEX_TOKEN_RE = re.compile(r"(?<![0-9A-Za-z])(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{16,}(?![0-9A-Za-z])")
# A mobile, optionally with +86 / 0086 / 86 and 3-4-4 separators, not inside a longer
# digit run and not the fraction of a decimal number.
_MOBILE_SCAN_RE = re.compile(
    r"(?<![0-9])(?<![0-9]\.)(?:(?:\+|00)?86[ \-.]?)?1[3-9][0-9][ \-.]?[0-9]{4}[ \-.]?[0-9]{4}(?![0-9])"
)
_EMAIL_SCAN_RE = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}")
_ID_SCAN_RE = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_IPV4_SCAN_RE = re.compile(
    r"(?<![0-9.])([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?!\.?[0-9])(?:/([0-9]{1,2})(?![0-9]))?"
)
_IPV6_SCAN_RE = re.compile(r"(?<![0-9A-Za-z:.])([0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)(?:%[0-9A-Za-z_.\-]+)?(?:/([0-9]{1,3}))?")


def _outside(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return not any(s < end and start < e for s, e in spans)


def _ipv4_leaks(text: str) -> bool:
    for m in _IPV4_SCAN_RE.finditer(text):
        octets = [int(g) for g in m.groups()[:4]]
        if any(o > 255 for o in octets):
            continue
        prefix = m.group(5)
        if prefix is not None and int(prefix) <= IPV4_PREFIX:
            host_bits = int.from_bytes(bytes(octets), "big") & ((1 << (32 - int(prefix))) - 1)
            if host_bits == 0:
                continue  # a network at /24 or coarser is the generalised form
        return True
    return False


def _ipv6_leaks(text: str) -> bool:
    for m in _IPV6_SCAN_RE.finditer(text):
        candidate = m.group(1)
        if candidate.count(":") < 2:
            continue
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue  # clock times (10:00:00) and other colon-separated text
        if address.ipv4_mapped is not None:
            continue  # reported as ipv4_full by the IPv4 scan
        prefix = m.group(2)
        limit = min(int(prefix), IPV6_PREFIX) if prefix is not None else IPV6_PREFIX
        if int(address) & ((1 << (128 - limit)) - 1):
            return True
    return False


def find_pii(value: Any) -> list[str]:
    """Kinds of personal data visible in ``value``, in :data:`PII_KINDS` order; ``[]`` if none.

    Used by tests that scan silver and gold for leaks, so it aims at few false positives on
    what those layers legitimately hold: 64-hex pseudonyms, masked phones (``138****8000``),
    ``/24`` and ``/48`` prefixes, order ids (``O20240101000001``), timestamps, epoch millis.

    - ``mobile``: ``1[3-9]`` + 9 digits, alone or as ``+86 138-0013-8000`` / ``0086 138 0013
      8000`` / ``86-13800138000``; not inside a longer digit run, not a decimal fraction.
    - ``email``: ``local@domain.tld`` (``*`` is not a local-part character, so masked
      addresses do not count).
    - ``resident_id``: 18 characters not inside a longer digit run, with a valid check
      character and a real birth date (what :func:`parse_resident_id` calls valid).
    - ``ipv4_full``: a dotted quad, unless written as a network of /24 or coarser with zero
      host bits (``1.2.3.0/24``).
    - ``ipv6_full``: a valid IPv6 address with bits set beyond the /48, unless written as
      such a network.

    Digits inside hex runs of 16+ characters are ignored (see ``_HEX_TOKEN_RE``). Text is
    NFKC-normalised first, so full-width digits are found too.

    Args:
        value: Any value; only ``str`` is scanned.
    """
    if not isinstance(value, str) or not value:
        return []
    text = unicodedata.normalize("NFKC", value)
    opaque = [m.span() for m in _HEX_TOKEN_RE.finditer(text)]
    found = set()
    if any(_outside(opaque, *m.span()) for m in _MOBILE_SCAN_RE.finditer(text)):
        found.add("mobile")
    if _EMAIL_SCAN_RE.search(text):
        found.add("email")
    for m in _ID_SCAN_RE.finditer(text):
        parsed = parse_resident_id(m.group())
        if parsed is not None and parsed.valid and _outside(opaque, *m.span()):
            found.add("resident_id")
            break
    if "." in text and _ipv4_leaks(text):
        found.add("ipv4_full")
    if ":" in text and _ipv6_leaks(text):
        found.add("ipv6_full")
    return [kind for kind in PII_KINDS if kind in found]


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
    return _series_udf(_valid_id_birth_date, "date", "resident_id_birth_date")(col)


def resident_id_gender(col: Column | str) -> Column:
    """``"M"``/``"F"`` from a resident ID number's 17th digit; null unless the number is valid."""
    return _series_udf(_valid_id_gender, "string", "resident_id_gender")(col)


def resident_id_valid(col: Column | str) -> Column:
    """Whether a resident ID number is valid; null for a null or blank value, false for junk."""
    return _series_udf(_id_valid_or_null, "boolean", "resident_id_valid")(col)


def age_band_col(col: Column | str, as_of: date, bands: Sequence[int] = DEFAULT_AGE_BANDS) -> Column:
    """Column version of :func:`age_band` for a date column; ``as_of`` and ``bands`` checked on the driver."""
    age_band(None, as_of, bands)
    fn = functools.partial(age_band, as_of=as_of, bands=tuple(bands))
    return _series_udf(fn, "string", "age_band")(col)


def pii_kinds(col: Column | str) -> Column:
    """Column version of :func:`find_pii`: an array of kinds, empty when the value looks clean."""
    return _series_udf(find_pii, "array<string>", "pii_kinds")(col)
