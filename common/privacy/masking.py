"""What replaces or coarsens personal data: keyed pseudonyms (HMAC), masks, truncated IPs,
age bands."""

from __future__ import annotations

import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from common.privacy.normalise import CN_COUNTRY_CODE, MAX_FIELD_LENGTH, normalise_email, normalise_phone

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
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH:
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
