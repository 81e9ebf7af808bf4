"""bronze.products: the catalogue (categories, prices, long-tailed popularity, planted
co-purchase pairs, taste clusters of brands) and how shoppers draw products and queries."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from shoplake.generate.files import malformed_sources
from shoplake.generate.helpers import (
    CSV_MALFORMED_RATE,
    DAY_S,
    PRODUCT_FIELDS,
    SOURCE_FOLDER,
    TASTE_CLUSTERS,
    TASTE_POP_EXPONENT,
    TASTE_SECOND_SHARE,
    TASTE_SHARE,
    TASTE_TWO_CLUSTERS_SHARE,
    cdf,
    default_products,
    money,
    planted_count,
    ts_text,
)
from shoplake.generate.reference import BAD_GBK, CATEGORY_TREE, PAIR_CATEGORIES, QUERY_TEMPLATES


def _price_cents(rng: np.random.Generator, cat_of: np.ndarray) -> np.ndarray:
    """Prices log-uniform in each category's range, ending in .90, 9 or 99 yuan (a quarter round)."""
    lo = np.array([CATEGORY_TREE[c][3] for c in cat_of])
    hi = np.array([CATEGORY_TREE[c][4] for c in cat_of])
    raw = np.exp(rng.uniform(np.log(lo), np.log(hi)))
    ending = rng.random(len(cat_of))
    cents = np.where(
        raw < 30,
        np.floor(raw) * 100 + 90,
        np.where(raw < 1000, (np.floor(raw / 10) * 10 + 9) * 100, (np.floor(raw / 100) * 100 + 99) * 100),
    )
    cents = np.where((ending < 0.25) & (raw >= 30), np.round(raw) * 100, cents)
    return cents.astype(np.int64)


class CatalogueBuilder:
    """Builds the catalogue and draws products and queries for shoppers (state on ``self``)."""

    P: int
    products: int | None
    new_products: float
    today: int
    days: int
    rng: dict[str, np.random.Generator]
    base_ts: np.datetime64
    end_s: int
    fav: np.ndarray
    price_bias: np.ndarray
    write_csv: Any  # shoplake.generate.files.CsvFiles

    def build_catalogue(self) -> None:
        rng = self.rng["catalogue"]
        self.cat_l1_names = list(dict.fromkeys(c[0] for c in CATEGORY_TREE))
        n = default_products(self.P) if self.products is None else self.products
        n_cat = len(CATEGORY_TREE)
        cat_w = np.array([c[5] for c in CATEGORY_TREE], dtype=float)
        # Every third-level category gets at least two products; the rest by weight.
        base = np.full(n_cat, 2)
        extra = rng.multinomial(n - base.sum(), cat_w / cat_w.sum())
        cat_of = np.repeat(np.arange(n_cat), base + extra)
        self.n_products = n
        self.p_cat = cat_of
        self.p_l1 = np.array([self.cat_l1_names.index(CATEGORY_TREE[c][0]) for c in cat_of])
        self.price = _price_cents(rng, cat_of)
        brands, names = [], []
        desc_pick = rng.integers(0, 1_000_000, n)
        brand_pick = rng.integers(0, 1_000_000, n)
        for i, c in enumerate(cat_of.tolist()):
            entry = CATEGORY_TREE[c]
            brand = entry[6][brand_pick[i] % len(entry[6])]
            desc = entry[7][desc_pick[i] % len(entry[7])]
            brands.append(brand)
            names.append(f"{brand} {desc}{entry[2]}")
        # Long tail: Zipf-like popularity over a random ranking, scaled by category weight.
        rank = rng.permutation(n)
        self.pop = (1.0 / (rank + 1.0) ** 1.05) * (0.5 + 0.5 * cat_w[cat_of] / cat_w.max())
        self.product_ids = [f"P{100001 + i}" for i in range(n)]
        self.product_json = [json.dumps(p) for p in self.product_ids]
        used = self._plant_pairs()
        self._plant_awkward_names(rng, names, used)
        self.product_names = names
        self.brands = brands
        self._sampling_tables()

    def _plant_pairs(self) -> set[int]:
        """Planted co-purchase pairs: a mid-popularity product from each side, so the pair's
        co-occurrence by chance is small and the planted lift is unmistakable. Returns the products used."""
        n, cat_of = self.n_products, self.p_cat
        l3_index = {c[2]: i for i, c in enumerate(CATEGORY_TREE)}
        order = np.argsort(-self.pop, kind="stable")
        pop_rank = np.empty(n, dtype=np.int64)
        pop_rank[order] = np.arange(n)
        used: set[int] = set()
        pairs = []
        for left, right in PAIR_CATEGORIES:
            chosen = []
            for l3 in (left, right):
                members = np.flatnonzero(cat_of == l3_index[l3])
                members = members[np.argsort(pop_rank[members], kind="stable")]
                pick = members[len(members) // 2]  # the category's median by popularity
                chosen.append(int(pick))
            if chosen[0] in used or chosen[1] in used:
                continue
            used.update(chosen)
            pairs.append(tuple(chosen))
        self.pairs = pairs
        self.pair_l1 = np.array([self.p_l1[a] for a, _ in pairs])
        return used

    def _plant_awkward_names(self, rng: np.random.Generator, names: list[str], used: set[int]) -> None:
        """Products with awkward CSV text: a comma, a line break and a double quote inside a field."""
        others = [i for i in range(self.n_products) if i not in used]
        special = rng.choice(others, 3, replace=False).tolist()
        names[special[0]] = names[special[0]] + ",家庭装"
        names[special[1]] = names[special[1]] + "\n(赠品：收纳袋)"
        names[special[2]] = names[special[2]].replace(" ", ' "网红款" ', 1)
        self.special_products = {
            "comma": self.product_ids[special[0]],
            "newline": self.product_ids[special[1]],
            "double_quote": self.product_ids[special[2]],
        }

    def _sampling_tables(self) -> None:
        """Sampling tables: the whole catalogue and each top-level category; search queries per category."""
        n = self.n_products
        self.cdf_all = (np.arange(n), cdf(self.pop))
        self.cdf_l1 = []
        for k in range(len(self.cat_l1_names)):
            members = np.flatnonzero(self.p_l1 == k)
            self.cdf_l1.append((members, cdf(self.pop[members])))

        queries, q_l1 = [], []
        for entry in CATEGORY_TREE:
            for t in QUERY_TEMPLATES:
                q = t.format(l3=entry[2], brand=entry[6][0], desc=entry[7][0])
                queries.append(q)
                q_l1.append(self.cat_l1_names.index(entry[0]))
        self.queries_json = [json.dumps(q, ensure_ascii=False) for q in queries]
        self.q_by_l1 = [np.flatnonzero(np.array(q_l1) == k) for k in range(len(self.cat_l1_names))]

    def build_tastes(self) -> None:
        """Taste clusters of brands (hence products) and each person's one or two clusters.

        Drawn from their own stream, so the catalogue and the people are what they were
        without them."""
        rng = self.rng["tastes"]
        brands = sorted(set(self.brands))
        cluster_of_brand = dict(zip(brands, (rng.permutation(len(brands)) % TASTE_CLUSTERS).tolist()))
        self.brand_taste = cluster_of_brand
        self.p_taste = np.array([cluster_of_brand[b] for b in self.brands], dtype=np.int64)
        first = rng.integers(0, TASTE_CLUSTERS, self.P)
        second = (first + rng.integers(1, TASTE_CLUSTERS, self.P)) % TASTE_CLUSTERS  # never equal to first
        self.taste = np.stack([first, np.where(rng.random(self.P) < TASTE_TWO_CLUSTERS_SHARE, second, -1)], axis=1)
        self.cdf_taste = []
        for k in range(TASTE_CLUSTERS):
            members = np.flatnonzero(self.p_taste == k)
            self.cdf_taste.append((members, cdf(self.pop[members] ** TASTE_POP_EXPONENT)))

    def build_launches(self, window_days: int) -> None:
        """Products held back until a launch day (``new_products`` share; none by default).

        Planted pairs and awkward names are never held. Each held product has a stand-in
        for the days before its launch: the most popular launched product of its brand and
        top-level category, else of its third-level category, else of its top-level category.
        Drawn from their own stream, and nothing is drawn when the share is 0."""
        n = self.n_products
        self.launch_day = None
        if not self.new_products:
            return
        rng = self.rng["launches"]
        keep = {i for pair in self.pairs for i in pair} | {
            self.product_ids.index(p) for p in self.special_products.values()
        }
        eligible = np.array([i for i in range(n) if i not in keep])
        held = np.sort(rng.choice(eligible, int(round(self.new_products * n)), replace=False))
        first = max(self.days - window_days, 1)
        launch = np.zeros(n, dtype=np.int64)
        launch[held] = first + rng.integers(0, max((self.days - first) // 2, 1), len(held))
        brands = np.array(self.brands)
        launched = launch == 0
        standin = np.arange(n)
        for p in held.tolist():
            for same in (
                (brands == brands[p]) & (self.p_l1 == self.p_l1[p]),
                self.p_cat == self.p_cat[p],
                self.p_l1 == self.p_l1[p],
            ):
                pool = np.flatnonzero(same & launched)
                if len(pool):
                    standin[p] = pool[np.argmax(self.pop[pool])]
                    break
        self.launch_day = launch
        self.launch_standin = standin

    def _launched(self, products: np.ndarray) -> np.ndarray:
        """``products`` with every one not launched by ``self.today`` replaced by its stand-in."""
        if self.launch_day is None:
            return products
        return np.where(self.launch_day[products] > self.today, self.launch_standin[products], products)

    def draw_products(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """One product per entry of ``users`` (-1 = anonymous) from their tastes and price bias.

        A share of a known person's draws comes from their taste clusters instead; those
        draws use the ``tastes`` stream, so ``rng`` is consumed exactly as without them."""
        n = len(users)
        known = users >= 0
        safe = np.where(known, users, 0)
        u = rng.random(n)
        l1 = np.full(n, -1)
        l1 = np.where(known & (u < 0.45), self.fav[safe, 0], l1)
        l1 = np.where(known & (u >= 0.45) & (u < 0.65), self.fav[safe, 1], l1)
        first = self._draw_in(rng, l1, self.cdf_l1)
        second = self._draw_in(rng, l1, self.cdf_l1)
        trng = self.rng["tastes"]
        t = trng.random(n)
        cluster = np.where(known & (t < TASTE_SHARE), self.taste[safe, 0], -1)
        use_second = known & (t < TASTE_SHARE * TASTE_SECOND_SHARE) & (self.taste[safe, 1] >= 0)
        cluster = np.where(use_second, self.taste[safe, 1], cluster)
        tasted = cluster >= 0
        first = np.where(tasted, self._draw_in(trng, cluster, self.cdf_taste), first)
        second = np.where(tasted, self._draw_in(trng, cluster, self.cdf_taste), second)
        bias = np.where(known, self.price_bias[safe], 0)
        cheaper = np.where(self.price[first] <= self.price[second], first, second)
        dearer = np.where(self.price[first] > self.price[second], first, second)
        return self._launched(np.where(bias < 0, cheaper, np.where(bias > 0, dearer, first)))

    def _draw_in(
        self, rng: np.random.Generator, group: np.ndarray, tables: list[tuple[np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """One product per entry of ``group`` by popularity within ``tables[group]`` (-1: whole catalogue)."""
        out = np.empty(len(group), dtype=np.int64)
        u = rng.random(len(group))
        for k in range(-1, len(tables)):
            m = group == k
            if not m.any():
                continue
            members, cum = self.cdf_all if k < 0 else tables[k]
            out[m] = members[np.minimum(np.searchsorted(cum, u[m], side="right"), len(members) - 1)]
        return out

    def draw_queries(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """One search query per entry of ``users``, mostly in their favourite top-level categories."""
        n = len(users)
        known = users >= 0
        safe = np.where(known, users, 0)
        u = rng.random(n)
        l1 = rng.integers(0, len(self.cat_l1_names), n)
        l1 = np.where(known & (u < 0.6), self.fav[safe, 0], l1)
        l1 = np.where(known & (u >= 0.6) & (u < 0.85), self.fav[safe, 1], l1)
        v = rng.random(n)
        out = np.empty(n, dtype=np.int64)
        for k in range(len(self.cat_l1_names)):
            m = l1 == k
            pool = self.q_by_l1[k]
            out[m] = pool[(v[m] * len(pool)).astype(np.int64)]
        return out

    def write_products(self) -> None:
        rng = self.rng["planting"]
        upd = ts_text(
            self.base_ts,
            (-rng.integers(0, 180 * DAY_S, self.n_products) + rng.integers(0, self.end_s, self.n_products)).tolist(),
        )
        rows = []
        for i in range(self.n_products):
            l1, l2, l3 = CATEGORY_TREE[self.p_cat[i]][:3]
            rows.append(
                [
                    self.product_ids[i],
                    self.product_names[i],
                    l1,
                    l2,
                    l3,
                    self.brands[i],
                    money(int(self.price[i])),
                    upd[i],
                ]
            )
        bad: dict[str, list[str | bytes]] = {"wrong_column_count": [], "encoding_error": []}
        for kind in bad:
            for r in malformed_sources(rng, rows, planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
                name = r[1]
                if kind == "wrong_column_count":
                    r[1] = name.replace(" ", ",", 1) if " " in name else name + ",赠品"
                    bad[kind].append(",".join(r) + "\n")
                else:
                    # Bytes that are not GBK inside the name (a stray byte from another encoding).
                    raw = ",".join(r).encode("gbk")
                    at = len(f"{r[0]},{name[: len(name) // 2]}".encode("gbk"))  # a character boundary
                    junk = BAD_GBK[int(rng.integers(0, len(BAD_GBK)))]
                    bad[kind].append(raw[:at] + junk + raw[at:] + b"\n")
        self.write_csv(
            f"{SOURCE_FOLDER}/products/products.csv", "bronze.products", "gbk", PRODUCT_FIELDS, rows, bad, rng
        )
