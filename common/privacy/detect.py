"""A detector of personal data left in text (phones, e-mails, ID numbers, IPs), for the checks
that nothing raw passes bronze."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from common.privacy.masking import IPV4_PREFIX, IPV6_PREFIX
from common.privacy.resident_id import parse_resident_id

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
