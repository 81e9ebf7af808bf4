"""bronze.orders and bronze.order_lines: the orders the buying sessions placed
(shoplake.generate.events), with coupons, payment, cancellations and refunds (a refunded order
appears twice: paid, then refunded with a later updated_at)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np

from shoplake.generate.files import malformed_sources
from shoplake.generate.helpers import (
    CHANNELS,
    CSV_MALFORMED_RATE,
    DAY_S,
    MINI,
    ORDER_FIELDS,
    ORDER_LINE_FIELDS,
    PAY_CDF,
    SOURCE_FOLDER,
    money,
    planted_count,
    ts_text,
)
from shoplake.generate.reference import (
    BAD_INTEGERS,
    BAD_NUMBERS,
    CAMPAIGNS,
    COUPONS,
    NEW_USER_COUPON,
    PAYMENT_METHODS,
    VIP_COUPON,
    Segment,
)

Coupon = tuple[str, int, int, int]  # (code, minimum subtotal in cents, cents off, percent off)


def discount(coupon: Coupon, subtotal: int) -> int:
    """Cents off ``subtotal`` with ``coupon`` (its minimum not checked)."""
    if coupon[3]:
        return int(round(subtotal * coupon[3] / 100))
    return coupon[2]


def _choose_coupon(seg: Segment, camp: int, first_order_of_new: bool, subtotal: int, r: np.ndarray) -> Coupon | None:
    """A campaign's coupon, the new customer's welcome coupon, or one the shopper holds;
    bargain hunters find the best, others take whichever they have."""
    if camp >= 0 and r[0] < 0.8:
        return CAMPAIGNS[camp].coupon
    if first_order_of_new:
        return NEW_USER_COUPON
    if r[1] < seg.coupon_prob:
        pool = list(COUPONS) + ([VIP_COUPON] if seg.name == "vip_frequent" else [])
        usable = [c for c in pool if subtotal >= c[1]]
        if usable:
            if seg.name == "bargain_hunter":
                return max(usable, key=lambda c: (discount(c, subtotal), c[0]))
            return usable[int(r[2] * len(usable))]
    return None


class OrderBuilder:
    """Builds the order and order-line rows from the ``orders`` stream (state on ``self``)."""

    end_s: int
    start: date
    base_ts: np.datetime64
    segments: tuple[Segment, ...]
    seg: np.ndarray
    price: np.ndarray
    pay_pref: np.ndarray
    product_ids: list[str]
    customer_ids: list[str]
    orders: list[tuple]
    rng: dict[str, np.random.Generator]
    write_csv: Any  # shoplake.generate.files.CsvFiles

    def build_orders(self) -> None:
        rng = self.rng["orders"]
        self.orders.sort(key=lambda o: (o[0], o[5]))
        n = len(self.orders)
        r = rng.random((n, 9))
        new_seen: set[int] = set()
        per_day: dict[int, int] = {}
        status_counts = {"paid": 0, "cancelled": 0, "refunded": 0}
        self.order_ids_by_user: dict[int, list[tuple[int, str]]] = {}
        header: list[tuple] = []  # (oid, user, status, pay, channel, code, discount, total)
        times: list[int] = []  # order_time, first update, refund update (or -1) per order
        for k, (o_s, user, ch, camp, basket, _sess) in enumerate(self.orders):
            day = o_s // DAY_S
            per_day[day] = per_day.get(day, 0) + 1
            oid = f"O{(self.start + timedelta(days=int(day))).strftime('%Y%m%d')}{per_day[day]:06d}"
            self.order_ids_by_user.setdefault(user, []).append((o_s, oid))
            subtotal = int(sum(int(self.price[p]) * q for p, q in basket))
            seg = self.segments[self.seg[user]]
            coupon = _choose_coupon(seg, camp, seg.name == "new" and user not in new_seen, subtotal, r[k])
            new_seen.add(user)
            off = discount(coupon, subtotal) if coupon and subtotal >= coupon[1] else 0
            code = coupon[0] if coupon and off else ""
            if ch == MINI:
                pay = "wechat_pay"  # mini programs pay through WeChat only
            elif r[k, 3] < 0.85:
                pay = PAYMENT_METHODS[self.pay_pref[user]]
            else:
                pay = PAYMENT_METHODS[int(np.searchsorted(PAY_CDF, r[k, 8], side="right"))]
            status, first_update, refund_at = self._status(o_s, camp, r[k])
            status_counts["refunded" if refund_at >= 0 else status] += 1
            header.append((oid, self.customer_ids[user], status, pay, CHANNELS[ch], code, off, subtotal - off))
            times.extend((o_s, first_update, max(refund_at, 0)))
        self._order_rows(header, times, rng)
        self.status_counts = status_counts

    def _status(self, o_s: int, camp: int, r: np.ndarray) -> tuple[str, int, int]:
        """(status, first update, refund time or -1). Campaign conversions stay paid: a
        converted touch is followed by a real order."""
        first_update = o_s + 5 + int(r[4] * 115)
        status = "paid"
        if camp < 0 and r[5] < 0.04:
            status, first_update = "cancelled", o_s + 300 + int(r[4] * 1500)
        first_update = min(first_update, self.end_s - 1)
        refund_at = -1
        room = self.end_s - 1 - o_s
        if camp < 0 and status == "paid" and r[6] < 0.045 and room > DAY_S + 60:
            refund_at = o_s + DAY_S + int(r[7] * (min(10 * DAY_S, room) - DAY_S))
        return status, first_update, refund_at

    def _order_rows(self, header: list[tuple], times: list[int], rng: np.random.Generator) -> None:
        """The order rows (a refunded order twice, in either order) and the line rows."""
        text = ts_text(self.base_ts, times)
        swap = rng.random(len(header)) < 0.5
        order_rows: list[list[str]] = []
        line_rows: list[list[str]] = []
        for k, (oid, cid, status, pay, channel, code, off, total) in enumerate(header):
            o_txt, u1_txt, refund_txt = text[3 * k : 3 * k + 3]
            base = [oid, cid, o_txt, status, pay, channel, code, money(off), money(total), "CNY", u1_txt]
            if times[3 * k + 2] > 0:
                refunded = list(base)
                refunded[3] = "refunded"
                refunded[10] = refund_txt
                # File position says nothing about recency: the later version comes first half the time.
                order_rows.extend([refunded, base] if swap[k] else [base, refunded])
            else:
                order_rows.append(base)
            for ln, (p, q) in enumerate(self.orders[k][4], start=1):
                unit = int(self.price[p])
                line_rows.append([oid, str(ln), self.product_ids[p], str(q), money(unit), money(unit * q), u1_txt])
        self.order_rows = order_rows
        self.line_rows = line_rows

    def write_orders(self) -> None:
        rng = self.rng["planting"]
        rows = self.order_rows
        bad: dict[str, list[str | bytes]] = {"unparseable_number": [], "wrong_column_count": []}
        for r in malformed_sources(rng, rows, planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
            col = 8 if rng.random() < 0.7 else 7  # total_amount or discount_amount
            r[col] = BAD_NUMBERS[int(rng.integers(0, len(BAD_NUMBERS)))]
            bad["unparseable_number"].append(",".join(r) + "\n")
        for r in malformed_sources(rng, rows, planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
            r = r[:-1] if rng.random() < 0.5 else r + ["web"]  # a truncated or over-long export line
            bad["wrong_column_count"].append(",".join(r) + "\n")
        self.write_csv(
            f"{SOURCE_FOLDER}/orders/orders.csv", "bronze.orders", "utf-8", ORDER_FIELDS, rows, bad, rng, blank_lines=1
        )

    def write_order_lines(self) -> None:
        rng = self.rng["planting"]
        rows = self.line_rows
        bad: dict[str, list[str | bytes]] = {"unparseable_number": []}
        for r in malformed_sources(rng, rows, planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
            if rng.random() < 0.5:
                r[3] = BAD_INTEGERS[int(rng.integers(0, len(BAD_INTEGERS)))]
            else:
                r[4 if rng.random() < 0.5 else 5] = BAD_NUMBERS[int(rng.integers(0, len(BAD_NUMBERS)))]
            bad["unparseable_number"].append(",".join(r) + "\n")
        self.write_csv(
            f"{SOURCE_FOLDER}/order_lines/order_lines.csv",
            "bronze.order_lines",
            "utf-8",
            ORDER_LINE_FIELDS,
            rows,
            bad,
            rng,
        )
