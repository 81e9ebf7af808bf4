"""What every builder of the sample shop shares: the layout and rates, randomness (keyed ids,
weighted picks), time, and the identifiers people type (resident IDs, phone numbers, money).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

import numpy as np

from common.privacy import id_check_char
from shoplake.generate.reference import DAY_HOURS, NIGHT_HOURS, PAYMENT_WEIGHTS

SOURCE_FOLDER = "shop"
MANIFEST_NAME = "_manifest.json"
TIME_ZONE = "Asia/Shanghai"
UTC_OFFSET_S = 8 * 3600  # Asia/Shanghai has had no DST since 1991
DAY_S = 86_400
NEVER = 1 << 40  # the stop day of customers who never churn

# Field order exactly as declared in conf/sources/shop.yaml.
CUSTOMER_FIELDS = (
    "customer_id",
    "name",
    "phone",
    "email",
    "id_number",
    "gender",
    "birth_date",
    "province",
    "city",
    "address",
    "registered_at",
    "member_level",
    "marketing_consent",
    "updated_at",
)
PRODUCT_FIELDS = (
    "product_id",
    "product_name",
    "category_l1",
    "category_l2",
    "category_l3",
    "brand",
    "price",
    "updated_at",
)
ORDER_FIELDS = (
    "order_id",
    "user_id",
    "order_time",
    "status",
    "payment_method",
    "channel",
    "coupon_code",
    "discount_amount",
    "total_amount",
    "currency",
    "updated_at",
)
ORDER_LINE_FIELDS = (
    "order_id",
    "line_no",
    "product_id",
    "quantity",
    "unit_price",
    "line_amount",
    "updated_at",
)
TOUCH_FIELDS = (
    "touch_id",
    "campaign_id",
    "user_id",
    "channel",
    "variant",
    "sent_at",
    "opened",
    "clicked",
    "converted",
    "cost",
)

# Share of records planted as each kind of malformed record (at least 2 of each).
CSV_MALFORMED_RATE = 0.001
EVENT_MALFORMED_RATE = 0.0004
EXACT_DUP_RATE = 0.003
NEAR_DUP_RATE = 0.002
MIN_PLANTED = 2
# generate(duplicates=...): "same_phone" (the default) writes every second registration with
# the first one's number (only formatted differently), so exact keys find them all; "varied"
# plants more of them with the variation people produce when they register again
# (:data:`DUPLICATE_VARIATIONS`), for probabilistic identity resolution.
DUPLICATE_STYLES = ("same_phone", "varied")
VARIED_DUP_SHARE = 0.03
# Genuine events with the same (user or session, type, product/query) are at least
# this far apart, so a content dedup window below it cannot merge real events;
# near-duplicates trail their original by 1-3 s.
MIN_SAME_CONTENT_GAP_MS = 30_000
NEAR_DUP_DELAY_MS = (1_000, 3_000)
LEGACY_CLIENT_SHARE = 0.04  # sessions from an old client that sends no event_id
ANON_SESSIONS_PER_USER_DAY = 0.02
# Why a session happens: browsing, a campaign conversion, an anonymous visit, a regular's reorder.
ORGANIC, CAMPAIGN, ANON, ROUTINE = range(4)

PAIR_BASKET_SHARE = 0.25  # share of baskets that include one planted pair
# Latent tastes below category level: every brand belongs to one of TASTE_CLUSTERS
# clusters (so a cluster cuts across categories: a brand-affinity "style"), every
# person likes one or two of them, and TASTE_SHARE of a known person's product draws
# (views, carts, basket lines) come from their clusters, weighted by popularity within
# the cluster (flattened by TASTE_POP_EXPONENT, so a cluster's tail is reached too).
# Only a model of who-likes-what can exploit this; popularity, global or per category,
# cannot.
TASTE_CLUSTERS = 8
TASTE_SHARE = 0.7
TASTE_TWO_CLUSTERS_SHARE = 0.5  # people with a second cluster
TASTE_SECOND_SHARE = 0.35  # of a two-cluster person's taste draws, from the second
TASTE_POP_EXPONENT = 0.3

EVENT_TYPES = ("view", "search", "add_to_cart", "remove_from_cart", "favourite", "share", "purchase")
VIEW, SEARCH, ADD, REMOVE, FAV, SHARE, PURCHASE = range(7)
PAGES = ("product_detail", "search", "cart", "checkout", "home", "recommend", "live_stream", "campaign_landing")
P_DETAIL, P_SEARCH, P_CART, P_CHECKOUT, P_HOME, P_RECOMMEND, P_LIVE, P_CAMPAIGN = range(8)
CHANNELS = ("app", "mini_program", "web")
APP, MINI, WEB = range(3)
IPV6_SHARE = 0.06

DISTINCT_SPREAD = 0.3
DISTINCT_NEW_DAYS = 45
SEGMENT_STYLES = ("overlapping", "distinct")
CHURN_SHARE_OF_REGULAR = 0.4
# Regular buyers also reorder on a personal cycle (every 4-8 days), which makes both
# the segment and the churners' stop unmistakable.
REGULAR_CYCLE_DAYS = (4, 8)

MOBILE_RE = re.compile(r"^1[3-9][0-9]{9}$")
# How the second registration of a duplicated person writes the same number.
PHONE_STYLES = ("+86 dashed", "+86 spaced", "spaced", "dashed", "86-", "+86", "0086 spaced")

_ID_RE = re.compile(r"^[0-9]{17}[0-9X]$")


# ---------------------------------------------------------------------------- identifiers
def id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a resident ID number's first 17 digits.

    The rule is :func:`common.privacy.id_check_char`'s (one definition); the privacy tests
    check it against published and hand-worked examples, not against generated numbers.

    Raises:
        ValueError: when ``first17`` is not exactly 17 ASCII digits.
    """
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    return id_check_char(first17)


def is_valid_id_number(value: str) -> bool:
    """True for an 18-character resident ID whose check character is right (upper-case X only)."""
    return bool(_ID_RE.match(value)) and id_check_digit(value[:17]) == value[17]


def id_number_facts(value: str) -> tuple[date, str]:
    """(birth date, gender "M"/"F") encoded in a valid resident ID number."""
    birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    return birth, ("M" if int(value[16]) % 2 == 1 else "F")


def format_phone(phone: str, style: str) -> str:
    """Write an 11-digit mobile number the way people type it (see :data:`PHONE_STYLES`)."""
    a, b, c = phone[:3], phone[3:7], phone[7:]
    forms = {
        "plain": phone,
        "+86 dashed": f"+86 {a}-{b}-{c}",
        "+86 spaced": f"+86 {a} {b} {c}",
        "spaced": f"{a} {b} {c}",
        "dashed": f"{a}-{b}-{c}",
        "86-": f"86-{phone}",
        "+86": f"+86{phone}",
        "0086 spaced": f"0086 {a} {b} {c}",
    }
    try:
        return forms[style]
    except KeyError:
        raise ValueError(f"unknown phone style {style!r} (known: {', '.join(forms)})") from None


def normalise_phone(value: str) -> str | None:
    """The 11-digit mainland mobile number in ``value`` (country code and separators dropped), or None."""
    digits = re.sub(r"[^0-9]", "", value)
    if len(digits) == 15 and digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits if MOBILE_RE.match(digits) else None


def money(cents: int) -> str:
    """Non-negative cents as a decimal string with two places (``1990`` -> ``"19.90"``)."""
    return f"{cents // 100}.{cents % 100:02d}"


def default_products(users: int) -> int:
    """The catalogue size when none is given: one product per ten people, at least 200."""
    return max(200, users // 10)


# ---------------------------------------------------------------------------- randomness
def mix64(values: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection on uint64 (SplitMix64 finaliser): distinct inputs give distinct ids."""
    x = values.astype(np.uint64) + np.uint64(key & 0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def hex_ids(counter: np.ndarray, key: int) -> list[str]:
    """16-hex-digit ids, unique for unique counters (:func:`mix64`)."""
    return [f"{v:016x}" for v in mix64(counter, key).tolist()]


def cdf(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """The cumulative distribution of ``weights`` (last entry exactly 1) for :func:`pick`."""
    w = np.asarray(weights, dtype=float)
    c = np.cumsum(w / w.sum())
    c[-1] = 1.0
    return c


def pick(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices drawn with the probabilities of a :func:`cdf`."""
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


def planted_count(rng: np.random.Generator, n: int, rate: float) -> int:
    """How many malformed copies to plant among ``n`` records: about ``rate``, at least two."""
    return max(MIN_PLANTED, int(rng.binomial(n, rate)))


DAY_CDF = cdf(DAY_HOURS)
NIGHT_CDF = cdf(NIGHT_HOURS)
# segment_style="distinct": night owls' sessions start between 22:00 and 03:59 but for a trickle.
DISTINCT_NIGHT_CDF = cdf(NIGHT_HOURS[:4] + (0.3,) * 18 + NIGHT_HOURS[22:])
PAY_CDF = cdf(PAYMENT_WEIGHTS)


# ---------------------------------------------------------------------------- time
def ts_text(base_ts: np.datetime64, secs: Sequence[int] | np.ndarray) -> list[str]:
    """Seconds after ``base_ts`` as ``YYYY-MM-DD HH:MM:SS`` (shop-local wall-clock time)."""
    arr = base_ts + np.asarray(secs, dtype=np.int64).astype("timedelta64[s]")
    return [s.replace("T", " ") for s in np.datetime_as_string(arr, unit="s").tolist()]


def date_text(base_ts: np.datetime64, secs: Sequence[int] | np.ndarray) -> list[str]:
    """Seconds after ``base_ts`` as ``YYYY-MM-DD``."""
    arr = base_ts + np.asarray(secs, dtype=np.int64).astype("timedelta64[s]")
    return np.datetime_as_string(arr, unit="D").tolist()
