"""Privacy building blocks, by example: standardising, pseudonymising, masking, generalising,
and the leak detector that later tests run over silver and gold."""

from __future__ import annotations

import csv
import ipaddress
import json
from datetime import date, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from common import privacy as P
from shoplake.generate import PHONE_STYLES, format_phone, generate
from shoplake.generate import normalise_phone as generator_phone

SECRET = b"test-secret-not-for-production"

# Check characters worked out by hand, not by common.privacy nor by the generator (which has
# its own copy of the rule), so these tests are independent of both. GB 11643-1999 (ISO 7064
# MOD 11-2): S = sum of the first 17 digits times the weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2,
# and the check character is "1 0 X 9 8 7 6 5 4 3 2"[S mod 11].
#   11010519491231002: 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167, 167 mod 11 = 2 -> X
#       (the standard's worked example, 11010519491231002X)
#   44052418800101001: 28+36+0+25+16+16+2+8+48+0+0+9+0+5+0+0+2 = 195, mod 11 = 8 -> 4
#       (the standard's second example, 440524188001010014)
#   11010119900307123: 7+9+0+5+0+4+2+9+54+0+0+27+0+35+8+8+6 = 174, mod 11 = 9 -> 3
#   11010119900307124: the same with 8 for the last product: 176, mod 11 = 0 -> 1
#   11010119900307125: ... 10 for the last product: 178, mod 11 = 2 -> X
#   11010119900230123: 7+9+0+5+0+4+2+9+54+0+0+18+30+0+8+8+6 = 160, mod 11 = 6 -> 6
#   11010119901301123: 7+9+0+5+0+4+2+9+54+0+7+27+0+5+8+8+6 = 151, mod 11 = 8 -> 4
#   51010419850715003: 35+9+0+5+0+16+2+9+48+15+0+63+10+25+0+0+6 = 243, mod 11 = 1 -> 0
#   31011519991231002: 21+9+0+5+8+20+2+9+54+27+7+18+30+5+0+0+4 = 219, mod 11 = 10 -> 2
HAND_CHECKED = {
    "11010519491231002": "X",
    "44052418800101001": "4",
    "11010119900307123": "3",
    "11010119900307124": "1",
    "11010119900307125": "X",
    "11010119900230123": "6",
    "11010119901301123": "4",
    "51010419850715003": "0",
    "31011519991231002": "2",
}


def resident_id(first17: str) -> str:
    """A resident ID number with the check character worked out by hand (:data:`HAND_CHECKED`)."""
    return first17 + HAND_CHECKED[first17]


VALID_ID = resident_id("11010119900307123")  # Beijing Dongcheng, 1990-03-07, odd sequence: male
STANDARD_EXAMPLE_ID = "11010519491231002X"  # the GB 11643-1999 worked example
WRONG_CHECK_ID = VALID_ID[:17] + ("0" if VALID_ID[17] != "0" else "1")


def valid_birth_date(value):
    parsed = P.parse_resident_id(value)
    return parsed.birth_date if parsed is not None and parsed.valid else None


def valid_gender(value):
    parsed = P.parse_resident_id(value)
    return parsed.gender if parsed is not None and parsed.valid else None


def valid_or_null(value):
    if not value:
        return None
    parsed = P.parse_resident_id(value)
    return parsed is not None and parsed.valid


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ　１２３，ｘｙｚ", "ABC 123,xyz"),  # full-width letters, digits, comma, ideographic space
        ("  四川省\t成都市 \n 成华区  ", "四川省 成都市 成华区"),
        ("\ufeff邓倩\u200b", "邓倩"),  # BOM and zero-width space from pasted text
        ("Ｍａｔｅ　６０　Ｐｒｏ", "Mate 60 Pro"),
        ("already clean", "already clean"),
        ("   ", None),
        ("\u3000\t", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalise_text(raw, expected):
    assert P.normalise_text(raw) == expected
    if expected is not None:
        assert P.normalise_text(expected) == expected


# ----------------------------------------------------------------------------- phones


@pytest.mark.parametrize("style", [*PHONE_STYLES, "plain"])
def test_every_generator_phone_style_gives_the_same_e164(style):
    assert P.normalise_phone(format_phone("13800138000", style)) == "+8613800138000"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("１３８００１３８０００", "+8613800138000"),  # full-width digits
        ("＋８６ １３８－００１３－８０００", "+8613800138000"),
        ("(+86) 138.0013.8000", "+8613800138000"),
        ("+86 (138) 0013 8000", "+8613800138000"),
        (" 13800138000\n", "+8613800138000"),
        ("0086-199-9999-0000", "+8619999990000"),
        ("8613800138000", "+8613800138000"),
        ("+8613800138000", "+8613800138000"),  # E.164 is a fixed point
        ("+44 7700 900123", "+447700900123"),
        ("0044 7700 900123", "+447700900123"),
        ("+1 (415) 555-0100", "+14155550100"),
        # Not usable: landlines, wrong lengths, non-mobile prefixes, letters, stray plus signs.
        ("010-12345678", None),
        ("+86 10 1234 5678", None),
        ("12800138000", None),  # 12x is not a mobile prefix
        ("1380013800", None),
        ("138001380001", None),
        ("013800138000", None),
        ("4413800138000", None),  # without + or 00, only 86 is read as a country code
        ("86 13800138000 1", None),
        ("138-0013-8000 ext 12", None),
        ("tel:13800138000", None),
        ("138+00138000", None),
        ("++8613800138000", None),
        ("+0123456789", None),
        ("+1234567", None),  # 7 digits: too short for E.164
        ("+1234567890123456", None),  # 16 digits: too long
        ("١٣٨٠٠١٣٨٠٠٠", None),  # Arabic-Indic digits are digits to Python, not to a phone network
        ("138****8000", None),  # a masked number is not a number
        ("", None),
        ("   ", None),
        (None, None),
        (13800138000, None),  # only text: an int would have lost leading zeros elsewhere
    ],
)
def test_normalise_phone(raw, expected):
    assert P.normalise_phone(raw) == expected


def test_national_numbers_of_another_default_country_drop_the_trunk_zero():
    assert P.normalise_phone("07700 900123", default_country="44") == "+447700900123"
    assert P.normalise_phone("+8613800138000", default_country="44") == "+8613800138000"
    assert P.normalise_phone("13800138000", default_country="44") == "+4413800138000"


@pytest.mark.parametrize("bad", ["", "+86", "086", "1234", "8a", None])
def test_a_malformed_default_country_is_a_configuration_error(bad):
    with pytest.raises(ValueError, match="default_country"):
        P.normalise_phone("13800138000", default_country=bad)


# ----------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Zhang.San@QQ.COM", "zhang.san@qq.com"),
        ("  kiki_deng943@sohu.com \t", "kiki_deng943@sohu.com"),
        ("ｚｈａｎｇ＠ｑｑ．ｃｏｍ", "zhang@qq.com"),  # full-width
        ("a+tag@mail.example.co.uk", "a+tag@mail.example.co.uk"),
        ("1762644385@qq.com", "1762644385@qq.com"),
        ("zhang@qq", None),
        ("zhang@@qq.com", None),
        ("@qq.com", None),
        ("zhang@", None),
        (".zhang@qq.com", None),
        ("zh..ang@qq.com", None),
        ("zhang@-qq.com", None),
        ("zhang@qq.c", None),
        ("zhang san@qq.com", None),
        ("z***@qq.com", None),  # masked
        ("张三@qq.com", None),  # internationalised addresses are out of scope
        ("zhang@qq.com\n@x.com", None),
        ("", None),
        (None, None),
        (b"zhang@qq.com", None),
    ],
)
def test_normalise_email(raw, expected):
    assert P.normalise_email(raw) == expected


def test_email_domain_and_mask():
    assert P.email_domain(" Amy_Zhong@163.COM ") == "163.com"
    assert P.email_domain("not an email") is None
    assert P.mask_email("Zhang.San@QQ.com") == "z***@qq.com"
    assert P.mask_email("a@b.cn") == "a***@b.cn"
    assert P.mask_email("broken@") is None
    assert P.mask_email(None) is None


# ----------------------------------------------------------------------------- resident ID numbers


def test_a_valid_number_yields_its_facts():
    parsed = P.parse_resident_id(VALID_ID)
    assert parsed == P.ResidentId(
        number=VALID_ID,
        valid=True,
        region_code="110101",
        province_code="11",
        birth_date=date(1990, 3, 7),
        gender="M",
    )


@pytest.mark.parametrize(("first17", "check"), sorted(HAND_CHECKED.items()))
def test_check_character_is_the_hand_worked_one(first17, check):
    assert P.id_check_char(first17) == check
    for wrong in set("0123456789X") - {check}:
        parsed = P.parse_resident_id(first17 + wrong)
        assert parsed is not None and not parsed.valid


@pytest.mark.parametrize(
    ("number", "born", "gender"),
    [
        ("11010519491231002X", date(1949, 12, 31), "F"),
        ("11010119900307123" + "3", date(1990, 3, 7), "M"),
        ("51010419850715003" + "0", date(1985, 7, 15), "M"),
        ("31011519991231002" + "2", date(1999, 12, 31), "F"),
    ],
)
def test_valid_numbers_yield_their_birth_date_and_gender(number, born, gender):
    parsed = P.parse_resident_id(number)
    assert parsed.valid and (parsed.birth_date, parsed.gender) == (born, gender)


def test_check_character_x_in_any_width_and_case_with_spaces():
    for raw in [
        STANDARD_EXAMPLE_ID,
        STANDARD_EXAMPLE_ID.lower(),
        "１１０１０５ １９４９１２３１ ００２ｘ",
        " 110105194912310 02X ",
    ]:
        parsed = P.parse_resident_id(raw)
        assert parsed is not None and parsed.valid, raw
        assert parsed.number == STANDARD_EXAMPLE_ID
        assert (parsed.birth_date, parsed.gender) == (date(1949, 12, 31), "F")


def test_wrong_check_character_is_parsed_but_invalid():
    parsed = P.parse_resident_id(WRONG_CHECK_ID)
    assert parsed is not None and not parsed.valid
    assert parsed.birth_date == date(1990, 3, 7)  # what the digits say, for counting bad numbers


@pytest.mark.parametrize(
    "first17",
    [
        "11010119900230123",  # 30 February
        "11010119901301123",  # month 13
        "44052418800101001",  # 1880: before any living holder (the standard's other example)
    ],
)
def test_impossible_birth_dates_are_invalid_even_with_a_right_check_character(first17):
    parsed = P.parse_resident_id(resident_id(first17))
    assert parsed is not None
    assert parsed.valid is False
    assert parsed.birth_date is None


@pytest.mark.parametrize(
    "raw",
    [
        "110101900307123",  # legacy 15-digit number: deliberately not parsed
        VALID_ID[:17],
        VALID_ID + "1",
        "1101011990030712X3",
        "11010119900307123Y",
        "110101-19900307-1234",
        "",
        None,
        11010119900307123,
    ],
)
def test_anything_but_18_characters_is_not_a_resident_id(raw):
    assert P.parse_resident_id(raw) is None


def test_parsed_ids_never_print_the_number():
    parsed = P.parse_resident_id(VALID_ID)
    assert VALID_ID not in repr(parsed) and VALID_ID not in str(parsed)


def test_gender_follows_the_parity_of_the_17th_digit():
    assert P.parse_resident_id(resident_id("11010119900307124")).gender == "F"
    assert P.parse_resident_id(resident_id("11010119900307125")).gender == "M"


# ----------------------------------------------------------------------------- pseudonyms


def test_pseudonym_is_hmac_sha256_of_namespace_and_value():
    # Known answers, cross-checked with `printf 'user:C10000001' | openssl dgst -sha256 -hmac <secret>`:
    # if these change, every user_key in the lake changes with them.
    assert P.pseudonym(SECRET, "C10000001") == "d3d5f218e8249c97bc93919b959fe7c2a35328157170dd79d3b7404430bece7a"
    assert (
        P.pseudonym(SECRET, "+8613800138000", "phone")
        == "2cd4986680c7d6eaad654bd2143a40d8ac5ccb3ee6c133518c0b46911dd044be"
    )


def test_pseudonyms_are_separated_by_namespace_and_secret():
    user = P.pseudonym(SECRET, "C10000001", "user")
    assert P.pseudonym(SECRET, "C10000001", "order") != user
    assert P.pseudonym(b"another secret", "C10000001", "user") != user
    assert P.pseudonym(bytearray(SECRET), "C10000001") == user


def test_missing_ids_get_no_pseudonym():
    assert P.pseudonym(SECRET, None) is None
    assert P.pseudonym(SECRET, "") is None
    assert P.pseudonym(SECRET, 10000001) is None


@pytest.mark.parametrize(("secret", "error"), [(b"", ValueError), ("text-secret", TypeError), (None, TypeError)])
def test_there_is_no_default_secret(secret, error):
    with pytest.raises(error, match="secret"):
        P.pseudonym(secret, "C10000001")


@pytest.mark.parametrize("namespace", ["", "a:b", "user id", None])
def test_namespaces_cannot_collide(namespace):
    with pytest.raises(ValueError, match="namespace"):
        P.pseudonym(SECRET, "x", namespace)


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("raw", "keep_start", "keep_end", "expected"),
    [
        ("13800138000", 3, 4, "138****8000"),
        ("138-0013-8000", 3, 4, "138-****-8000"),
        ("11010119900307123X", 6, 0, "110101" + "*" * 11 + "X"),
        ("ab12cd", 0, 1, "ab*2cd"),
        ("1234567", 3, 4, "*******"),  # nothing would be hidden: hide everything
        ("12", 3, 4, "**"),
        ("no digits", 1, 1, "no digits"),
        ("１３８００１３８０００", 3, 4, "１３８****８０００"),  # full-width digits are digits too
        ("", 3, 4, ""),
        (None, 3, 4, None),
    ],
)
def test_mask_digits(raw, keep_start, keep_end, expected):
    assert P.mask_digits(raw, keep_start, keep_end) == expected


def test_mask_digits_rejects_bad_parameters():
    with pytest.raises(ValueError):
        P.mask_digits("123", -1, 2)
    with pytest.raises(ValueError):
        P.mask_digits("123", 1, 1, mask="7")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+8613800138000", "138****8000"),
        ("+86 138-0013-8000", "138****8000"),
        ("0086 138 0013 8000", "138****8000"),
        ("１３８００１３８０００", "138****8000"),
        ("+44 7700 900123", "+447*****0123"),
        ("010-12345678", None),  # never echo what could not be parsed
        ("junk", None),
        (None, None),
    ],
)
def test_mask_phone(raw, expected):
    assert P.mask_phone(raw) == expected


# ----------------------------------------------------------------------------- IP addresses


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("116.49.6.39", "116.49.6.0/24"),
        (" 1.2.3.255 ", "1.2.3.0/24"),
        ("１．２．３．４", "1.2.3.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("240e:3df:c88b:51d5:f0ee:4359:f0b5:d9c9", "240e:3df:c88b::/48"),
        ("2409:8A4F:D9A6::1", "2409:8a4f:d9a6::/48"),
        ("fe80::1%eth0", "fe80::/48"),  # the scope id is dropped
        ("::ffff:1.2.3.4", "1.2.3.0/24"),  # IPv4-mapped: the IPv4 client's /24
        # Already generalised: unchanged (idempotent), or cut to /24 and /48.
        ("1.2.3.0/24", "1.2.3.0/24"),
        ("1.2.3.4/32", "1.2.3.0/24"),
        ("1.2.3.4/24", "1.2.3.0/24"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("2001:db8:1234::/48", "2001:db8:1234::/48"),
        ("2001:db8:1234:5678::/64", "2001:db8:1234::/48"),
        # Invalid.
        ("256.1.1.1", None),
        ("1.2.3", None),
        ("01.2.3.4", None),
        ("1.2.3.4.5", None),
        ("240e:3df:c88b:51d5:f0ee:4359:f0b5:d9c9:3a3a", None),  # nine groups
        ("1.2.3.4/33", None),
        ("localhost", None),
        ("", None),
        (None, None),
        (16909060, None),  # ipaddress would take an int; we only take text
    ],
)
def test_truncate_ip(raw, expected):
    assert P.truncate_ip(raw) == expected


# ----------------------------------------------------------------------------- age bands

AS_OF = date(2024, 6, 15)


@pytest.mark.parametrize(
    ("born", "expected"),
    [
        (date(2006, 6, 15), "18-24"),  # 18th birthday today
        (date(2006, 6, 16), "<18"),  # tomorrow
        (date(1999, 6, 16), "18-24"),
        (date(1999, 6, 15), "25-34"),
        (date(1990, 1, 1), "25-34"),
        (date(1980, 1, 1), "35-44"),
        (date(1970, 1, 1), "45-54"),
        (date(1960, 1, 1), "55-64"),
        (date(1959, 6, 15), "65+"),
        (date(1900, 1, 1), "65+"),
        (AS_OF, "<18"),  # born today
        (date(2024, 6, 16), None),  # not born yet
        (datetime(1990, 1, 1, 12, 30), "25-34"),
        (None, None),
        ("1990-01-01", None),  # text is not a date: parse first
    ],
)
def test_age_band_default(born, expected):
    assert P.age_band(born, AS_OF) == expected


def test_leap_day_birthdays_turn_a_year_older_on_the_first_of_march():
    born = date(2004, 2, 29)
    assert P.age_band(born, date(2022, 2, 28)) == "<18"
    assert P.age_band(born, date(2022, 3, 1)) == "18-24"


def test_custom_bands():
    assert P.age_band(date(2000, 1, 1), AS_OF, bands=[0, 10, 20]) == "20+"
    assert P.age_band(date(2020, 1, 1), AS_OF, bands=[0, 10, 20]) == "0-9"
    assert P.age_band(date(2010, 1, 1), AS_OF, bands=[30]) == "<30"


@pytest.mark.parametrize("bands", [[], [18, 18], [25, 18], [-1, 18], [18.5], [True]])
def test_malformed_bands_are_rejected(bands):
    with pytest.raises(ValueError, match="age bands"):
        P.age_band(date(1990, 1, 1), AS_OF, bands)


def test_as_of_must_be_a_date():
    with pytest.raises(ValueError, match="as_of"):
        P.age_band(date(1990, 1, 1), None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- leak detection

PSEUDONYM = P.pseudonym(SECRET, "C10000001")


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("13800138000", ["mobile"]),
        ("tel: +86 138-0013-8000.", ["mobile"]),
        ("0086 138 0013 8000", ["mobile"]),
        ("86-13800138000", ["mobile"]),
        ("8613800138000", ["mobile"]),
        ("手机１３８００１３８０００", ["mobile"]),  # full-width, glued to Chinese text
        ("call13800138000", ["mobile"]),
        ("kiki_deng943@sohu.com", ["email"]),
        ("联系 Zhang.San@QQ.COM 谢谢", ["email"]),
        (f"id={VALID_ID};", ["resident_id"]),
        (STANDARD_EXAMPLE_ID.lower(), ["resident_id"]),
        ("116.49.6.39", ["ipv4_full"]),
        ("1.2.3.0", ["ipv4_full"]),  # no prefix: reads as an address
        ("1.2.3.4/24", ["ipv4_full"]),  # host bits set
        ("1.2.3.4/32", ["ipv4_full"]),
        ("::ffff:1.2.3.4", ["ipv4_full"]),
        ("2001:db8:1234:5678::1", ["ipv6_full"]),
        ('{"ip": "240e:3df:c88b:51d5:f0ee:4359:f0b5:d9c9"}', ["ipv6_full"]),
        (
            f"13800138000 z@qq.com {VALID_ID} 1.2.3.4 2001:db8::1",
            ["mobile", "email", "resident_id", "ipv4_full", "ipv6_full"],
        ),
    ],
)
def test_find_pii_finds(text, kinds):
    assert P.find_pii(text) == kinds


@pytest.mark.parametrize(
    "text",
    [
        PSEUDONYM,
        PSEUDONYM.upper(),
        f"user_key={PSEUDONYM}",
        "43857ff6c74fed3667fc023a8a0fae8b",  # an event id
        f"deadbeef13800138000{VALID_ID}cafe",  # hex whose digits happen to spell a mobile and an ID
        "6fe7edc41c34a382",  # a session id
        "138****8000",
        "+86 138****8000",
        "z***@qq.com",
        "110101********123X",
        "1.2.3.0/24",
        "10.0.0.0/8",
        "2001:db8:1234::/48",
        "240e:3df:c88b::/48",
        "O20240101000001",
        "O20241111000123",
        "C10000001",
        "P100059",
        "T10000001",
        "2024-01-01 13:45:12",
        "2024-01-01T13:45:12.138001+08:00",
        "1704039539407",  # epoch millis
        "17040395394071",  # a 14-digit run that contains an 11-digit mobile shape
        "0.13800138000",  # a decimal fraction
        "4230.00",
        "10:00:00",
        "1.2.3",
        "1.2.3.4.5",  # a version string with five parts
        "999.1.1.1",
        WRONG_CHECK_ID,
        "0" + VALID_ID,  # inside a longer digit run
        "",
        "四川省成都市成华区",
    ],
)
def test_find_pii_ignores(text):
    assert P.find_pii(text) == []


def test_find_pii_never_raises_on_non_text():
    assert P.find_pii(None) == []
    assert P.find_pii(13800138000) == []


# ----------------------------------------------------------------------------- the generator's landing data


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return [dict(zip(header, row)) for row in reader if len(row) == len(header)]


def test_the_generators_personal_data_is_understood(tmp_path):
    """Every phone, e-mail, ID number and IP the generator writes goes through the helpers."""
    generate(tmp_path, users=150, days=1, seed=11, start_date=date(2024, 1, 1))
    customers = _read_csv(tmp_path / "shop" / "customers" / "customers.csv")
    assert len(customers) >= 150

    for row in customers:
        reference = generator_phone(row["phone"])
        assert P.normalise_phone(row["phone"]) == (f"+86{reference}" if reference else None)
        assert P.normalise_phone(row["phone"]) is not None
        assert P.normalise_email(row["email"]) == row["email"].lower()
        if row["id_number"]:
            parsed = P.parse_resident_id(row["id_number"])
            assert parsed is not None and parsed.valid
            assert parsed.birth_date.isoformat() == row["birth_date"]
            assert parsed.gender == row["gender"]
        assert P.find_pii(row["phone"]) == ["mobile"]

    ips = set()
    events = sorted((tmp_path / "shop" / "events").glob("*.jsonl"))[0]
    for line in events.read_text("utf-8", errors="replace").splitlines():
        try:
            ips.add(json.loads(line)["context"]["ip"])
        except (ValueError, KeyError, TypeError):
            continue  # planted malformed records
    assert ips
    for ip in ips:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            assert P.truncate_ip(ip) is None
            continue
        prefix = P.truncate_ip(ip)
        assert address in ipaddress.ip_network(prefix)
        assert P.find_pii(prefix) == []


# ----------------------------------------------------------------------------- Spark column functions

# Values that exercise every branch; each column function must agree with its Python twin.
SPARK_VALUES = [
    "+86 138-0013-8000",
    "１３８００１３８０００",
    "0086 138 0013 8000",
    " Zhang.San@QQ.COM ",
    VALID_ID,
    STANDARD_EXAMPLE_ID.lower(),
    WRONG_CHECK_ID,
    "116.49.6.39",
    "2001:db8:1234:5678::1",
    "ＡＢＣ　１２３",
    "junk",
    "",
    None,
]


def test_column_functions_agree_with_the_python_functions(spark):
    df = spark.createDataFrame(list(enumerate(SPARK_VALUES)), "i int, v string")
    columns = {
        "text": (P.text_normalised, P.normalise_text),
        "phone": (P.phone_e164, P.normalise_phone),
        "masked": (P.phone_masked, P.mask_phone),
        "email": (P.email_normalised, P.normalise_email),
        "ip": (P.ip_prefix, P.truncate_ip),
        "key": (lambda c: P.pseudonym_col(c, SECRET), lambda v: P.pseudonym(SECRET, v)),
        "phone_key": (lambda c: P.pseudonym_col(c, SECRET, "phone"), lambda v: P.pseudonym(SECRET, v, "phone")),
        "born": (P.resident_id_birth_date, valid_birth_date),
        "gender": (P.resident_id_gender, valid_gender),
        "id_ok": (P.resident_id_valid, valid_or_null),
        "pii": (P.pii_kinds, P.find_pii),
    }
    rows = df.select("i", *[spark_fn(F.col("v")).alias(name) for name, (spark_fn, _) in columns.items()]).collect()
    got = {r.i: r.asDict() for r in rows}
    for i, value in enumerate(SPARK_VALUES):
        for name, (_, python_fn) in columns.items():
            assert got[i][name] == python_fn(value), (name, i)

    # And the results are the ones meant, not merely consistent.
    by_value = dict(zip(SPARK_VALUES, (got[i] for i in range(len(SPARK_VALUES)))))
    assert by_value["+86 138-0013-8000"]["phone"] == "+8613800138000"
    assert by_value["+86 138-0013-8000"]["masked"] == "138****8000"
    assert by_value[VALID_ID]["born"] == date(1990, 3, 7)
    assert by_value[VALID_ID]["gender"] == "M"
    assert by_value[VALID_ID]["id_ok"] is True
    assert by_value["junk"]["id_ok"] is False
    assert by_value[None]["id_ok"] is None
    assert by_value["116.49.6.39"]["ip"] == "116.49.6.0/24"
    assert by_value["116.49.6.39"]["pii"] == ["ipv4_full"]
    assert by_value[None]["key"] is None and by_value[""]["key"] is None


def test_age_band_column(spark):
    df = spark.createDataFrame(
        [(1, date(2006, 6, 15)), (2, date(2006, 6, 16)), (3, date(1950, 1, 1)), (4, None), (5, date(2030, 1, 1))],
        "i int, born date",
    )
    got = [r.band for r in df.select("i", P.age_band_col("born", AS_OF).alias("band")).orderBy("i").collect()]
    assert got == ["18-24", "<18", "65+", None, None]


def test_age_band_column_agrees_with_the_function_on_leap_days_and_month_ends(spark):
    # clean bands customers with the column: it must give the Python rule's answer.
    born = [date(2004, 2, 29), date(2004, 2, 28), date(2004, 3, 1), date(2005, 1, 31), date(2006, 12, 31)]
    days = [date(2022, 2, 28), date(2022, 3, 1), date(2024, 2, 28), date(2024, 2, 29), date(2023, 1, 30)]
    rows = [(b, d) for b in born for d in days]
    df = spark.createDataFrame(rows, "born date, as_of date")
    for d in days:
        got = {
            r.born: r.band
            for r in df.where(df.as_of == d).select("born", P.age_band_col("born", d).alias("band")).collect()
        }
        assert got == {b: P.age_band(b, d) for b in born}, d


def test_the_secret_is_not_in_the_plan(spark, capsys):
    secret = b"s3cr3t-that-must-not-show"
    df = spark.createDataFrame([("C1",)], "v string").select(P.pseudonym_col("v", secret).alias("k"))
    df.explain(mode="extended")
    assert "s3cr3t" not in capsys.readouterr().out
    assert "s3cr3t" not in repr(df.schema)


def test_column_functions_check_their_configuration_on_the_driver():
    # No session is needed: the checks run before any UDF is built.
    with pytest.raises(ValueError, match="secret"):
        P.pseudonym_col("v", b"")
    with pytest.raises(ValueError, match="default_country"):
        P.phone_e164("v", default_country="+86")
    with pytest.raises(ValueError, match="age bands"):
        P.age_band_col("v", AS_OF, bands=[30, 20])
