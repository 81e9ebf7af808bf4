"""The people behind the customers: segment, registration, churn and attrition, reorder
cycles, session and purchase rates, favourite categories, devices, IPs and city."""

from __future__ import annotations

import numpy as np

from shoplake.generate.helpers import (
    APP,
    CHURN_SHARE_OF_REGULAR,
    DAY_S,
    DISTINCT_NEW_DAYS,
    DISTINCT_SPREAD,
    IPV6_SHARE,
    NEVER,
    PAY_CDF,
    REGULAR_CYCLE_DAYS,
    WEB,
    cdf,
    pick,
)
from shoplake.generate.reference import (
    CITIES,
    COMPUTERS,
    FEMALE_TASTE,
    IPV4_FIRST_OCTETS,
    IPV6_PREFIXES,
    LAPSE_PER_DAY,
    MALE_TASTE,
    PHONES,
    SEG_INDEX,
    TIER_WEIGHT,
    Segment,
)


def random_ips(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` IP addresses of Chinese operators (IPv4, and IPv6 for a few)."""
    first = np.array(IPV4_FIRST_OCTETS)[rng.integers(0, len(IPV4_FIRST_OCTETS), n)]
    octets = rng.integers(0, 256, (n, 2))
    last = rng.integers(1, 255, n)
    v6 = rng.random(n) < IPV6_SHARE
    prefix = rng.integers(0, len(IPV6_PREFIXES), n)
    groups = rng.integers(0, 65536, (n, 7))
    out = []
    for i, (a, (b, c), d) in enumerate(zip(first.tolist(), octets.tolist(), last.tolist())):
        if v6[i]:
            g = groups[i].tolist()
            out.append(
                f"{IPV6_PREFIXES[prefix[i]]}{g[0] % 256:02x}:{g[1]:x}:{g[2]:x}:{g[3]:x}:"
                f"{g[4]:x}:{g[5]:x}:{(a * 256 + d):x}"  # 8 groups in all
            )
        else:
            out.append(f"{a}.{b}.{c}.{d}")
    return out


class PeopleBuilder:
    """Draws every person's traits from the ``people`` stream (state on ``self``)."""

    P: int
    days: int
    attrition: float
    segment_style: str
    segments: tuple[Segment, ...]
    rng: dict[str, np.random.Generator]
    cat_l1_names: list[str]

    def build_people(self) -> None:
        rng = self.rng["people"]
        P = self.P
        distinct = self.segment_style == "distinct"
        counts = np.floor(np.array([s.share for s in self.segments]) * P).astype(int)
        # Hand the rounding remainder to the largest segments, deterministically.
        for i in np.argsort([-s.share for s in self.segments], kind="stable")[: P - counts.sum()]:
            counts[i] += 1
        seg = rng.permutation(np.repeat(np.arange(len(self.segments)), counts))
        self.seg = seg.astype(np.int16)
        self._draw_registration(rng, seg, distinct)
        regular = np.flatnonzero(seg == SEG_INDEX["regular"])
        self._draw_stops(rng, seg, regular)
        self._draw_routine(rng, regular)
        self._draw_rates(rng, seg, distinct)
        self._draw_favourites(rng)
        self._draw_devices_and_places(rng)

    def _draw_registration(self, rng: np.random.Generator, seg: np.ndarray, distinct: bool) -> None:
        """The old guard registered up to five years ago, VIPs longer ago; the "new" segment
        registers during the window (in its last DISTINCT_NEW_DAYS days when distinct)."""
        P = self.P
        is_new = seg == SEG_INDEX["new"]
        days_before = rng.integers(2, 1800, P)
        days_before = np.where(seg == SEG_INDEX["vip_frequent"], rng.integers(300, 2000, P), days_before)
        reg = -days_before * DAY_S + rng.integers(8 * 3600, 23 * 3600, P)
        last_reg_day = max(0, self.days - 3)
        first_reg_day = max(0, min(last_reg_day, self.days - DISTINCT_NEW_DAYS)) if distinct else 0
        reg_day_new = rng.integers(first_reg_day, last_reg_day + 1, P)
        reg = np.where(is_new, reg_day_new * DAY_S + rng.integers(8 * 3600, 22 * 3600, P), reg)
        self.reg_s = reg.astype(np.int64)
        self.first_day = np.where(is_new, reg_day_new + 1, 0)
        self.reg_day = np.where(is_new, reg_day_new, -1)

    def _draw_stops(self, rng: np.random.Generator, seg: np.ndarray, regular: np.ndarray) -> None:
        """Churners: regular buyers who stop at a known date (no sessions, no orders from then
        on); with attrition, anyone may lapse at their segment's daily hazard."""
        P = self.P
        self.stop_day = np.full(P, NEVER, dtype=np.int64)
        if self.days >= 6 and len(regular):
            n_churn = int(round(CHURN_SHARE_OF_REGULAR * len(regular)))
            churners = np.sort(rng.choice(regular, n_churn, replace=False))
            lo = max(2, int(0.4 * self.days))
            hi = max(lo, int(0.75 * self.days))
            self.stop_day[churners] = rng.integers(lo, hi + 1, n_churn)
        if self.attrition > 0:
            # Its own stream, so attrition=0 leaves every other draw as it was.
            hazard = np.array([LAPSE_PER_DAY[s.name] for s in self.segments])[seg] * self.attrition
            lifetime = np.floor(self.rng["attrition"].exponential(1.0 / hazard)).astype(np.int64)
            # At least one active day, so a lapsed customer was a customer first.
            self.stop_day = np.minimum(self.stop_day, self.first_day + 1 + lifetime)
        self.churners = np.flatnonzero(self.stop_day <= self.days)

    def _draw_routine(self, rng: np.random.Generator, regular: np.ndarray) -> None:
        """Regular buyers' reorder days (``self.routine``: day -> people), up to their stop."""
        self.routine: dict[int, list[int]] = {}
        cycle = rng.integers(REGULAR_CYCLE_DAYS[0], REGULAR_CYCLE_DAYS[1] + 1, len(regular))
        phase = (rng.random(len(regular)) * cycle).astype(np.int64)
        jitter = rng.integers(-1, 2, (len(regular), self.days // REGULAR_CYCLE_DAYS[0] + 2))
        for j, u in enumerate(regular.tolist()):
            end = min(self.days, int(self.stop_day[u]))
            for k, day in enumerate(range(int(phase[j]), end, int(cycle[j]))):
                day = day + (int(jitter[j, k]) if k else 0)
                if 0 <= day < end:
                    self.routine.setdefault(day, []).append(u)

    def _draw_rates(self, rng: np.random.Generator, seg: np.ndarray, distinct: bool) -> None:
        """Individual heterogeneity around the segment's means."""
        P = self.P
        seg_lam = np.array([s.sessions_per_day for s in self.segments])[seg]
        rate_factor = rng.gamma(4.0, 0.25, P)
        seg_p = np.array([s.purchase_prob for s in self.segments])[seg]
        buy_factor = rng.lognormal(0.0, 0.25, P)
        if distinct:  # the same draws, pulled towards the segment's mean
            rate_factor = 1.0 + DISTINCT_SPREAD * (rate_factor - 1.0)
            buy_factor = buy_factor**DISTINCT_SPREAD
        self.lam = seg_lam * rate_factor
        self.p_buy = np.clip(seg_p * buy_factor, 0.0, 0.9)
        self.night = np.array([s.night for s in self.segments])[seg]
        self.price_bias = np.array([s.price_bias for s in self.segments])[seg]

    def _draw_favourites(self, rng: np.random.Generator) -> None:
        """Gender, and two favourite top-level categories tilted by gender."""
        P = self.P
        self.gender_m = rng.random(P) < 0.47
        l1_names = self.cat_l1_names
        fav = np.empty((P, 2), dtype=np.int64)
        for is_m, taste in ((False, FEMALE_TASTE), (True, MALE_TASTE)):
            idx = np.flatnonzero(self.gender_m == is_m)
            w = np.array([taste.get(n, 1.0) for n in l1_names])
            keys = rng.random((len(idx), len(l1_names))) ** (1.0 / w)  # weighted sampling w/o replacement
            top = np.argsort(-keys, axis=1, kind="stable")[:, :2]
            fav[idx] = top
        self.fav = fav

    def _draw_devices_and_places(self, rng: np.random.Generator) -> None:
        """Devices, channels, payment, home IP, city and district, marketing consent."""
        P = self.P
        self.phone = pick(rng, cdf([w for _, w in PHONES]), P)
        self.pc = np.where(rng.random(P) < 0.4, rng.integers(0, len(COMPUTERS), P), -1)
        self.channel_pref = pick(rng, cdf([0.55, 0.30, 0.15]), P)
        self.channel_pref = np.where((self.pc < 0) & (self.channel_pref == WEB), APP, self.channel_pref)
        self.pay_pref = pick(rng, PAY_CDF, P)
        self.home_ip = random_ips(rng, P)

        cities = np.array([TIER_WEIGHT[c[2]] for c in CITIES])
        self.city = pick(rng, cdf(cities), P)
        self.district = np.array([rng.integers(0, len(CITIES[c][3])) for c in self.city.tolist()])
        self.consent = rng.random(P) < 0.8
