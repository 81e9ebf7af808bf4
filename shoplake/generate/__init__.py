"""Deterministic, seeded generator of realistic landing data for the sample shop.

:func:`generate` writes the layout declared in ``conf/sources/shop.yaml`` below
``<out_dir>/shop`` (customers, products, daily event files, orders, order lines,
campaign touches) and ``<out_dir>/shop/_manifest.json``: the ground truth planted
in the data (duplicates, segments, co-purchased pairs, taste clusters, churners,
campaign effects, malformed records per quarantine reason) that the later jobs are
tested against.

Shoppers: each person has a segment (how often they come, browse and buy), two
favourite top-level categories, and one or two latent taste clusters of brands
that cut across categories (see ``TASTE_CLUSTERS``): most product draws follow the
tastes, so who-likes-what is learnable below category level, as in a real shop.

Time model: every clock value is simulated as integer seconds of shop-local time
(Asia/Shanghai, UTC+8, no daylight saving) since ``start_date`` 00:00. CSV
timestamps are written as that local wall-clock time; event ``ts`` values are the
same instants as epoch milliseconds (UTC). Event files are split by local date.

Determinism: all randomness comes from ``numpy.random.default_rng`` streams derived
from the seed (one stream per concern, so changing how one table is generated does
not reshuffle the others); nothing reads the wall clock and nothing iterates over
sets. The same ``(users, days, seed, start_date)`` gives byte-identical files
(``tests/unit/test_generate.py`` pins the SHA-256 of two small shops).

Malformed records are *extra* corrupted copies of records that are also delivered
intact, so quarantining them loses none of the planted truth.

Layout: the literal data (names, places, catalogue, devices, calendar, segments,
campaigns, planted defects, manifest notes) are JSON resources in ``data/``, read by
:mod:`shoplake.generate.reference`; :mod:`~shoplake.generate.helpers` holds the shared rates,
randomness, time and identifier helpers; one builder module per landing table
(:mod:`~shoplake.generate.customers` with :mod:`~shoplake.generate.duplicates`,
:mod:`~shoplake.generate.products`, :mod:`~shoplake.generate.events` with
:mod:`~shoplake.generate.sessions`, :mod:`~shoplake.generate.orders`,
:mod:`~shoplake.generate.campaigns`), the people behind the customers in
:mod:`~shoplake.generate.people`, CSV writing in :mod:`~shoplake.generate.files`, the manifest in
:mod:`~shoplake.generate.manifest`, and the run itself in :mod:`~shoplake.generate.shop`.
"""

from __future__ import annotations

from shoplake.generate.helpers import (
    CUSTOMER_FIELDS,
    DISTINCT_NEW_DAYS,
    DISTINCT_SPREAD,
    DUPLICATE_STYLES,
    MANIFEST_NAME,
    ORDER_FIELDS,
    ORDER_LINE_FIELDS,
    PHONE_STYLES,
    PRODUCT_FIELDS,
    SEGMENT_STYLES,
    SOURCE_FOLDER,
    TASTE_CLUSTERS,
    TIME_ZONE,
    TOUCH_FIELDS,
    VARIED_DUP_SHARE,
    default_products,
    format_phone,
    id_check_digit,
    id_number_facts,
    is_valid_id_number,
    money,
    normalise_phone,
)
from shoplake.generate.reference import (
    CAMPAIGNS,
    CATEGORY_TREE,
    CITIES,
    DISTINCT_SEGMENTS,
    DUPLICATE_VARIATIONS,
    LAPSE_PER_DAY,
    MIN_PRODUCTS,
    SEGMENTS,
    Campaign,
    Segment,
)
from shoplake.generate.shop import generate

__all__ = [
    "CAMPAIGNS",
    "CATEGORY_TREE",
    "CITIES",
    "CUSTOMER_FIELDS",
    "DISTINCT_NEW_DAYS",
    "DISTINCT_SEGMENTS",
    "DISTINCT_SPREAD",
    "DUPLICATE_STYLES",
    "DUPLICATE_VARIATIONS",
    "LAPSE_PER_DAY",
    "MANIFEST_NAME",
    "MIN_PRODUCTS",
    "ORDER_FIELDS",
    "ORDER_LINE_FIELDS",
    "PHONE_STYLES",
    "PRODUCT_FIELDS",
    "SEGMENTS",
    "SEGMENT_STYLES",
    "SOURCE_FOLDER",
    "TASTE_CLUSTERS",
    "TIME_ZONE",
    "TOUCH_FIELDS",
    "VARIED_DUP_SHARE",
    "Campaign",
    "Segment",
    "default_products",
    "format_phone",
    "generate",
    "id_check_digit",
    "id_number_facts",
    "is_valid_id_number",
    "money",
    "normalise_phone",
]
