"""The live gold transforms on hand-made events: funnel counts per minute and channel,
the trending window's edges and ranking, which carts are abandoned, and the frequency
cap's greedy order."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from types import SimpleNamespace

from common.live import abandoned_carts, live_funnel, live_trending, within_frequency_cap

T0 = datetime(2024, 3, 1, 10, 0)
COLUMNS = "event_id string, user_key string, session_id string, event_type string, event_time timestamp, " \
    "item_id string, channel string"  # fmt: skip


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def events(spark, rows):
    return spark.createDataFrame(rows, COLUMNS)


def test_funnel_counts_sessions_views_carts_and_orders_per_minute_and_channel(spark):
    df = events(
        spark,
        [
            ("1", "u1", "s1", "view", at(0.1), "P1", "app"),
            ("2", "u1", "s1", "add_to_cart", at(0.5), "P1", "app"),
            ("3", "u2", "s2", "view", at(0.9), "P2", "app"),
            ("4", "u1", "s1", "purchase", at(1.2), "P1", "app"),  # next minute
            ("5", None, "s3", "view", at(0.2), "P1", None),  # no channel
            ("6", None, "s3", "search", at(0.3), None, None),
        ],
    )
    got = {(r.minute, r.channel): r.asDict() for r in live_funnel(df).collect()}
    assert set(got) == {(at(0), "app"), (at(1), "app"), (at(0), "unknown")}
    first = got[(at(0), "app")]
    assert (first["events"], first["sessions"], first["views"], first["add_to_carts"], first["orders"]) == (
        3,
        2,
        2,
        1,
        0,
    )
    assert first["conversion"] == 0.0
    assert (got[(at(1), "app")]["orders"], got[(at(1), "app")]["conversion"]) == (1, 1.0)
    assert (got[(at(0), "unknown")]["events"], got[(at(0), "unknown")]["sessions"]) == (2, 1)


def test_trending_ranks_the_window_by_weighted_views_and_carts(spark):
    clock = at(60)
    df = events(
        spark,
        [
            ("1", "u1", "s1", "view", at(0), "OLD", "app"),  # exactly 60 minutes before: outside
            ("2", "u1", "s1", "view", at(0.01), "A", "app"),
            ("3", "u1", "s1", "view", at(30), "A", "app"),
            ("4", "u2", "s2", "add_to_cart", at(59), "B", "app"),
            ("5", "u2", "s2", "view", at(60), "C", "app"),  # at the clock: inside
            ("6", "u2", "s2", "purchase", at(50), "D", "app"),  # not a view or a cart
            ("7", "u3", "s3", "view", at(61), "E", "app"),  # after the clock
        ],
    )
    rows = live_trending(df, clock, 60, 2, {"view": 1.0, "add_to_cart": 3.0}).collect()
    assert [(r.rank, r.item_id, r.views, r.add_to_carts, r.score) for r in rows] == [
        (1, "B", 0, 1, 3.0),
        (2, "A", 2, 0, 2.0),
    ]
    assert {(r.window_start, r.window_end) for r in rows} == {(at(0), clock)}
    ties = live_trending(df, clock, 60, 5, {"view": 1.0, "add_to_cart": 2.0}).collect()
    assert [r.item_id for r in ties] == ["A", "B", "C"]  # A and B tie at 2.0: by item id


def test_a_cart_is_abandoned_when_its_item_is_not_bought_in_time(spark):
    df = events(
        spark,
        [
            ("a1", "u1", "s1", "add_to_cart", at(0), "P1", "app"),  # never bought: abandoned
            ("a2", "u1", "s1", "add_to_cart", at(1), "P2", "app"),
            ("b2", "u1", "s1", "purchase", at(20), "P2", "app"),  # bought within 30 min
            ("a3", "u1", "s1", "add_to_cart", at(2), "P3", "web"),
            ("b3", "u1", "s1", "purchase", at(40), "P3", "web"),  # bought after 30 min: abandoned
            ("a4", "u2", "s2", "add_to_cart", at(3), "P1", "app"),
            ("b4", "u9", "s9", "purchase", at(4), "P1", "app"),  # someone else bought it
            ("b5", "u2", "s2", "purchase", at(2), "P1", "app"),  # u2 bought it before adding it again
            ("a5", None, "s3", "add_to_cart", at(0), "P1", "app"),  # anonymous: no one to message
            ("a6", "u3", "s4", "add_to_cart", at(45), "P1", "app"),  # not due at the clock
            ("a7", "u3", "s4", "add_to_cart", at(-200), "P1", "app"),  # due too long ago
        ],
    )
    got = abandoned_carts(df, at(60), abandon_minutes=30, max_age_minutes=120).collect()
    rows = sorted((r.trigger_id, r.user_key, r.item_id, r.due_at, r.channel) for r in got)
    assert rows == [
        ("a1", "u1", "P1", at(30), "app"),
        ("a3", "u1", "P3", at(32), "web"),
        ("a4", "u2", "P1", at(33), "app"),
    ]


def test_the_frequency_cap_counts_earlier_messages_in_the_period():
    week = timedelta(days=7)
    day = datetime(2024, 3, 8)

    def cart(trigger_id, user, hours):
        return {"trigger_id": trigger_id, "user_key": user, "due_at": day + timedelta(hours=hours)}

    candidates = [cart("c", "u1", 3), cart("a", "u1", 1), cart("b", "u1", 2), cart("d", "u2", 1), cart("e", "u3", 1)]
    sent = [
        ("u2", day - timedelta(days=1)),  # u2: one touch yesterday, so one more fits
        ("u2", day - timedelta(days=8)),  # outside the period
        ("u3", day - timedelta(days=2)),
        ("u3", day - timedelta(days=3)),  # u3: already two this week
    ]
    chosen = within_frequency_cap(candidates, sent, max_touches=2, period=week)
    # u1's first two in due time, u2's one, none for u3
    assert [c["trigger_id"] for c in chosen] == ["a", "d", "b"]
    # A week after u1's first message a third fits again, a minute before it does not.
    u1_sent = [("u1", c["due_at"]) for c in chosen if c["user_key"] == "u1"]
    week_later = cart("f", "u1", 1 + 7 * 24)
    just_before = {**week_later, "trigger_id": "g", "due_at": week_later["due_at"] - timedelta(minutes=1)}
    assert [c["trigger_id"] for c in within_frequency_cap([week_later], u1_sent, 2, week)] == ["f"]
    assert within_frequency_cap([just_before], u1_sent, 2, week) == []


def test_pending_refreshes_survive_a_restart_and_widen(spark, tmp_path, monkeypatch):
    """The stream's driver refreshes the live tables off the silver query's thread: what a
    batch noted and no refresh took yet is on disk for the next run, widened over batches;
    batches noted while a refresh runs stay pending after it. The funnel is refreshed each
    time, trending and triggers only when their interval has passed (or every table is asked)."""
    import jobs.stream.live as stream

    funnel, trending = [], []
    monkeypatch.setattr(stream, "refresh_live_funnel", lambda store, since: funnel.append(since))
    monkeypatch.setattr(stream, "refresh_trending_and_triggers", lambda store, cfg, newest: trending.append(newest))
    cfg = SimpleNamespace(stream=SimpleNamespace(live=SimpleNamespace(trending_refresh_seconds=3600)))
    checkpoints = str(tmp_path / "checkpoints")
    live = stream.LiveRefresh(None, cfg, checkpoints)
    live.note_batch(
        events(spark, [("1", "u", "s", "view", at(5), "P", "app"), ("2", "u", "s", "view", at(9), "P", "app")]), 0
    )
    live.note_batch(events(spark, [("3", "u", "s", "view", at(2), "P", "app")]), 1)
    live.note_batch(events(spark, []), 2)  # a batch without rows: nothing to refresh, covered at once

    restarted = stream.LiveRefresh(None, cfg, checkpoints)  # as after a kill: nothing refreshed yet
    # Trending was never refreshed in this run: its interval has passed.
    assert restarted.refresh() is True and funnel == [at(2)] and trending == [at(9)]
    assert restarted.refresh() is False and not (tmp_path / "checkpoints" / "live_pending.json").exists()

    def note_during_refresh(store, since):
        funnel.append(since)
        if len(funnel) == 2:
            restarted.note_batch(events(spark, [("4", "u", "s", "view", at(20), "P", "app")]), 3)

    monkeypatch.setattr(stream, "refresh_live_funnel", note_during_refresh)
    restarted.note_batch(events(spark, [("5", "u", "s", "view", at(15), "P", "app")]), 4)
    assert restarted.refresh() and trending == [at(9)]  # within the interval: only the funnel
    on_disk = stream.LiveRefresh(None, cfg, checkpoints).pending
    assert on_disk["funnel"]["batches"] == [3] and on_disk["trending"]["batches"] == [3, 4]
    assert restarted.refresh() and funnel[-1] == at(20) and trending == [at(9)]
    assert restarted.refresh(every_table=True) and trending == [at(9), at(20)] and funnel[-1] == at(20)
    assert not (tmp_path / "checkpoints" / "live_pending.json").exists()
    log = [json.loads(line) for line in (tmp_path / "checkpoints" / "live_refreshes.jsonl").open()]
    assert [(e["table"], e["batches"]) for e in log] == [
        ("gold.live_funnel", [2]),
        ("gold.live_trending", [2]),
        ("gold.live_funnel", [0, 1]),
        ("gold.live_trending", [0, 1]),
        ("gold.live_funnel", [4]),
        ("gold.live_funnel", [3]),
        ("gold.live_trending", [3, 4]),
    ]
