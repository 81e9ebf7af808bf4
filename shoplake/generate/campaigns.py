"""bronze.campaign_touches: campaign audiences and variants with true conversion rates; each
converted touch schedules a real order (a campaign session, shoplake.generate.sessions)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np

from shoplake.generate.files import malformed_sources
from shoplake.generate.helpers import (
    CSV_MALFORMED_RATE,
    DAY_S,
    SOURCE_FOLDER,
    TOUCH_FIELDS,
    cdf,
    pick,
    planted_count,
    ts_text,
)
from shoplake.generate.reference import BAD_BOOLEANS, CAMPAIGNS, CHANNEL_CLICK, CHANNEL_COST, CHANNEL_OPEN, Campaign


def campaign_truth(camp: Campaign, variant: np.ndarray, converted: np.ndarray, sent_date: date) -> dict[str, Any]:
    """What the manifest says of one campaign: per variant true rate, touches and conversions,
    and the true effects of each treatment against A and against the holdout (control)."""
    variants = {}
    for vi, (name, true_rate, share) in enumerate(camp.variants):
        m = variant == vi
        variants[name] = {
            "true_conversion_rate": true_rate,
            "audience_share": share,
            "touches": int(m.sum()),
            "observed_conversions": int((m & converted).sum()),
        }
    rates = {name: rate for name, rate, _ in camp.variants}
    effects = {}
    for ref in ("A", "control"):
        for name, rate in rates.items():
            if ref in rates and name not in (ref, "control"):
                effects[f"{name}_vs_{ref}"] = {
                    "absolute": round(rate - rates[ref], 6),
                    "relative": round((rate - rates[ref]) / rates[ref], 6),
                }
    return {
        "name": camp.name,
        "channel": camp.channel,
        "sent_date": sent_date.isoformat(),
        "coupon_code": camp.coupon[0],
        "variants": variants,
        "true_effects": effects,
        "null_effect": len({v[1] for v in camp.variants if v[0] != "control"}) == 1,
    }


class CampaignBuilder:
    """Draws the campaigns' touches from the ``campaigns`` stream (state on ``self``)."""

    days: int
    end_s: int
    start: date
    base_ts: np.datetime64
    consent: np.ndarray
    reg_s: np.ndarray
    stop_day: np.ndarray
    customer_ids: list[str]
    rng: dict[str, np.random.Generator]
    write_csv: Any  # shoplake.generate.files.CsvFiles

    def build_campaigns(self) -> None:
        """Touches with true conversion rates; each converted touch schedules a real order."""
        rng = self.rng["campaigns"]
        self.forced: dict[int, list[tuple[int, int, int]]] = {}  # day -> [(user, start_s, campaign)]
        rows: list[tuple] = []
        self.campaign_truth: dict[str, Any] = {}
        for ci, camp in enumerate(CAMPAIGNS):
            send_day = int(min(max(0, round(camp.send_at * self.days)), max(0, self.days - 4)))
            day_start = send_day * DAY_S
            eligible = np.flatnonzero(self.consent & (self.reg_s < day_start) & (self.stop_day > send_day + 4))
            n_aud = int(round(camp.audience_share * len(eligible)))
            audience = np.sort(rng.choice(eligible, n_aud, replace=False)) if n_aud else eligible[:0]
            shares = np.array([v[2] for v in camp.variants])
            variant = pick(rng, cdf(shares), n_aud)
            rate = np.array([v[1] for v in camp.variants])[variant]
            converted = rng.random(n_aud) < rate
            is_control = np.array([camp.variants[v][0] == "control" for v in variant.tolist()], dtype=bool)
            sent = day_start + 10 * 3600 + rng.integers(0, 2 * 3600, n_aud)
            opened = ~is_control & (converted | (rng.random(n_aud) < CHANNEL_OPEN[camp.channel]))
            clicked = ~is_control & (converted | (opened & (rng.random(n_aud) < CHANNEL_CLICK[camp.channel])))
            # The converting order follows within three days, never past the window.
            latest = np.minimum(sent + 72 * 3600, self.end_s - 2 * 3600)
            delay = 600 + rng.exponential(12 * 3600, n_aud)
            start = np.minimum(sent + delay.astype(np.int64), np.maximum(latest, sent + 600))
            order = np.argsort(sent, kind="stable")
            for i in order.tolist():
                u = int(audience[i])
                cost = 0 if is_control[i] else CHANNEL_COST[camp.channel]
                variant_name = camp.variants[variant[i]][0]
                flags = (bool(opened[i]), bool(clicked[i]), bool(converted[i]))
                rows.append((camp.campaign_id, u, camp.channel, variant_name, int(sent[i]), *flags, cost))
                if converted[i]:
                    s = int(start[i])
                    self.forced.setdefault(s // DAY_S, []).append((u, s, ci))
            sent_date = self.start + timedelta(days=send_day)
            self.campaign_truth[camp.campaign_id] = campaign_truth(camp, variant, converted, sent_date)
        self.touch_rows = rows

    def write_touches(self) -> None:
        rng = self.rng["planting"]
        sent_txt = ts_text(self.base_ts, [t[4] for t in self.touch_rows])
        rows = []
        for n, (cid, user, channel, variant, _sent, opened, clicked, converted, cost) in enumerate(self.touch_rows):
            rows.append(
                [
                    f"T{10000001 + n}",
                    cid,
                    self.customer_ids[user],
                    channel,
                    variant,
                    sent_txt[n],
                    "true" if opened else "false",
                    "true" if clicked else "false",
                    "true" if converted else "false",
                    f"{cost // 10000}.{cost % 10000:04d}",
                ]
            )
        bad: dict[str, list[str | bytes]] = {"unparseable_boolean": []}
        for r in malformed_sources(rng, rows, planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
            r[6 + int(rng.integers(0, 3))] = BAD_BOOLEANS[int(rng.integers(0, len(BAD_BOOLEANS)))]
            bad["unparseable_boolean"].append(",".join(r) + "\n")
        self.write_csv(
            f"{SOURCE_FOLDER}/campaign_touches/touches.csv",
            "bronze.campaign_touches",
            "utf-8",
            TOUCH_FIELDS,
            rows,
            bad,
            rng,
        )
        self.n_touches = len(rows)
