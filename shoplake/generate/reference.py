"""The sample shop's reference data: names, places, products, devices, calendars, segments,
campaigns and planted defects, read from the JSON files in ``shoplake/generate/data/``.

The files are package resources (``importlib.resources``), so they load the same from a source
checkout, an installed wheel and the ``--py-files`` zip. Arrays become tuples, as the builders
expect; every file's ``_comment`` says what its numbers mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any


def _frozen(value: Any) -> Any:
    """JSON arrays as tuples (recursively), objects as dicts without their ``_comment``."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items() if k != "_comment"}
    return value


def load(name: str) -> dict[str, Any]:
    """One resource file of ``shoplake/generate/data/`` (e.g. ``"places.json"``), arrays as tuples."""
    text = (files(__package__) / "data" / name).read_text(encoding="utf-8")
    return _frozen(json.loads(text))


@dataclass(frozen=True)
class Segment:
    """A planted behavioural segment and the parameters that make it recognisable."""

    name: str
    share: float
    sessions_per_day: float
    mean_events: float  # browse events per session (geometric)
    purchase_prob: float  # share of sessions that end in an order
    extra_lines: float  # Poisson mean of order lines beyond the first
    coupon_prob: float
    price_bias: int  # -1 picks the cheaper of two candidate products, +1 the dearer
    night: bool
    type_probs: tuple[float, float, float, float, float, float]  # view..share


@dataclass(frozen=True)
class Campaign:
    """A campaign with its variants' true conversion rates (the rate each touch converts at)."""

    campaign_id: str
    name: str
    channel: str
    send_at: float  # fraction of the window
    audience_share: float  # of eligible (consenting, active) customers
    variants: tuple[tuple[str, float, float], ...]  # (variant, true conversion rate, share of audience)
    coupon: tuple[str, int, int, int]


# ---------------------------------------------------------------------------- places
_places = load("places.json")
# (province, city, tier, districts as (6-digit administrative code, name)).
CITIES: tuple[tuple[str, str, int, tuple[tuple[str, str], ...]], ...] = tuple(
    (c["province"], c["city"], c["tier"], c["districts"]) for c in _places["cities"]
)
TIER_WEIGHT: dict[int, float] = {int(k): v for k, v in _places["tier_weight"].items()}
STREETS: tuple[str, ...] = _places["streets"]
COMPLEXES: tuple[str, ...] = _places["complexes"]

# ---------------------------------------------------------------------------- people
_names = load("names.json")
SURNAMES: tuple[tuple[str, str, float], ...] = _names["surnames"]
GIVEN_MALE: tuple[tuple[str, str], ...] = _names["given_male"]
GIVEN_FEMALE: tuple[tuple[str, str], ...] = _names["given_female"]
NAME_TYPOS: dict[str, str] = _names["name_typos"]
# Given-name characters read the same (the pinyin input method offers them side by side).
HOMOPHONES: dict[str, tuple[str, ...]] = {
    char: tuple(sorted({c for c, p in GIVEN_MALE + GIVEN_FEMALE if p == sound}))
    for char, sound in GIVEN_MALE + GIVEN_FEMALE
}

_contacts = load("contacts.json")
EMAIL_DOMAINS: tuple[tuple[str, float], ...] = _contacts["email_domains"]
EMAIL_NICKS: tuple[str, ...] = _contacts["email_nicks"]
PHONE_PREFIXES: tuple[str, ...] = _contacts["phone_prefixes"]

_devices = load("devices.json")
PHONES: tuple[tuple[str, int], ...] = _devices["phones"]
COMPUTERS: tuple[str, ...] = _devices["computers"]
IPV4_FIRST_OCTETS: tuple[int, ...] = _devices["ipv4_first_octets"]
IPV6_PREFIXES: tuple[str, ...] = _devices["ipv6_prefixes"]
PAYMENT_METHODS: tuple[str, ...] = _devices["payment_methods"]
PAYMENT_WEIGHTS: tuple[float, ...] = _devices["payment_weights"]

# ---------------------------------------------------------------------------- catalogue
_catalogue = load("catalogue.json")
# (l1, l2, l3, price range in yuan, popularity weight, brands, descriptors).
CATEGORY_TREE: tuple[tuple[str, str, str, float, float, float, tuple[str, ...], tuple[str, ...]], ...] = tuple(
    (c["l1"], c["l2"], c["l3"], c["price_min"], c["price_max"], c["weight"], c["brands"], c["descriptors"])
    for c in _catalogue["categories"]
)
# The smallest catalogue: every third-level category gets two products.
MIN_PRODUCTS = 2 * len(CATEGORY_TREE)
PAIR_CATEGORIES: tuple[tuple[str, str], ...] = _catalogue["pair_categories"]
QUERY_TEMPLATES: tuple[str, ...] = _catalogue["query_templates"]
COUPONS: tuple[tuple[str, int, int, int], ...] = _catalogue["coupons"]
NEW_USER_COUPON: tuple[str, int, int, int] = _catalogue["new_user_coupon"]
VIP_COUPON: tuple[str, int, int, int] = _catalogue["vip_coupon"]
FEMALE_TASTE: dict[str, float] = _catalogue["l1_taste"]["female"]
MALE_TASTE: dict[str, float] = _catalogue["l1_taste"]["male"]

# ---------------------------------------------------------------------------- calendar
_calendar = load("calendar.json")
DAY_HOURS: tuple[float, ...] = _calendar["day_hours"]
NIGHT_HOURS: tuple[float, ...] = _calendar["night_hours"]
# Shopping festivals (month, day) -> traffic multiplier.
FESTIVALS: dict[tuple[int, int], float] = {(m, d): v for m, d, v in _calendar["festivals"]}
WEEKDAY_MULT: tuple[float, ...] = _calendar["weekday_mult"]

# ---------------------------------------------------------------------------- segments
_segments = load("segments.json")
SEGMENTS: tuple[Segment, ...] = tuple(Segment(**s) for s in _segments["segments"])
SEG_INDEX = {s.name: i for i, s in enumerate(SEGMENTS)}
# ``segment_style="distinct"`` (the segmentation tests' shop): the same seven segments
# drawn apart, so the planted groups are what clustering can recover. In the default
# ("overlapping") shop most occasional buyers and browsers never order and look alike,
# VIPs and regulars differ in degree, and a supervised model on profile features
# reaches only ARI 0.72. Here occasional buyers buy when they come, browsers almost
# never do, VIPs come, browse and spend far more, night owls keep to the night, new
# customers joined in the last DISTINCT_NEW_DAYS days, and each person's session and
# purchase rates stray DISTINCT_SPREAD times as far from their segment's mean.
DISTINCT_SEGMENTS: tuple[Segment, ...] = tuple(
    replace(s, **changes) for s, changes in zip(SEGMENTS, _segments["distinct_changes"], strict=True)
)
ANON_TYPE_PROBS: tuple[float, ...] = _segments["anon_type_probs"]
# Attrition (``generate(attrition=...)``, off by default): every customer may leave for
# good, with a constant daily hazard per segment counted from their first active day,
# the customer-base process churn models are built for. Rare buyers leave soonest;
# the values are per day at attrition=1.0.
LAPSE_PER_DAY: dict[str, float] = _segments["lapse_per_day"]
MEMBER_LEVELS: tuple[str, ...] = _segments["member_levels"]
MEMBER_LEVEL_PROBS: dict[str, tuple[float, ...]] = _segments["member_level_probs"]
MEMBER_LEVEL_PROBS_OTHER: tuple[float, ...] = _segments["member_level_probs_other"]

# ---------------------------------------------------------------------------- campaigns
_campaigns = load("campaigns.json")
CAMPAIGNS: tuple[Campaign, ...] = tuple(Campaign(**c) for c in _campaigns["campaigns"])
# Tracked opens and clicks per channel; cost per message sent (ten-thousandths of a yuan).
CHANNEL_OPEN: dict[str, float] = _campaigns["channel_open"]
CHANNEL_CLICK: dict[str, float] = _campaigns["channel_click"]
CHANNEL_COST: dict[str, int] = _campaigns["channel_cost"]

# ---------------------------------------------------------------------------- planted defects
_malformed = load("malformed.json")
BAD_TIMESTAMPS: tuple[str, ...] = _malformed["bad_timestamps"]
BAD_NUMBERS: tuple[str, ...] = _malformed["bad_numbers"]
BAD_INTEGERS: tuple[str, ...] = _malformed["bad_integers"]
BAD_BOOLEANS: tuple[str, ...] = _malformed["bad_booleans"]
BAD_EVENT_TS: tuple[str, ...] = _malformed["bad_event_ts"]
BAD_GBK: tuple[bytes, ...] = tuple(bytes.fromhex(h) for h in _malformed["bad_gbk_hex"])
BAD_UTF8: tuple[bytes, ...] = tuple(bytes.fromhex(h) for h in _malformed["bad_utf8_hex"])

# Per field, the chance of each variation in a varied second registration (drawn independently
# per field; the rest of the time the field is written as in the first registration).
DUPLICATE_VARIATIONS: dict[str, tuple[tuple[str, float], ...]] = load("duplicates.json")["variations"]

# How to read the planted truth; written into the manifest for the jobs and tests that use it.
_notes = load("notes.json")
NOTES: dict[str, str] = _notes["notes"]
VARIED_NOTES: dict[str, str] = _notes["varied_notes"]
