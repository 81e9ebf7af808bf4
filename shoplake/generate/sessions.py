"""Sessions behind bronze.events and bronze.orders: who comes when (organic visits, campaign
conversions, regulars' reorders, anonymous visitors), on which channel and device, how long
they browse and what they put in their basket."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from shoplake.generate.helpers import (
    ANON,
    ANON_SESSIONS_PER_USER_DAY,
    APP,
    CAMPAIGN,
    CHANNELS,
    DAY_CDF,
    DAY_S,
    LEGACY_CLIENT_SHARE,
    MINI,
    ORGANIC,
    PAIR_BASKET_SHARE,
    ROUTINE,
    WEB,
    cdf,
    hex_ids,
    pick,
)
from shoplake.generate.people import random_ips
from shoplake.generate.reference import CAMPAIGNS, COMPUTERS, FESTIVALS, PHONES, WEEKDAY_MULT

# The channel a campaign's message leads to.
CAMPAIGN_CHANNEL = np.array([{"push": APP, "wechat": MINI, "sms": APP, "email": WEB}[c.channel] for c in CAMPAIGNS])


class SessionBuilder:
    """Draws each day's sessions from the ``sessions`` stream and their contexts and baskets from
    the ``events`` stream (state on ``self``)."""

    P: int
    start: date
    rng: dict[str, np.random.Generator]

    def sessions_for_day(self, d: int) -> dict[str, np.ndarray]:
        """Sessions starting on day ``d``: user (-1 anonymous), start second, kind, campaign index."""
        rng = self.rng["sessions"]
        day = self.start + timedelta(days=d)
        mult = WEEKDAY_MULT[day.weekday()] * FESTIVALS.get((day.month, day.day), 1.0)
        active = (self.first_day <= d) & (d < self.stop_day)
        counts = rng.poisson(self.lam * mult * active)
        users = np.repeat(np.arange(self.P), counts)
        u = rng.random(len(users))
        hours = np.where(
            self.night[users],
            np.searchsorted(self.night_cdf, u, side="right"),
            np.searchsorted(DAY_CDF, u, side="right"),
        )
        start = d * DAY_S + np.minimum(hours, 23) * 3600 + rng.integers(0, 3600, len(users))
        kind = np.full(len(users), ORGANIC, dtype=np.int8)
        campaign = np.full(len(users), -1)

        # A new customer browses right after registering.
        new_today = np.flatnonzero(self.reg_day == d)
        welcome = self.reg_s[new_today] + rng.integers(60, 1800, len(new_today))

        forced = self.forced.get(d, [])
        f_users = np.array([f[0] for f in forced], dtype=np.int64)
        f_start = np.array([f[1] for f in forced], dtype=np.int64)
        f_camp = np.array([f[2] for f in forced], dtype=np.int64)

        routine = np.array(self.routine.get(d, []), dtype=np.int64)
        r_hours = np.where(
            self.night[routine],
            np.searchsorted(self.night_cdf, rng.random(len(routine)), side="right"),
            np.searchsorted(DAY_CDF, rng.random(len(routine)), side="right"),
        )
        r_start = d * DAY_S + np.minimum(r_hours, 21) * 3600 + rng.integers(0, 3600, len(routine))

        n_anon = int(rng.poisson(ANON_SESSIONS_PER_USER_DAY * self.P * mult))
        a_start = d * DAY_S + np.searchsorted(DAY_CDF, rng.random(n_anon), side="right").clip(0, 23) * 3600
        a_start = a_start + rng.integers(0, 3600, n_anon)

        out = {
            "user": np.concatenate([users, new_today, f_users, routine, np.full(n_anon, -1)]).astype(np.int64),
            "start": np.concatenate([start, welcome, f_start, r_start, a_start]).astype(np.int64),
            "kind": np.concatenate(
                [
                    kind,
                    np.full(len(new_today), ORGANIC, np.int8),
                    np.full(len(forced), CAMPAIGN, np.int8),
                    np.full(len(routine), ROUTINE, np.int8),
                    np.full(n_anon, ANON, np.int8),
                ]
            ),
            "campaign": np.concatenate(
                [campaign, np.full(len(new_today), -1), f_camp, np.full(len(routine), -1), np.full(n_anon, -1)]
            ).astype(np.int64),
        }
        order = np.lexsort((out["user"], out["start"]))
        return {k: v[order] for k, v in out.items()}

    def open_sessions(
        self, s: dict[str, np.ndarray], rng: np.random.Generator, known: np.ndarray, safe: np.ndarray
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """Session ids and the JSON fragments of each session (user, session id, channel, device,
        IP) kept for the current and the previous day; returns the first session's global index,
        the channels and which sessions come from a legacy client (no event_id)."""
        S = len(s["user"])
        user = s["user"]
        forced = s["kind"] == CAMPAIGN
        g0 = self.sess_base + len(self.sess_head)
        drop = self.prev_g0 - self.sess_base
        del self.sess_head[:drop], self.sess_ctx[:drop]
        self.sess_base, self.prev_g0 = self.prev_g0, g0
        gidx = np.arange(g0, g0 + S)
        sids = hex_ids(gidx, self.session_key)
        ch = np.where(rng.random(S) < 0.75, self.channel_pref[safe], pick(rng, cdf([0.55, 0.3, 0.15]), S))
        ch = np.where(forced, CAMPAIGN_CHANNEL[np.maximum(s["campaign"], 0)], ch)
        ch = np.where(known, ch, pick(rng, cdf([0.2, 0.3, 0.5]), S))
        has_pc = known & (self.pc[safe] >= 0)
        ch = np.where(known & (ch == WEB) & ~has_pc & (rng.random(S) < 0.5), APP, ch)
        anon_phone = pick(rng, cdf([w for _, w in PHONES]), S)
        anon_pc = rng.integers(0, len(COMPUTERS), S)
        mobile_ip = rng.random(S) < 0.45
        fresh_ips = random_ips(rng, S)
        legacy = rng.random(S) < LEGACY_CLIENT_SHARE
        for i in range(S):
            u = int(user[i])
            c = int(ch[i])
            if u >= 0:
                uid = self.user_json[u]
                if c == WEB and self.pc[u] >= 0:
                    device = COMPUTERS[self.pc[u]]
                else:
                    device = PHONES[self.phone[u]][0]
                ip = fresh_ips[i] if (c != WEB and mobile_ip[i]) else self.home_ip[u]
            else:
                uid = "null"
                device = COMPUTERS[anon_pc[i]] if c == WEB else PHONES[anon_phone[i]][0]
                ip = fresh_ips[i]
            self.sess_head.append(f'"user_id": {uid}, "session_id": "{sids[i]}", ')
            self.sess_ctx.append(f'{{"channel": "{CHANNELS[c]}", "device": "{device}", "ip": "{ip}"}}')
        return g0, ch, legacy

    def baskets(
        self, rng: np.random.Generator, users: np.ndarray, seg: np.ndarray, extra_lines: np.ndarray
    ) -> list[list[tuple[int, int]]]:
        """(product, quantity) lines of each buying session; a share holds a planted pair."""
        n = len(users)
        if n == 0:
            return []
        n_lines = 1 + np.minimum(rng.poisson(extra_lines[seg]), 5)
        cand = self.draw_products(rng, np.repeat(users, 12)).reshape(n, 12)
        with_pair = rng.random(n) < PAIR_BASKET_SHARE
        pair_u = rng.random(n)
        pair_any = rng.integers(0, len(self.pairs), n)
        qty_u = rng.random((n, 8))
        out = []
        for i in range(n):
            items: list[int] = []
            if with_pair[i] and self.pairs:
                favs = self.fav[users[i]]
                liked = np.flatnonzero((self.pair_l1 == favs[0]) | (self.pair_l1 == favs[1]))
                pick_ = liked[int(pair_u[i] * len(liked))] if len(liked) and pair_u[i] < 0.7 else pair_any[i]
                items.extend(self.pairs[pick_])
            want = max(int(n_lines[i]), len(items))
            for p in cand[i].tolist():
                if len(items) >= want:
                    break
                if p not in items:
                    items.append(p)
            basket = []
            for j, p in enumerate(items):
                q = qty_u[i, j % 8]
                if self.price[p] < 5000:
                    qty = 1 if q < 0.6 else 2 if q < 0.9 else 3
                else:
                    qty = 1 if q < 0.92 else 2
                basket.append((p, qty))
            out.append(basket)
        return out
