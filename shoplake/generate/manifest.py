"""``shop/_manifest.json``: the files written and the ground truth planted in them (counts per
table and quarantine reason, duplicates, segments, pairs, tastes, churners, campaigns)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np

from shoplake.generate.helpers import (
    DAY_S,
    MIN_SAME_CONTENT_GAP_MS,
    NEAR_DUP_DELAY_MS,
    TASTE_CLUSTERS,
    TASTE_POP_EXPONENT,
    TASTE_SECOND_SHARE,
    TASTE_SHARE,
    TIME_ZONE,
)
from shoplake.generate.reference import CITIES, NOTES, VARIED_NOTES

TABLES = (
    "bronze.customers",
    "bronze.products",
    "bronze.events",
    "bronze.orders",
    "bronze.order_lines",
    "bronze.campaign_touches",
)


class ManifestBuilder:
    """Assembles the manifest from the finished run's state on ``self``."""

    P: int
    days: int
    seed: int
    start: date
    attrition: float
    segment_style: str
    products: int | None
    new_products: float
    launch_day: np.ndarray | None
    duplicates: str

    def manifest(self) -> dict[str, Any]:
        t = self.event_totals
        self.records["bronze.events"] = t["events"]
        end_date = self.start + timedelta(days=self.days)
        files = self.sink.files
        manifest: dict[str, Any] = {
            "generator": "shoplake.generate",
            "format_version": 1,
            "params": self._params(),
            "window": {"start": self.start.isoformat(), "end_exclusive": end_date.isoformat(), "time_zone": TIME_ZONE},
            "files": sorted(files, key=lambda f: f["path"]),
            **self._counts(),
            "duplicates": {
                "exact_duplicate_events": t["exact"],
                "near_duplicate_events": t["near"],
                "near_duplicate_delay_ms": list(NEAR_DUP_DELAY_MS),
                "min_gap_between_genuine_same_content_ms": MIN_SAME_CONTENT_GAP_MS,
            },
            "customer_duplicates": self.dup_pairs,
            # Only for duplicates="varied": what differs in each pair (same order as the pairs).
            **({"customer_duplicate_variations": self.dup_kinds} if self.duplicates == "varied" else {}),
            # Only for new_products > 0: the held-back products and their launch dates.
            **({"new_products": self._launches()} if self.new_products else {}),
            "segments": {
                s.name: sorted(self.customer_ids[i] for i in np.flatnonzero(self.seg == k).tolist())
                for k, s in enumerate(self.segments)
            },
            "co_purchased_pairs": [
                {
                    "product_ids": [self.product_ids[a], self.product_ids[b]],
                    "names": [self.product_names[a], self.product_names[b]],
                }
                for a, b in self.pairs
            ],
            "tastes": self._tastes(),
            "churners": self._churners(),
            "campaigns": self.campaign_truth,
            "orders": {
                "status_latest": self.status_counts,
                "versions": len(self.order_rows),
                "status_changes": self.status_counts["refunded"],
            },
            "special_rows": {"bronze.products": self.special_products},
            "city_tiers": {c[1]: c[2] for c in CITIES},
            "notes": NOTES if self.duplicates == "same_phone" else NOTES | VARIED_NOTES,
        }
        return manifest

    def _launches(self) -> list[dict[str, Any]]:
        return [
            {"product_id": self.product_ids[i], "launch_date": (self.start + timedelta(days=int(d))).isoformat()}
            for i, d in enumerate(self.launch_day.tolist())
            if d > 0
        ]

    def _params(self) -> dict[str, Any]:
        return {
            "users": self.P,
            "days": self.days,
            "seed": self.seed,
            "start_date": self.start.isoformat(),
            "attrition": self.attrition,
            "segment_style": self.segment_style,
            # Only when asked for, so the default manifest stays byte-identical to older ones.
            **({"products": self.products} if self.products is not None else {}),
            **({"duplicates": self.duplicates} if self.duplicates != "same_phone" else {}),
            **({"new_products": self.new_products} if self.new_products else {}),
        }

    def _counts(self) -> dict[str, Any]:
        """Records, quarantined, valid and blank lines per table; rows expected in silver."""
        t = self.event_totals
        quarantined = {k: sum(v.values()) for k, v in self.quarantine.items()}
        files = self.sink.files
        return {
            "records_expected": {k: self.records[k] for k in TABLES},
            "quarantine_expected": {k: self.quarantine[k] for k in TABLES},
            "valid_records_expected": {k: self.records[k] - quarantined[k] for k in TABLES},
            "blank_lines": {k: sum(f["blank_lines"] for f in files if f["table"] == k) for k in TABLES},
            "silver_expected": {
                "events": t["events"] - quarantined["bronze.events"] - t["exact"] - t["near"],
                "customers": len(self.customer_rows),
                "persons": self.P,
                "products": self.n_products,
                "orders": len(self.orders),
                "order_lines": len(self.line_rows),
                "campaign_touches": self.n_touches,
            },
        }

    def _tastes(self) -> dict[str, Any]:
        return {
            "clusters": TASTE_CLUSTERS,
            "share_of_draws": TASTE_SHARE,
            "second_cluster_share_of_taste_draws": TASTE_SECOND_SHARE,
            "popularity_exponent": TASTE_POP_EXPONENT,
            "brand_cluster": {b: self.brand_taste[b] for b in sorted(self.brand_taste)},
            "product_cluster": {self.product_ids[i]: int(k) for i, k in enumerate(self.p_taste.tolist())},
            "person_clusters": {
                self.customer_ids[i]: [int(k) for k in row if k >= 0] for i, row in enumerate(self.taste.tolist())
            },
        }

    def _churners(self) -> list[dict[str, Any]]:
        """Who stopped, when, and how many orders they placed before."""
        churners = []
        for i in self.churners.tolist():
            stop = int(self.stop_day[i])
            before = sum(1 for o_s, _ in self.order_ids_by_user.get(i, []) if o_s < stop * DAY_S)
            churners.append(
                {
                    "customer_id": self.customer_ids[i],
                    "stop_date": (self.start + timedelta(days=stop)).isoformat(),
                    "orders_before": before,
                }
            )
        churners.sort(key=lambda c: c["customer_id"])
        return churners
