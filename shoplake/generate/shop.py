"""One generation run: :class:`ShopGenerator` holds the run's state and random streams, and the
builders (one per landing table, each in its own module) add what they draw to it."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from shoplake.generate.campaigns import CampaignBuilder
from shoplake.generate.customers import CustomerBuilder
from shoplake.generate.events import EventBuilder
from shoplake.generate.files import CsvFiles, FileSink, clear_old_files
from shoplake.generate.helpers import (
    DAY_S,
    DISTINCT_NIGHT_CDF,
    DUPLICATE_STYLES,
    MANIFEST_NAME,
    NIGHT_CDF,
    SEGMENT_STYLES,
    SOURCE_FOLDER,
    UTC_OFFSET_S,
)
from shoplake.generate.manifest import ManifestBuilder
from shoplake.generate.orders import OrderBuilder
from shoplake.generate.people import PeopleBuilder
from shoplake.generate.products import CatalogueBuilder
from shoplake.generate.reference import DISTINCT_SEGMENTS, MIN_PRODUCTS, SEGMENTS

logger = logging.getLogger(__name__)

# One stream per concern, so changing how one table is generated does not reshuffle the
# others. New streams go at the end: the first ones stay what they were (spawn is by position).
STREAMS = (
    "people",
    "catalogue",
    "campaigns",
    "sessions",
    "events",
    "orders",
    "planting",
    "ids",
    "tastes",
    "attrition",
    "duplicates",
    "launches",
)
# Held-back products launch on a day drawn from the first half of the window's last
# NEW_PRODUCT_DAYS days, so they sell for a week or more inside a 14-day test period.
NEW_PRODUCT_DAYS = 14


def _check(
    users: int,
    days: int,
    attrition: float,
    segment_style: str,
    products: int | None,
    duplicates: str,
    new_products: float = 0.0,
) -> None:
    if not 0.0 <= new_products <= 0.5:
        raise ValueError(f"new_products must be a share between 0 and 0.5 of the catalogue, got {new_products}")
    if duplicates not in DUPLICATE_STYLES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_STYLES}, got {duplicates!r}")
    if users <= 0 or days <= 0:
        raise ValueError(f"users and days must be positive, got users={users}, days={days}")
    if products is not None and products < MIN_PRODUCTS:
        raise ValueError(f"products must be at least {MIN_PRODUCTS} (two per third-level category), got {products}")
    if not 0.0 <= attrition <= 100.0:
        raise ValueError(f"attrition must be between 0 and 100 (a multiplier of LAPSE_PER_DAY), got {attrition}")
    if segment_style not in SEGMENT_STYLES:
        raise ValueError(f"segment_style must be one of {SEGMENT_STYLES}, got {segment_style!r}")


class ShopGenerator(
    CsvFiles,
    CatalogueBuilder,
    PeopleBuilder,
    CustomerBuilder,
    CampaignBuilder,
    EventBuilder,
    OrderBuilder,
    ManifestBuilder,
):
    """One generation run; :meth:`run` builds the world, writes every file and returns the manifest."""

    def __init__(
        self,
        out_dir: Path,
        users: int,
        days: int,
        seed: int,
        start_date: date,
        attrition: float = 0.0,
        segment_style: str = "overlapping",
        products: int | None = None,
        duplicates: str = "same_phone",
        new_products: float = 0.0,
    ) -> None:
        _check(users, days, attrition, segment_style, products, duplicates, new_products)
        self.new_products = new_products
        self.today = 0  # the simulated day, for product launches
        self.duplicates = duplicates
        self.attrition = attrition
        self.segment_style = segment_style
        self.products = products
        distinct = segment_style == "distinct"
        self.segments = DISTINCT_SEGMENTS if distinct else SEGMENTS
        self.night_cdf = DISTINCT_NIGHT_CDF if distinct else NIGHT_CDF
        self.out_dir = out_dir
        self.P = users
        self.days = days
        self.seed = seed
        self.start = start_date
        self.end_s = days * DAY_S
        self.epoch0 = (start_date - date(1970, 1, 1)).days * DAY_S - UTC_OFFSET_S
        children = np.random.SeedSequence(seed).spawn(len(STREAMS))
        self.rng = {n: np.random.default_rng(c) for n, c in zip(STREAMS, children)}
        id_keys = self.rng["ids"].integers(0, 2**63, 3)
        self.session_key, self.event_key1, self.event_key2 = (int(k) for k in id_keys)
        self.sink = FileSink(out_dir)
        self.quarantine: dict[str, dict[str, int]] = {}
        self.records: dict[str, int] = {}
        self.base_ts = np.datetime64(start_date.isoformat(), "s")

    def run(self) -> dict[str, Any]:
        clear_old_files(self.out_dir)
        self.build_catalogue()
        self.build_people()
        self.build_tastes()
        self.build_launches(NEW_PRODUCT_DAYS)
        self.build_customers()
        self.build_campaigns()
        self.run_days()
        self.build_orders()
        self.write_customers()
        self.write_products()
        self.write_orders()
        self.write_order_lines()
        self.write_touches()
        return self.manifest()


def generate(
    out_dir: str | Path,
    users: int,
    days: int,
    seed: int,
    start_date: date,
    attrition: float = 0.0,
    segment_style: str = "overlapping",
    products: int | None = None,
    duplicates: str = "same_phone",
    new_products: float = 0.0,
) -> dict:
    """Generate the sample shop's landing files under ``<out_dir>/shop`` and its manifest.

    Args:
        out_dir: Landing root; files go below ``<out_dir>/shop`` as ``conf/sources/shop.yaml`` declares.
            Files a previous run left in those folders are removed first.
        users: Number of distinct people (customers.csv holds a few more rows: second registrations).
        days: Length of the simulated window in days, starting at ``start_date`` 00:00 shop time.
        seed: Seed of every random choice; equal arguments give byte-identical files.
        start_date: First day of the window.
        attrition: Multiplier of :data:`LAPSE_PER_DAY`: 0 (the default) plants only the
            regular buyers' churners; 1.0 lets every customer leave for good at their
            segment's daily hazard (the churn job's test shop).
        segment_style: ``"overlapping"`` (the default) or ``"distinct"``: the planted
            segments drawn apart (:data:`DISTINCT_SEGMENTS`), the segmentation tests' shop.
        products: Catalogue size (at least :data:`MIN_PRODUCTS`); ``None`` (the default) gives
            :func:`default_products` and the same files as before the parameter existed. Shoppers
            draw from a long-tailed popularity, so in a large catalogue many products are never touched.
        duplicates: ``"same_phone"`` (the default): about 1% of people register twice with the same
            phone number written differently, so exact keys link every pair. ``"varied"``: 3% do, with
            typos, pinyin names, reformatted, missing or new phones and e-mails, swapped day and month
            and missing fields (:data:`DUPLICATE_VARIATIONS`; the kinds of each pair in the manifest's
            ``customer_duplicate_variations``), for probabilistic identity resolution.
        new_products: Share of the catalogue held back and launched late (the cold-start test shop):
            each launches on a day in the first half of the window's last :data:`NEW_PRODUCT_DAYS` days
            (manifest ``new_products``); before it a shopper who would have drawn it takes a launched
            product of the same brand and category instead. 0 (the default) launches nothing and gives
            the same files as before the parameter existed.

    Returns:
        The manifest (also written to ``<out_dir>/shop/_manifest.json``).

    Raises:
        ValueError: when ``users`` or ``days`` is not positive, ``attrition`` is out of range
            or ``segment_style`` or ``duplicates`` is unknown, or ``products`` is below :data:`MIN_PRODUCTS`.
    """
    out = Path(out_dir)
    gen = ShopGenerator(
        out,
        int(users),
        int(days),
        int(seed),
        start_date,
        float(attrition),
        segment_style,
        None if products is None else int(products),
        duplicates,
        float(new_products),
    )
    manifest = gen.run()
    path = out / SOURCE_FOLDER / MANIFEST_NAME
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    logger.info(
        "generated %d users x %d days (seed %d) into %s: %d event records, %d orders",
        users,
        days,
        seed,
        out / SOURCE_FOLDER,
        manifest["records_expected"]["bronze.events"],
        manifest["silver_expected"]["orders"],
    )
    return manifest
