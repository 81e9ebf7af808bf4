"""bronze.events: one JSON-lines file per shop-local day, simulated day by day from the
sessions (shoplake.generate.sessions), with planted exact and near duplicates and malformed copies.
Each buying session also records its order (written by shoplake.generate.orders)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import numpy as np

from shoplake.generate.helpers import (
    ADD,
    CAMPAIGN,
    DAY_S,
    EVENT_MALFORMED_RATE,
    EVENT_TYPES,
    EXACT_DUP_RATE,
    FAV,
    MIN_PLANTED,
    MIN_SAME_CONTENT_GAP_MS,
    NEAR_DUP_DELAY_MS,
    NEAR_DUP_RATE,
    P_CAMPAIGN,
    P_CART,
    P_CHECKOUT,
    P_DETAIL,
    P_HOME,
    P_LIVE,
    P_RECOMMEND,
    P_SEARCH,
    PAGES,
    PURCHASE,
    REMOVE,
    ROUTINE,
    SEARCH,
    SHARE,
    SOURCE_FOLDER,
    VIEW,
    mix64,
)
from shoplake.generate.reference import ANON_TYPE_PROBS, BAD_EVENT_TS, BAD_UTF8
from shoplake.generate.sessions import SessionBuilder

logger = logging.getLogger(__name__)
MALFORMED_EVENT_KINDS = ("malformed_json", "missing_key", "unparseable_timestamp", "encoding_error")


def _layout(n_browse: np.ndarray, k: np.ndarray) -> dict[str, Any]:
    """Where each event sits: its session, the session's first event, its position in the
    session, the session's browse and purchase counts, and whether it is a purchase."""
    tot = n_browse + k
    E = int(tot.sum())
    ev_s = np.repeat(np.arange(len(tot)), tot)
    first = np.cumsum(tot) - tot
    pos = np.arange(E) - first[ev_s]
    nb = n_browse[ev_s]
    return {"E": E, "tot": tot, "ev_s": ev_s, "first": first, "pos": pos, "nb": nb, "ke": k[ev_s], "is_pur": pos >= nb}


def _pages(rng: np.random.Generator, etype: np.ndarray, pos: np.ndarray, landing: np.ndarray) -> np.ndarray:
    page = np.full(len(etype), P_DETAIL)
    pv = rng.random(len(etype))
    page = np.where((etype == VIEW) & (pv < 0.12), P_RECOMMEND, page)
    page = np.where((etype == VIEW) & (pv >= 0.12) & (pv < 0.18), P_LIVE, page)
    page = np.where((etype == VIEW) & (pos == 0) & (pv >= 0.7), P_HOME, page)
    page = np.where(etype == SEARCH, P_SEARCH, page)
    page = np.where(etype == REMOVE, P_CART, page)
    page = np.where(etype == PURCHASE, P_CHECKOUT, page)
    return np.where(landing, P_CAMPAIGN, page)


def _chunks(lines: list[str], inserts: list[tuple[int, int, str | bytes]]) -> Iterable[bytes]:
    """The file's bytes: ``lines`` with the inserted lines before the given positions."""
    n = len(lines)
    prev = 0
    for pos, _, text in inserts:
        if pos > prev:
            yield "".join(lines[prev:pos]).encode("utf-8")
            prev = pos
        yield text if isinstance(text, bytes) else text.encode("utf-8")
    if prev < n:
        yield "".join(lines[prev:]).encode("utf-8")


class EventBuilder(SessionBuilder):
    """Simulates the days and writes the event files (state on ``self``)."""

    P: int
    days: int
    end_s: int
    epoch0: int
    start: date
    base_ts: np.datetime64
    segments: tuple
    rng: dict[str, np.random.Generator]
    records: dict[str, int]
    quarantine: dict[str, dict[str, int]]

    def run_days(self) -> None:
        """Simulate day by day, writing each day's event file as soon as it is complete.

        Only sessions, orders and a small carry of events that ran past midnight live
        longer than one day, so memory does not grow with the number of events.
        """
        erng = self.rng["events"]
        prng = self.rng["planting"]
        ev_dir = f"{SOURCE_FOLDER}/events"
        # JSON fragments per session, kept for the current and the previous day only (events
        # that ran past midnight refer to yesterday's sessions); sess_base is the global
        # index of the first one kept.
        self.sess_head: list[str] = []
        self.sess_ctx: list[str] = []
        self.sess_base = 0
        self.prev_g0 = 0
        self.orders: list[tuple] = []  # (order_s, user, channel, campaign, items, session)
        self.event_counter = 0
        totals = {"events": 0, "exact": 0, "near": 0, "blank": 0}
        q_events = dict.fromkeys(MALFORMED_EVENT_KINDS, 0)
        carry: dict[str, np.ndarray] | None = None
        seg_probs = np.array([s.type_probs for s in self.segments] + [ANON_TYPE_PROBS])
        type_cdf = np.cumsum(seg_probs / seg_probs.sum(1, keepdims=True), axis=1)
        type_cdf[:, -1] = 1.0
        mean_events = np.array([s.mean_events for s in self.segments])
        extra_lines = np.array([s.extra_lines for s in self.segments])
        self.user_json = [json.dumps(c) for c in self.customer_ids[: self.P]]
        for d in range(self.days):
            self.today = d
            s = self.sessions_for_day(d)
            ev = self._day_events(s, erng, type_cdf, mean_events, extra_lines)
            if carry is not None:
                ev = {k: np.concatenate([carry[k], ev[k]]) for k in ev}
            self._separate_same_content(ev)
            day_end_ms = (self.epoch0 + (d + 1) * DAY_S) * 1000
            spill = ev["t"] >= day_end_ms
            if d == self.days - 1:
                spill[:] = False
            carry = {k: v[spill] for k, v in ev.items()}
            ev = {k: v[~spill] for k, v in ev.items()}
            totals["events"] += self._write_day(
                d, ev, prng, day_end_ms, q_events, ev_dir, last=d == self.days - 1, totals=totals
            )
        self.event_totals = totals
        self.quarantine["bronze.events"] = q_events

    def _day_events(
        self,
        s: dict[str, np.ndarray],
        rng: np.random.Generator,
        type_cdf: np.ndarray,
        mean_events: np.ndarray,
        extra_lines: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Events of the day's sessions as column arrays (vectorised), and their orders."""
        S = len(s["user"])
        user = s["user"]
        known = user >= 0
        safe = np.where(known, user, 0)
        seg = np.where(known, self.seg[safe], len(self.segments))
        forced = s["kind"] == CAMPAIGN
        g0, ch, legacy = self.open_sessions(s, rng, known, safe)
        # Browse length and purchases.
        mean = np.where(known, mean_events[np.minimum(seg, len(self.segments) - 1)], 2.5)
        mean = np.where(forced, 5.0, mean)
        n_browse = np.minimum(rng.geometric(1.0 / mean), 40)
        buys = known & ((rng.random(S) < np.where(known, self.p_buy[safe], 0.0)) | forced | (s["kind"] == ROUTINE))
        buyers = np.flatnonzero(buys)
        baskets = self.baskets(rng, user[buyers], seg[buyers], extra_lines)
        k = np.zeros(S, dtype=np.int64)
        k[buyers] = [len(b) for b in baskets]
        n_browse = np.where(k > 0, np.maximum(n_browse, 2 * k + 1), n_browse)
        b_start = np.zeros(S, dtype=np.int64)
        b_start[buyers] = np.cumsum([0] + [len(b) for b in baskets])[:-1]
        flat_items = np.array([p for b in baskets for p, _ in b], dtype=np.int64)

        lay = _layout(n_browse, k)
        ev_s = lay["ev_s"]
        ev_user = user[ev_s]
        etype, prod, query = self._event_content(rng, lay, type_cdf[seg[ev_s]], ev_user, b_start, flat_items)
        landing = forced[ev_s] & (lay["pos"] == 0)
        etype[landing] = VIEW
        etype, prod, query = _cart_removals(etype, prod, query, ev_s)
        page = _pages(rng, etype, lay["pos"], landing)
        sec, t = self._event_times(rng, s, lay, known, safe)

        # Orders: one per buying session, at its purchase time.
        pur_first = lay["first"][buyers] + n_browse[buyers]
        for bi, si in enumerate(buyers.tolist()):
            self.orders.append(
                (int(sec[pur_first[bi]]), int(user[si]), int(ch[si]), int(s["campaign"][si]), baskets[bi], g0 + si)
            )
        key1 = np.where(known[ev_s], ev_user, self.P + g0 + ev_s)
        return {
            "t": t,
            "sess": (g0 + ev_s).astype(np.int64),
            "etype": etype,
            "prod": prod,
            "query": query,
            "page": page,
            "key1": key1,
            "legacy": legacy[ev_s],
            "user": ev_user,
            "deadline": (self.epoch0 + self._deadline(known, safe)[ev_s]) * 1000,
        }

    def _event_content(
        self,
        rng: np.random.Generator,
        lay: dict[str, Any],
        cum: np.ndarray,
        ev_user: np.ndarray,
        b_start: np.ndarray,
        flat_items: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Event types by segment, products and queries; the funnel: each basket item is viewed,
        then added, then bought."""
        E, ev_s, pos, nb, ke, is_pur = (lay[k] for k in ("E", "ev_s", "pos", "nb", "ke", "is_pur"))
        etype = (rng.random(E)[:, None] >= cum).sum(axis=1).astype(np.int64)
        etype = np.minimum(etype, SHARE)
        prod = self.draw_products(rng, ev_user)
        query = self.draw_queries(rng, ev_user)
        j = pos - (nb - 2 * ke)
        block = (ke > 0) & (j >= 0) & ~is_pur
        bidx = b_start[ev_s]
        etype[block] = np.where(j[block] % 2 == 0, VIEW, ADD)
        prod[block] = flat_items[bidx[block] + j[block] // 2]
        etype[is_pur] = PURCHASE
        prod[is_pur] = flat_items[bidx[is_pur] + (pos[is_pur] - nb[is_pur])]
        return etype, prod, query

    def _deadline(self, known: np.ndarray, safe: np.ndarray) -> np.ndarray:
        """Per session: the window's end, or a churner's stop date (seconds since the start)."""
        return np.minimum(self.end_s, np.where(known, np.minimum(self.stop_day[safe], self.days) * DAY_S, self.end_s))

    def _event_times(
        self,
        rng: np.random.Generator,
        s: dict[str, np.ndarray],
        lay: dict[str, Any],
        known: np.ndarray,
        safe: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(seconds since the start, epoch ms) of each event: 8 s + exponential think time between
        browse events, a checkout pause, then all purchase events of an order at the order time.
        Nothing happens after the window ends or on/after a churner's stop date: a session that
        would run past its deadline is pulled back to end before it."""
        E, ev_s, first, pos, nb, is_pur, tot = (lay[k] for k in ("E", "ev_s", "first", "pos", "nb", "is_pur", "tot"))
        gap = 8 + np.minimum(rng.exponential(45.0, E), 600.0)
        gap = np.where(is_pur & (pos == nb), 30 + rng.exponential(60.0, E), gap)
        gap = np.where(is_pur & (pos > nb), 0.0, gap)
        gap[first] = 0.0
        gap = gap.astype(np.int64)
        cs = np.cumsum(gap)
        offset = cs - cs[first[ev_s]]
        sec = s["start"][ev_s] + offset
        deadline = self._deadline(known, safe)
        if len(tot):
            over = np.maximum(0, sec[first + tot - 1] - (deadline - 1))
            sec = sec - over[ev_s]
        ms = np.where(is_pur, 0, rng.integers(0, 1000, E))
        return sec, (self.epoch0 + sec) * 1000 + ms

    def _separate_same_content(self, ev: dict[str, np.ndarray]) -> None:
        """Keep genuine events with equal content at least MIN_SAME_CONTENT_GAP_MS apart.

        Overlapping sessions of one user (or a product viewed twice in a row) could
        otherwise produce two real events that a content-based dedup would rightly
        mistake for a client retry. Conflicts are rare, so the few groups involved are
        spaced out one by one: pushed later, or pulled earlier when pushing would
        cross the event's deadline (window end, a churner's stop date).
        """
        if len(ev["t"]) < 2:
            return
        gap = MIN_SAME_CONTENT_GAP_MS
        key3 = np.where(ev["etype"] == SEARCH, -2 - ev["query"], ev["prod"])
        order = np.lexsort((ev["t"], key3, ev["etype"], ev["key1"]))
        k1, et, k3, t = ev["key1"][order], ev["etype"][order], key3[order], ev["t"][order]
        same = (k1[1:] == k1[:-1]) & (et[1:] == et[:-1]) & (k3[1:] == k3[:-1])
        close = same & (t[1:] - t[:-1] < gap)
        if not close.any():
            return
        group = np.concatenate([[0], np.cumsum(~same)])
        for g in np.unique(group[1:][close]).tolist():
            members = order[group == g]
            if ev["etype"][members[0]] == PURCHASE:
                # Purchase times are order times; two orders of one product within seconds stay as they are.
                logger.warning("two purchases of the same product by one user within %d ms", gap)
                continue
            times = ev["t"][members].tolist()
            for i in range(1, len(times)):
                times[i] = max(times[i], times[i - 1] + gap)
            limit = int(ev["deadline"][members].min()) - 1000
            if times[-1] > limit:
                times[-1] = limit
                for i in range(len(times) - 2, -1, -1):
                    times[i] = min(times[i], times[i + 1] - gap)
            ev["t"][members] = times

    def _write_day(
        self,
        d: int,
        ev: dict[str, np.ndarray],
        rng: np.random.Generator,
        day_end_ms: int,
        q: dict[str, int],
        ev_dir: str,
        last: bool,
        totals: dict[str, int],
    ) -> int:
        """Plant duplicates and malformed copies, write the day's file; returns its record count."""
        ev, is_copy, n_near = _plant_near_duplicates(ev, rng, day_end_ms, MIN_PLANTED - totals["near"] if last else 0)
        lines, has_id = self._event_lines(ev)
        n = len(lines)
        inserts: list[tuple[int, int, str | bytes]] = []  # (position, tie-break, line)
        # Exact duplicates: the same line delivered again a little later in the file.
        with_id = np.flatnonzero(has_id)
        n_exact = min(len(with_id), int(rng.binomial(n, EXACT_DUP_RATE)))
        if last:
            n_exact = min(len(with_id), max(n_exact, MIN_PLANTED - totals["exact"]))
        for src in np.sort(rng.choice(with_id, n_exact, replace=False)).tolist():
            pos = int(min(n, src + 1 + rng.integers(0, 200)))
            inserts.append((pos, len(inserts), lines[src]))
        n_malformed = self._plant_malformed(rng, lines, ev, is_copy, q, last, inserts)
        blank = 0
        if d == 0:
            # Blank lines are not records: one whitespace-only line and a trailing empty line.
            inserts.append((int(rng.integers(0, n + 1)), len(inserts), "   \n"))
            inserts.append((n, len(inserts) + 1_000_000, "\n"))
            blank = 2
        inserts.sort(key=lambda x: (x[0], x[1]))
        day = self.start + timedelta(days=d)
        records = n + len(inserts) - blank
        self.sink.write(
            f"{ev_dir}/events_{day.isoformat()}.jsonl",
            "bronze.events",
            "utf-8",
            _chunks(lines, inserts),
            records,
            blank,
            n_malformed,
        )
        totals["exact"] += n_exact
        totals["near"] += n_near
        totals["blank"] += blank
        return records

    def _event_lines(self, ev: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
        """Each event as a JSON line; event ids in file order, from a bijection of a global
        counter (unique by construction), except for legacy clients."""
        n = len(ev["t"])
        has_id = ~ev["legacy"]
        n_ids = int(has_id.sum())
        counter = np.arange(self.event_counter, self.event_counter + n_ids)
        self.event_counter += n_ids
        h1 = mix64(counter, self.event_key1).tolist()
        h2 = mix64(counter, self.event_key2).tolist()
        eids = [f'"event_id": "{a:016x}{b:016x}", ' for a, b in zip(h1, h2)]
        eid_parts = [""] * n
        for i, e in zip(np.flatnonzero(has_id).tolist(), eids):
            eid_parts[i] = e
        heads = self.sess_head
        ctxs = self.sess_ctx
        pj = self.product_json
        qj = self.queries_json
        lines = [
            f'{{{e}{heads[s]}"event_type": "{EVENT_TYPES[t]}", "ts": {ts}, '
            f'"product_id": {pj[p] if p >= 0 else "null"}, "query": {qj[qq] if qq >= 0 else "null"}, '
            f'"page": "{PAGES[pg]}", "context": {ctxs[s]}}}\n'
            for e, s, t, ts, p, qq, pg in zip(
                eid_parts,
                (ev["sess"] - self.sess_base).tolist(),
                ev["etype"].tolist(),
                ev["t"].tolist(),
                ev["prod"].tolist(),
                ev["query"].tolist(),
                ev["page"].tolist(),
            )
        ]
        return lines, has_id

    def _plant_malformed(
        self,
        rng: np.random.Generator,
        lines: list[str],
        ev: dict[str, np.ndarray],
        is_copy: np.ndarray,
        q: dict[str, int],
        last: bool,
        inserts: list[tuple[int, int, str | bytes]],
    ) -> int:
        """Malformed copies of genuine events, each with exactly one defect, added to ``inserts``."""
        n = len(lines)
        genuine = np.flatnonzero(~is_copy)
        n_malformed = 0
        for kind in MALFORMED_EVENT_KINDS:
            m = int(rng.binomial(n, EVENT_MALFORMED_RATE))
            if last:
                m = max(m, MIN_PLANTED - q[kind])
            m = min(m, len(genuine))
            for src in rng.choice(genuine, m, replace=False).tolist():
                bad = self._corrupt_event(rng, kind, lines[src], int(ev["t"][src]))
                inserts.append((int(rng.integers(0, n + 1)), len(inserts), bad))
            q[kind] += m
            n_malformed += m
        return n_malformed

    def _corrupt_event(self, rng: np.random.Generator, kind: str, line: str, t_ms: int) -> str | bytes:
        """A copy of an event line with exactly one defect of the given quarantine reason."""
        body = line.rstrip("\n")
        if kind == "malformed_json":
            if rng.random() < 0.8:
                cut = int(rng.integers(10, len(body) - 1))
                return body[:cut] + "\n"  # a truncated write: never a complete object
            return f"[{body}]\n"  # a batch array instead of an object
        if kind == "missing_key":
            variant = int(rng.integers(0, 4))
            start = body.index('"event_type": ')
            end = body.index(", ", start) + 2
            if variant == 0:
                return body[:start] + body[end:] + "\n"
            if variant == 1:
                return body[:start] + '"event_type": null, ' + body[end:] + "\n"
            if variant == 2:
                return body[:start] + '"event_type": "  ", ' + body[end:] + "\n"
            start = body.index('"ts": ')
            end = body.index(", ", start) + 2
            return body[:start] + body[end:] + "\n"
        if kind == "unparseable_timestamp":
            template = BAD_EVENT_TS[int(rng.integers(0, len(BAD_EVENT_TS)))]
            local = self.base_ts + np.timedelta64(t_ms // 1000 - self.epoch0, "s")
            bad = template.format(iso=str(local).replace("T", " ")[:16], ms=t_ms)
            start = body.index('"ts": ') + len('"ts": ')
            end = body.index(",", start)
            return body[:start] + bad + body[end:] + "\n"
        if kind == "encoding_error":
            raw = body.encode("utf-8")
            at = raw.index(b'"page": "') + len(b'"page": "')
            return raw[:at] + BAD_UTF8[int(rng.integers(0, len(BAD_UTF8)))] + raw[at:] + b"\n"
        raise ValueError(f"unknown malformed kind {kind!r}")


def _cart_removals(
    etype: np.ndarray, prod: np.ndarray, query: np.ndarray, ev_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A removal takes out the latest item added earlier in the same session (else it is a view);
    only searches have a query, and they have no product."""
    E = len(etype)
    add_at = np.where(etype == ADD, np.arange(E), -1)
    last_add = np.maximum.accumulate(add_at)
    rem = etype == REMOVE
    ok = rem & (last_add >= 0)
    ok[ok] = ev_s[last_add[ok]] == ev_s[ok]
    prod[ok] = prod[last_add[ok]]
    etype[rem & ~ok] = VIEW
    prod = np.where(etype == SEARCH, -1, prod)
    query = np.where(etype == SEARCH, query, -1)
    return etype, prod, query


def _plant_near_duplicates(
    ev: dict[str, np.ndarray], rng: np.random.Generator, day_end_ms: int, at_least: int
) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Near-duplicates: a legacy client retrying a logged-in user's view/cart/favourite a second
    or three later, without an event_id. Returns the events with the copies in time order,
    which rows are copies, and how many."""
    E = len(ev["t"])
    cand = np.flatnonzero(
        ev["legacy"]
        & (ev["user"] >= 0)
        & np.isin(ev["etype"], (VIEW, ADD, FAV))
        & (ev["t"] + NEAR_DUP_DELAY_MS[1] < day_end_ms)
    )
    n_near = min(len(cand), int(rng.binomial(E, NEAR_DUP_RATE)))
    if at_least:
        n_near = min(len(cand), max(n_near, at_least))
    near_src = np.sort(rng.choice(cand, n_near, replace=False)) if n_near else cand[:0]
    near_t = ev["t"][near_src] + rng.integers(NEAR_DUP_DELAY_MS[0], NEAR_DUP_DELAY_MS[1] + 1, n_near)
    is_copy = np.concatenate([np.zeros(E, bool), np.ones(n_near, bool)])
    ev = {k: np.concatenate([v, v[near_src]]) for k, v in ev.items()}
    ev["t"][E:] = near_t
    order = np.lexsort((np.arange(len(is_copy)), ev["t"]))
    ev = {k: v[order] for k, v in ev.items()}
    return ev, is_copy[order], n_near
