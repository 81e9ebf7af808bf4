"""Second registrations of bronze.customers: the same person registering again, by default with
the same phone number typed differently (``duplicates="same_phone"``), or with the variation
people really produce (``duplicates="varied"``, :data:`DUPLICATE_VARIATIONS`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from shoplake.generate.helpers import MIN_PLANTED, PHONE_STYLES, VARIED_DUP_SHARE, format_phone
from shoplake.generate.reference import DUPLICATE_VARIATIONS, HOMOPHONES, NAME_TYPOS, PHONE_PREFIXES


def _draw_kinds(rng: np.random.Generator) -> list[str]:
    """At most one variation per field, each with its chance in :data:`DUPLICATE_VARIATIONS`."""
    kinds = []
    for choices in DUPLICATE_VARIATIONS.values():
        u, acc = rng.random(), 0.0
        for kind, p in choices:
            acc += p
            if u < acc:
                kinds.append(kind)
                break
    return kinds


def _vary_name(rng: np.random.Generator, name: str, sur: str, given: str, kinds: list[str]) -> str:
    """The name as typed again; ``kinds`` is corrected when no typo was possible."""
    if "name_typo" in kinds:
        # A same-sounding character in the given name; else its two characters transposed.
        sounds = [p for p in range(1, len(name)) if name[p] in NAME_TYPOS or len(HOMOPHONES.get(name[p], ())) > 1]
        if sounds:
            pos = sounds[int(rng.integers(0, len(sounds)))]
            alts = [c for c in HOMOPHONES.get(name[pos], ()) if c != name[pos]]
            alt = NAME_TYPOS.get(name[pos]) or alts[int(rng.integers(0, len(alts)))]
            name = name[:pos] + alt + name[pos + 1 :]
        elif len(name) == 3 and name[1] != name[2]:
            name = name[0] + name[2] + name[1]
            kinds[kinds.index("name_typo")] = "name_transposed"
        else:
            kinds.remove("name_typo")  # nothing to mistype: written as before
    elif "name_pinyin" in kinds:
        name = f"{sur.capitalize()} {given.capitalize()}"  # Chinese order in Latin letters
    elif "name_pinyin_swapped" in kinds:
        name = f"{given.capitalize()} {sur.capitalize()}"  # given name first, as on foreign forms
    elif "name_missing" in kinds:
        name = ""
    return name


def _vary_birth(birth: str, kinds: list[str]) -> str:
    if "birth_day_month_swapped" in kinds:
        y, m, d = birth.split("-")
        if int(d) <= 12 and d != m:
            return f"{y}-{d}-{m}"
        kinds.remove("birth_day_month_swapped")  # no valid swapped date: written as before
    elif "birth_missing" in kinds:
        return ""
    return birth


class DuplicateBuilder:
    """Plants second registrations (state on ``self``; e-mails from the customer builder)."""

    P: int
    end_s: int
    reg_s: np.ndarray
    gender_m: np.ndarray
    rng: dict[str, np.random.Generator]
    dup_kinds: list[list[str]]
    _email_seen: dict[str, int]
    _emails: Any  # shoplake.generate.customers.CustomerBuilder._emails

    def _plant_same_phone_seconds(
        self, rng: np.random.Generator, recs: list[list], old: np.ndarray, first: dict[str, list]
    ) -> np.ndarray:
        """About 1% of the people (from ``old``) again with the same number written differently,
        maybe a typo in the name, another e-mail or no ID; returns who registered twice, sorted."""
        names, emails, phones, ids = first["names"], first["emails"], first["phones"], first["ids"]
        n_dup = min(len(old), max(MIN_PLANTED, int(round(0.01 * self.P))))
        dup_of = np.sort(rng.choice(old, n_dup, replace=False)) if n_dup else old[:0]
        for i in dup_of.tolist():
            r = rng.random(6)
            reg2 = int(self.reg_s[i] + (0.1 + 0.85 * r[0]) * (self.end_s - 1 - self.reg_s[i]))
            name = names[i]
            if r[1] < 0.4:
                last = name[-1]
                name = name[:-1] + NAME_TYPOS.get(last, last if len(name) < 3 else "")
                if name == names[i]:
                    name = names[i][:-1] + ("玮" if self.gender_m[i] else "莉")
            email = emails[i]
            if r[2] < 0.5:
                local, _, dom = email.partition("@")
                email = (local.capitalize() if local[:1].isalpha() else local) + "@" + dom.upper()
                if email == emails[i]:
                    email = emails[i].upper()
            elif r[2] < 0.75:
                email = self._emails(rng, [first["pinyin"][i]])[0]
            phone2 = format_phone(phones[i], PHONE_STYLES[int(r[3] * len(PHONE_STYLES))])
            if phone2 == first["phone_text"][i]:  # the first registration already used that style
                phone2 = phones[i]
            idn = ids[i] if r[4] < 0.5 else ""
            upd2 = reg2 + int(r[5] * (self.end_s - 1 - reg2))
            gender = "M" if self.gender_m[i] else "F"
            consent = bool(rng.random() < 0.8)
            birth, address = first["birth"][i], first["addresses"][i]
            recs.append([reg2, -1 - i, name, phone2, email, idn, gender, birth, i, address, "normal", consent, upd2])
        return dup_of

    def _plant_varied_seconds(self, recs: list[list], old: np.ndarray, first: dict[str, list]) -> np.ndarray:
        """Append varied second registrations of :data:`VARIED_DUP_SHARE` of the people
        (from ``old``) to ``recs``; returns who registered twice, sorted."""
        rng = self.rng["duplicates"]
        n_dup = min(len(old), max(MIN_PLANTED, int(round(VARIED_DUP_SHARE * self.P))))
        dup_of = np.sort(rng.choice(old, n_dup, replace=False)) if n_dup else old[:0]
        for i in dup_of.tolist():
            (name, phone, email, idn, birth, address), kinds = self._varied_second(rng, i, first)
            reg2 = int(self.reg_s[i] + (0.1 + 0.85 * rng.random()) * (self.end_s - 1 - self.reg_s[i]))
            upd2 = reg2 + int(rng.random() * (self.end_s - 1 - reg2))
            gender = "M" if self.gender_m[i] else "F"
            consent = bool(rng.random() < 0.8)
            recs.append([reg2, -1 - i, name, phone, email, idn, gender, birth, i, address, "normal", consent, upd2])
            self.dup_kinds.append(kinds)
        return dup_of

    def _varied_second(
        self, rng: np.random.Generator, i: int, first: dict[str, list]
    ) -> tuple[tuple[str, str, str, str, str, str], list[str]]:
        """Person ``i``'s second registration with realistic variation, and the kinds applied.

        (name, phone, e-mail, ID number, birth date, address) as typed; each field varies
        independently (:data:`DUPLICATE_VARIATIONS`). A different phone or e-mail is new and
        nobody else's, so an exact key never links the registration to another person.
        """
        kinds = _draw_kinds(rng)
        sur, given = first["pinyin"][i]
        name = _vary_name(rng, first["names"][i], sur, given, kinds)
        phone = self._vary_phone(rng, i, first, kinds)
        email = self._vary_email(rng, i, first, kinds)
        idn = "" if "id_missing" in kinds else first["ids"][i]
        birth = _vary_birth(first["birth"][i], kinds)
        address = "" if "address_missing" in kinds else first["addresses"][i]
        return (name, phone, email, idn, birth, address), kinds

    def _vary_phone(self, rng: np.random.Generator, i: int, first: dict[str, list], kinds: list[str]) -> str:
        phone = first["phones"][i]
        if "phone_format" in kinds:
            phone2 = format_phone(phone, PHONE_STYLES[int(rng.integers(0, len(PHONE_STYLES)))])
            phone = phone2 if phone2 != first["phone_text"][i] else phone
        elif "phone_missing" in kinds:
            phone = ""
        elif "phone_different" in kinds:
            taken = self._taken_phones if hasattr(self, "_taken_phones") else set(first["phones"])
            self._taken_phones = taken
            while phone in taken:
                phone = f"{PHONE_PREFIXES[int(rng.integers(0, len(PHONE_PREFIXES)))]}{int(rng.integers(0, 10**8)):08d}"
            taken.add(phone)
        return phone

    def _vary_email(self, rng: np.random.Generator, i: int, first: dict[str, list], kinds: list[str]) -> str:
        """The e-mail as typed again; ``kinds`` is corrected when a dot would make someone else's."""
        email = first["emails"][i]
        local, _, domain = email.partition("@")
        if "email_case" in kinds:
            email = local.capitalize() + "@" + (domain.upper() if rng.random() < 0.5 else domain)
            if email == first["emails"][i]:
                email = email.upper()
        elif "email_dots" in kinds:
            if "." in local:
                dotted = local.replace(".", "", 1)  # the dot left out
            else:
                cut = int(rng.integers(1, len(local))) if len(local) > 1 else 1
                dotted = local[:cut] + "." + local[cut:]
            email = dotted + "@" + domain
            if local.isdigit() or email.lower() in self._email_seen:  # a QQ number or someone else's
                kinds[kinds.index("email_dots")] = "email_case"
                email = first["emails"][i].upper()
            self._email_seen[email.lower()] = len(self._email_seen)
        elif "email_missing" in kinds:
            email = ""
        elif "email_different" in kinds:
            email = self._emails(rng, [first["pinyin"][i]])[0]
        return email
