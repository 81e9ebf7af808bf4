"""bronze.customers: names, birth dates and resident IDs, phones, e-mails, addresses and member
levels of the people, plus second registrations of a few of them (shoplake.generate.duplicates)."""

from __future__ import annotations

from typing import Any

import numpy as np

from shoplake.generate.duplicates import DuplicateBuilder
from shoplake.generate.files import malformed_sources
from shoplake.generate.helpers import (
    CSV_MALFORMED_RATE,
    CUSTOMER_FIELDS,
    DAY_S,
    PHONE_STYLES,
    SOURCE_FOLDER,
    cdf,
    date_text,
    format_phone,
    id_check_digit,
    pick,
    planted_count,
    ts_text,
)
from shoplake.generate.reference import (
    BAD_TIMESTAMPS,
    CITIES,
    COMPLEXES,
    EMAIL_DOMAINS,
    EMAIL_NICKS,
    GIVEN_FEMALE,
    GIVEN_MALE,
    MEMBER_LEVEL_PROBS,
    MEMBER_LEVEL_PROBS_OTHER,
    MEMBER_LEVELS,
    PHONE_PREFIXES,
    SEG_INDEX,
    STREETS,
    SURNAMES,
)


class CustomerBuilder(DuplicateBuilder):
    """Builds the customer rows from the ``people`` stream (state on ``self``)."""

    write_csv: Any  # shoplake.generate.files.CsvFiles

    def build_customers(self) -> None:
        """Persons (index < users) plus second registrations of a few of them."""
        rng = self.rng["people"]
        P = self.P
        names, pinyin = self._names(rng)
        birth, ids = self._birth_dates_and_ids(rng)
        phones = self._unique_phones(rng, P)
        emails = self._emails(rng, pinyin)
        addresses = self._addresses(rng)
        levels = self._member_levels(rng)
        # A few customers typed their number with a country code or separators.
        styled = rng.random(P) < 0.05
        style_pick = rng.integers(0, len(PHONE_STYLES), P)
        phone_text = [format_phone(p, PHONE_STYLES[style_pick[i]]) if styled[i] else p for i, p in enumerate(phones)]
        updated = self.reg_s + (rng.random(P) * (self.end_s - 1 - self.reg_s)).astype(np.int64)

        recs = []  # (registered_s, person, fields-without-id)
        for i in range(P):
            gender = "M" if self.gender_m[i] else "F"
            recs.append(
                [
                    *(int(self.reg_s[i]), i, names[i], phone_text[i], emails[i], ids[i], gender, birth[i], i),
                    *(addresses[i], levels[i], bool(self.consent[i]), int(updated[i])),
                ]
            )

        # Second registrations: the same person again, by default with the same number typed
        # differently; with duplicates="varied" as people really re-register.
        old = np.flatnonzero(self.seg != SEG_INDEX["new"])
        self.dup_kinds: list[list[str]] = []
        first = {"names": names, "pinyin": pinyin, "phones": phones, "phone_text": phone_text, "emails": emails}
        first |= {"ids": ids, "birth": birth, "addresses": addresses}
        if self.duplicates == "varied":
            self.dup_of = self._plant_varied_seconds(recs, old, first)
        else:
            self.dup_of = self._plant_same_phone_seconds(rng, recs, old, first)
        self._number_customers(recs)
        self.phones = phones

    def _names(self, rng: np.random.Generator) -> tuple[list[str], list[tuple[str, str]]]:
        """Chinese names by gender and their pinyin (surname, given name) for e-mail addresses."""
        P = self.P
        s_names = [s[0] for s in SURNAMES]
        surname = pick(rng, cdf([s[2] for s in SURNAMES]), P)
        two_chars = rng.random(P) < 0.7
        g1 = rng.integers(0, 10_000, P)
        g2 = rng.integers(0, 10_000, P)
        names, pinyin = [], []
        for i in range(P):
            pool = GIVEN_MALE if self.gender_m[i] else GIVEN_FEMALE
            chars = [pool[g1[i] % len(pool)]]
            if two_chars[i]:
                chars.append(pool[g2[i] % len(pool)])
            names.append(s_names[surname[i]] + "".join(c[0] for c in chars))
            pinyin.append((SURNAMES[surname[i]][1], "".join(c[1] for c in chars)))
        return names, pinyin

    def _birth_dates_and_ids(self, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        """Adult birth dates (mostly 20-40) and unique resident IDs: district code, birth date,
        a sequence whose parity is the gender, check digit."""
        P = self.P
        age_days = ((18 + np.minimum(rng.gamma(3.0, 4.5, P), 52)) * 365.25).astype(np.int64)
        birth_s = -age_days * DAY_S - rng.integers(0, 365, P) * DAY_S
        birth = date_text(self.base_ts, birth_s)
        seq = rng.integers(0, 500, P) * 2 + self.gender_m.astype(np.int64)
        ids: list[str] = []
        seen: dict[str, int] = {}
        for i in range(P):
            region = CITIES[self.city[i]][3][self.district[i]][0]
            while True:
                first17 = f"{region}{birth[i].replace('-', '')}{int(seq[i]):03d}"
                if first17 not in seen:
                    break
                seq[i] = (seq[i] + 2) % 1000  # keep the parity, move to a free number
            seen[first17] = i
            ids.append(first17 + id_check_digit(first17))
        return birth, ids

    def _addresses(self, rng: np.random.Generator) -> list[str]:
        """Street addresses in the person's district, most with a flat in a housing complex."""
        P = self.P
        addresses = []
        street = rng.integers(0, len(STREETS), P)
        number = rng.integers(1, 999, P)
        complex_ = rng.integers(0, len(COMPLEXES), P)
        has_flat = rng.random(P) < 0.75
        bld, unit, floor, room = (
            rng.integers(1, 30, P),
            rng.integers(1, 6, P),
            rng.integers(1, 33, P),
            rng.integers(1, 5, P),
        )
        for i in range(P):
            prov, city, _, districts = CITIES[self.city[i]]
            prefix = prov if prov == city else prov + city
            addr = f"{prefix}{districts[self.district[i]][1]}{STREETS[street[i]]}{number[i]}号"
            if has_flat[i]:
                addr += f"{COMPLEXES[complex_[i]]}{bld[i]}栋{unit[i]}单元{floor[i]}{room[i]:02d}室"
            addresses.append(addr)
        return addresses

    def _member_levels(self, rng: np.random.Generator) -> list[str]:
        lu = rng.random(self.P)
        levels = []
        for i in range(self.P):
            p = MEMBER_LEVEL_PROBS.get(self.segments[self.seg[i]].name, MEMBER_LEVEL_PROBS_OTHER)
            levels.append(MEMBER_LEVELS[int(np.searchsorted(np.cumsum(p), lu[i], side="right").clip(0, 3))])
        return levels

    def _number_customers(self, recs: list[list]) -> None:
        """Customer ids in registration order; the CSV rows; the [first, second] id pairs."""
        recs.sort(key=lambda r: (r[0], r[1]))
        self.customer_ids = [""] * self.P
        second_ids: dict[int, str] = {}
        rows = []
        reg_txt = ts_text(self.base_ts, [r[0] for r in recs])
        upd_txt = ts_text(self.base_ts, [r[12] for r in recs])
        for n, r in enumerate(recs):
            cid = f"C{10000001 + n}"
            if r[1] >= 0:
                self.customer_ids[r[1]] = cid
            else:
                second_ids[-1 - r[1]] = cid
            prov, city, _, _ = CITIES[self.city[r[8]]]
            consent = "true" if r[11] else "false"
            rows.append([cid, *r[2:8], prov, city, r[9], reg_txt[n], r[10], consent, upd_txt[n]])
        self.customer_rows = rows
        self.dup_pairs = [[self.customer_ids[i], second_ids[i]] for i in self.dup_of.tolist()]

    def _unique_phones(self, rng: np.random.Generator, n: int) -> list[str]:
        prefix = rng.integers(0, len(PHONE_PREFIXES), n)
        rest = rng.integers(0, 100_000_000, n)
        out = [f"{PHONE_PREFIXES[p]}{r:08d}" for p, r in zip(prefix.tolist(), rest.tolist())]
        seen: dict[str, int] = {}
        for i, p in enumerate(out):
            while p in seen:
                p = f"{PHONE_PREFIXES[int(rng.integers(0, len(PHONE_PREFIXES)))]}{int(rng.integers(0, 10**8)):08d}"
            seen[p] = i
            out[i] = p
        return out

    def _emails(self, rng: np.random.Generator, pinyin: list[tuple[str, str]]) -> list[str]:
        """One e-mail address per (surname, given name) in pinyin, unique ignoring case."""
        if not hasattr(self, "_email_seen"):
            self._email_seen: dict[str, int] = {}
        dom_cdf = cdf([w for _, w in EMAIL_DOMAINS])
        out = []
        for sur, given in pinyin:
            dom = EMAIL_DOMAINS[int(pick(rng, dom_cdf, 1)[0])][0]
            style = rng.random()
            year = int(rng.integers(60, 100)) if rng.random() < 0.5 else int(rng.integers(1970, 2006))
            if dom == "qq.com" and style < 0.7:
                local = str(int(rng.integers(10_000, 3_999_999_999)))
            elif style < 0.55:
                local = f"{sur}{given}{year}"
            elif style < 0.75:
                local = f"{given}.{sur}{int(rng.integers(1, 100))}"
            elif style < 0.9:
                local = f"{EMAIL_NICKS[int(rng.integers(0, len(EMAIL_NICKS)))]}_{sur}{int(rng.integers(1, 1000))}"
            else:
                local = f"{sur[0]}{given}{int(rng.integers(100, 10_000))}"
            email = f"{local}@{dom}"
            while email.lower() in self._email_seen:
                email = f"{local}{int(rng.integers(0, 10))}@{dom}"
                local = email.partition("@")[0]
            self._email_seen[email.lower()] = len(self._email_seen)
            out.append(email)
        return out

    def write_customers(self) -> None:
        rng = self.rng["planting"]
        rows = self.customer_rows
        idx = {f: i for i, f in enumerate(CUSTOMER_FIELDS)}
        bad: dict[str, list[str | bytes]] = {"wrong_column_count": [], "missing_key": [], "unparseable_timestamp": []}
        for kind in bad:
            for r in malformed_sources(rng, rows, planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
                if kind == "wrong_column_count":
                    # The address, unless a varied second registration left it (or more) out.
                    col = next(c for c in ("address", "name", "city") if len(r[idx[c]]) > 1)
                    a = r[idx[col]]
                    cut = int(rng.integers(1, len(a)))
                    r[idx[col]] = a[:cut] + "," + a[cut:]  # an unquoted comma splits the field
                elif kind == "missing_key":
                    r[idx["customer_id"]] = "" if rng.random() < 0.7 else "  "
                else:
                    col = "registered_at" if rng.random() < 0.6 else "updated_at"
                    r[idx[col]] = BAD_TIMESTAMPS[int(rng.integers(0, len(BAD_TIMESTAMPS)))]
                bad[kind].append(",".join(r) + "\n")
        self.write_csv(
            f"{SOURCE_FOLDER}/customers/customers.csv",
            "bronze.customers",
            "utf-8",
            CUSTOMER_FIELDS,
            rows,
            bad,
            rng,
            bom=True,
        )
