"""Deterministic, seeded generator of realistic landing data for the sample shop.

:func:`generate` writes the layout declared in ``conf/sources/shop.yaml`` below
``<out_dir>/shop`` (customers, products, daily event files, orders, order lines,
campaign touches) and ``<out_dir>/shop/_manifest.json``: the ground truth planted
in the data (duplicates, segments, co-purchased pairs, taste clusters, churners,
campaign effects, malformed records per quarantine reason) that the later jobs are
tested against.

Shoppers: each person has a segment (how often they come, browse and buy), two
favourite top-level categories, and one or two latent taste clusters of brands
that cut across categories (see ``TASTE_CLUSTERS``): most product draws follow the
tastes, so who-likes-what is learnable below category level, as in a real shop.

Time model: every clock value is simulated as integer seconds of shop-local time
(Asia/Shanghai, UTC+8, no daylight saving) since ``start_date`` 00:00. CSV
timestamps are written as that local wall-clock time; event ``ts`` values are the
same instants as epoch milliseconds (UTC). Event files are split by local date.

Determinism: all randomness comes from ``numpy.random.default_rng`` streams derived
from the seed (one stream per concern, so changing how one table is generated does
not reshuffle the others); nothing reads the wall clock and nothing iterates over
sets. The same ``(users, days, seed, start_date)`` gives byte-identical files.

Malformed records are *extra* corrupted copies of records that are also delivered
intact, so quarantining them loses none of the planted truth.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SOURCE_FOLDER = "shop"
MANIFEST_NAME = "_manifest.json"
TIME_ZONE = "Asia/Shanghai"
UTC_OFFSET_S = 8 * 3600  # Asia/Shanghai has had no DST since 1991
DAY_S = 86_400
NEVER = 1 << 40  # the stop day of customers who never churn

# Field order exactly as declared in conf/sources/shop.yaml.
CUSTOMER_FIELDS = (
    "customer_id",
    "name",
    "phone",
    "email",
    "id_number",
    "gender",
    "birth_date",
    "province",
    "city",
    "address",
    "registered_at",
    "member_level",
    "marketing_consent",
    "updated_at",
)
PRODUCT_FIELDS = (
    "product_id",
    "product_name",
    "category_l1",
    "category_l2",
    "category_l3",
    "brand",
    "price",
    "updated_at",
)
ORDER_FIELDS = (
    "order_id",
    "user_id",
    "order_time",
    "status",
    "payment_method",
    "channel",
    "coupon_code",
    "discount_amount",
    "total_amount",
    "currency",
    "updated_at",
)
ORDER_LINE_FIELDS = (
    "order_id",
    "line_no",
    "product_id",
    "quantity",
    "unit_price",
    "line_amount",
    "updated_at",
)
TOUCH_FIELDS = (
    "touch_id",
    "campaign_id",
    "user_id",
    "channel",
    "variant",
    "sent_at",
    "opened",
    "clicked",
    "converted",
    "cost",
)

# Share of records planted as each kind of malformed record (at least 2 of each).
CSV_MALFORMED_RATE = 0.001
EVENT_MALFORMED_RATE = 0.0004
EXACT_DUP_RATE = 0.003
NEAR_DUP_RATE = 0.002
MIN_PLANTED = 2
# generate(duplicates=...): "same_phone" (the default) writes every second registration with
# the first one's number (only formatted differently), so exact keys find them all; "varied"
# plants more of them with the variation people produce when they register again
# (:data:`DUPLICATE_VARIATIONS`), for probabilistic identity resolution.
DUPLICATE_STYLES = ("same_phone", "varied")
VARIED_DUP_SHARE = 0.03
# Per field, the chance of each variation in a varied second registration (drawn independently
# per field; the rest of the time the field is written as in the first registration).
DUPLICATE_VARIATIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "name": (("name_typo", 0.3), ("name_pinyin", 0.1), ("name_pinyin_swapped", 0.05), ("name_missing", 0.03)),
    "phone": (("phone_format", 0.35), ("phone_missing", 0.2), ("phone_different", 0.2)),
    "email": (("email_case", 0.2), ("email_dots", 0.15), ("email_missing", 0.15), ("email_different", 0.25)),
    "id_number": (("id_missing", 0.6),),
    "birth_date": (("birth_day_month_swapped", 0.25), ("birth_missing", 0.1)),
    "address": (("address_missing", 0.3),),
}
# Genuine events with the same (user or session, type, product/query) are at least
# this far apart, so a content dedup window below it cannot merge real events;
# near-duplicates trail their original by 1-3 s.
MIN_SAME_CONTENT_GAP_MS = 30_000
NEAR_DUP_DELAY_MS = (1_000, 3_000)
LEGACY_CLIENT_SHARE = 0.04  # sessions from an old client that sends no event_id
ANON_SESSIONS_PER_USER_DAY = 0.02
# Why a session happens: browsing, a campaign conversion, an anonymous visit, a regular's reorder.
ORGANIC, CAMPAIGN, ANON, ROUTINE = range(4)

# ---------------------------------------------------------------------------- reference data
# (province, city, tier, districts as (6-digit administrative code, name)). Tiers on a 1-5
# scale: 1 = first tier (北上广深), 2 = "new first tier" (成都, 杭州, ...), 3 = second tier,
# 4 = third tier, 5 = fourth and fifth tier. The code is the first six digits of the
# resident ID numbers issued there.
CITIES: tuple[tuple[str, str, int, tuple[tuple[str, str], ...]], ...] = (
    (
        "北京市",
        "北京市",
        1,
        (("110101", "东城区"), ("110102", "西城区"), ("110105", "朝阳区"), ("110106", "丰台区"), ("110108", "海淀区")),
    ),
    (
        "上海市",
        "上海市",
        1,
        (
            ("310101", "黄浦区"),
            ("310104", "徐汇区"),
            ("310105", "长宁区"),
            ("310112", "闵行区"),
            ("310115", "浦东新区"),
        ),
    ),
    ("广东省", "广州市", 1, (("440103", "荔湾区"), ("440104", "越秀区"), ("440105", "海珠区"), ("440106", "天河区"))),
    ("广东省", "深圳市", 1, (("440303", "罗湖区"), ("440304", "福田区"), ("440305", "南山区"), ("440306", "宝安区"))),
    ("四川省", "成都市", 2, (("510104", "锦江区"), ("510105", "青羊区"), ("510107", "武侯区"), ("510108", "成华区"))),
    ("浙江省", "杭州市", 2, (("330102", "上城区"), ("330105", "拱墅区"), ("330106", "西湖区"), ("330108", "滨江区"))),
    ("重庆市", "重庆市", 2, (("500103", "渝中区"), ("500105", "江北区"), ("500106", "沙坪坝区"), ("500112", "渝北区"))),
    ("湖北省", "武汉市", 2, (("420102", "江岸区"), ("420106", "武昌区"), ("420111", "洪山区"))),
    ("陕西省", "西安市", 2, (("610102", "新城区"), ("610104", "莲湖区"), ("610113", "雁塔区"))),
    ("江苏省", "苏州市", 2, (("320505", "虎丘区"), ("320506", "吴中区"), ("320508", "姑苏区"))),
    ("江苏省", "南京市", 2, (("320102", "玄武区"), ("320104", "秦淮区"), ("320106", "鼓楼区"))),
    ("天津市", "天津市", 2, (("120101", "和平区"), ("120103", "河西区"), ("120104", "南开区"))),
    ("湖南省", "长沙市", 2, (("430102", "芙蓉区"), ("430103", "天心区"), ("430104", "岳麓区"))),
    ("河南省", "郑州市", 2, (("410102", "中原区"), ("410103", "二七区"), ("410105", "金水区"))),
    ("广东省", "东莞市", 2, (("441900", "南城街道"), ("441900", "东城街道"), ("441900", "莞城街道"))),
    ("山东省", "青岛市", 2, (("370202", "市南区"), ("370203", "市北区"), ("370212", "崂山区"))),
    ("浙江省", "宁波市", 3, (("330203", "海曙区"), ("330212", "鄞州区"))),
    ("安徽省", "合肥市", 3, (("340102", "瑶海区"), ("340104", "蜀山区"))),
    ("云南省", "昆明市", 3, (("530102", "五华区"), ("530103", "盘龙区"))),
    ("福建省", "福州市", 3, (("350102", "鼓楼区"), ("350103", "台江区"))),
    ("福建省", "厦门市", 3, (("350203", "思明区"), ("350206", "湖里区"))),
    ("山东省", "济南市", 3, (("370102", "历下区"), ("370103", "市中区"))),
    ("辽宁省", "沈阳市", 3, (("210102", "和平区"), ("210103", "沈河区"))),
    ("辽宁省", "大连市", 3, (("210202", "中山区"), ("210204", "沙河口区"))),
    ("黑龙江省", "哈尔滨市", 3, (("230102", "道里区"), ("230103", "南岗区"))),
    ("吉林省", "长春市", 3, (("220102", "南关区"), ("220104", "朝阳区"))),
    ("江西省", "南昌市", 3, (("360102", "东湖区"), ("360103", "西湖区"))),
    ("河北省", "石家庄市", 3, (("130102", "长安区"), ("130104", "桥西区"))),
    ("山西省", "太原市", 3, (("140105", "小店区"), ("140106", "迎泽区"))),
    ("广西壮族自治区", "南宁市", 3, (("450102", "兴宁区"), ("450103", "青秀区"))),
    ("贵州省", "贵阳市", 3, (("520102", "南明区"), ("520103", "云岩区"))),
    ("江苏省", "无锡市", 3, (("320213", "梁溪区"), ("320214", "新吴区"))),
    ("河南省", "洛阳市", 4, (("410302", "老城区"), ("410311", "洛龙区"))),
    ("四川省", "绵阳市", 4, (("510703", "涪城区"), ("510704", "游仙区"))),
    ("广西壮族自治区", "桂林市", 4, (("450302", "秀峰区"), ("450305", "七星区"))),
    ("江苏省", "扬州市", 4, (("321002", "广陵区"), ("321003", "邗江区"))),
    ("安徽省", "芜湖市", 4, (("340202", "镜湖区"), ("340207", "鸠江区"))),
    ("江西省", "赣州市", 4, (("360702", "章贡区"),)),
    ("广东省", "湛江市", 4, (("440802", "赤坎区"), ("440803", "霞山区"))),
    ("湖北省", "宜昌市", 4, (("420502", "西陵区"), ("420503", "伍家岗区"))),
    ("贵州省", "遵义市", 4, (("520302", "红花岗区"), ("520303", "汇川区"))),
    ("湖北省", "襄阳市", 4, (("420602", "襄城区"), ("420606", "樊城区"))),
    ("云南省", "曲靖市", 5, (("530302", "麒麟区"),)),
    ("安徽省", "六安市", 5, (("341502", "金安区"),)),
    ("河南省", "商丘市", 5, (("411402", "梁园区"),)),
    ("浙江省", "丽水市", 5, (("331102", "莲都区"),)),
    ("四川省", "南充市", 5, (("511302", "顺庆区"),)),
    ("湖南省", "岳阳市", 5, (("430602", "岳阳楼区"),)),
    ("吉林省", "白山市", 5, (("220602", "浑江区"),)),
    ("宁夏回族自治区", "固原市", 5, (("640402", "原州区"),)),
    ("甘肃省", "张掖市", 5, (("620702", "甘州区"),)),
    ("黑龙江省", "黑河市", 5, (("231102", "爱辉区"),)),
)
# Relative number of shoppers per city of each tier.
TIER_WEIGHT = {1: 4.0, 2: 2.4, 3: 1.4, 4: 0.8, 5: 0.4}

STREETS = (
    "人民路",
    "解放路",
    "中山路",
    "建设路",
    "和平路",
    "新华路",
    "长江路",
    "黄河路",
    "文化路",
    "胜利路",
    "朝阳路",
    "青年路",
    "幸福路",
    "光明路",
    "学府路",
    "科技路",
    "滨江路",
    "迎宾大道",
    "东风路",
    "工业大道",
    "花园路",
    "南京路",
    "北京路",
    "世纪大道",
)
COMPLEXES = (
    "阳光花园",
    "幸福小区",
    "翠苑",
    "锦绣华庭",
    "世纪城",
    "金色家园",
    "碧桂园",
    "万科城",
    "华府",
    "御景湾",
    "绿地新都会",
    "保利花园",
    "龙湖天街",
    "融创壹号院",
    "东方明珠苑",
)

# Surnames with rough relative frequencies, and their pinyin (for e-mail addresses).
SURNAMES: tuple[tuple[str, str, float], ...] = (
    ("王", "wang", 7.1),
    ("李", "li", 7.0),
    ("张", "zhang", 6.8),
    ("刘", "liu", 5.4),
    ("陈", "chen", 4.5),
    ("杨", "yang", 3.1),
    ("黄", "huang", 2.2),
    ("赵", "zhao", 2.0),
    ("吴", "wu", 1.8),
    ("周", "zhou", 1.7),
    ("徐", "xu", 1.3),
    ("孙", "sun", 1.3),
    ("马", "ma", 1.2),
    ("朱", "zhu", 1.1),
    ("胡", "hu", 1.1),
    ("郭", "guo", 1.1),
    ("何", "he", 1.0),
    ("高", "gao", 1.0),
    ("林", "lin", 1.0),
    ("罗", "luo", 0.9),
    ("郑", "zheng", 0.9),
    ("梁", "liang", 0.8),
    ("谢", "xie", 0.7),
    ("宋", "song", 0.7),
    ("唐", "tang", 0.7),
    ("许", "xu", 0.6),
    ("韩", "han", 0.6),
    ("冯", "feng", 0.6),
    ("邓", "deng", 0.6),
    ("曹", "cao", 0.6),
    ("彭", "peng", 0.5),
    ("曾", "zeng", 0.5),
    ("肖", "xiao", 0.5),
    ("田", "tian", 0.5),
    ("董", "dong", 0.5),
    ("袁", "yuan", 0.4),
    ("潘", "pan", 0.4),
    ("于", "yu", 0.4),
    ("蒋", "jiang", 0.4),
    ("蔡", "cai", 0.4),
    ("余", "yu", 0.4),
    ("杜", "du", 0.4),
    ("叶", "ye", 0.4),
    ("程", "cheng", 0.4),
    ("苏", "su", 0.3),
    ("魏", "wei", 0.3),
    ("吕", "lv", 0.3),
    ("丁", "ding", 0.3),
    ("任", "ren", 0.3),
    ("沈", "shen", 0.3),
    ("姚", "yao", 0.3),
    ("卢", "lu", 0.3),
    ("姜", "jiang", 0.3),
    ("崔", "cui", 0.3),
    ("钟", "zhong", 0.3),
    ("谭", "tan", 0.3),
    ("陆", "lu", 0.3),
    ("汪", "wang", 0.3),
    ("范", "fan", 0.3),
    ("金", "jin", 0.3),
    ("石", "shi", 0.3),
    ("廖", "liao", 0.3),
    ("贾", "jia", 0.3),
    ("夏", "xia", 0.3),
    ("韦", "wei", 0.2),
    ("方", "fang", 0.2),
    ("白", "bai", 0.2),
    ("邹", "zou", 0.2),
    ("孟", "meng", 0.2),
    ("熊", "xiong", 0.2),
    ("秦", "qin", 0.2),
    ("邱", "qiu", 0.2),
    ("江", "jiang", 0.2),
    ("尹", "yin", 0.2),
    ("薛", "xue", 0.2),
    ("段", "duan", 0.2),
    ("雷", "lei", 0.2),
    ("侯", "hou", 0.2),
    ("龙", "long", 0.2),
    ("史", "shi", 0.2),
    ("陶", "tao", 0.2),
    ("黎", "li", 0.2),
    ("贺", "he", 0.2),
    ("顾", "gu", 0.2),
    ("毛", "mao", 0.2),
    ("郝", "hao", 0.2),
    ("龚", "gong", 0.2),
    ("邵", "shao", 0.2),
    ("万", "wan", 0.2),
    ("钱", "qian", 0.2),
    ("严", "yan", 0.2),
    ("武", "wu", 0.2),
    ("戴", "dai", 0.2),
    ("莫", "mo", 0.1),
    ("孔", "kong", 0.1),
    ("汤", "tang", 0.1),
    ("欧阳", "ouyang", 0.05),
    ("司马", "sima", 0.02),
    ("诸葛", "zhuge", 0.02),
    ("上官", "shangguan", 0.02),
)
GIVEN_MALE: tuple[tuple[str, str], ...] = (
    ("伟", "wei"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("杰", "jie"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("刚", "gang"),
    ("平", "ping"),
    ("辉", "hui"),
    ("鹏", "peng"),
    ("华", "hua"),
    ("飞", "fei"),
    ("鑫", "xin"),
    ("波", "bo"),
    ("斌", "bin"),
    ("宇", "yu"),
    ("浩", "hao"),
    ("凯", "kai"),
    ("健", "jian"),
    ("俊", "jun"),
    ("帆", "fan"),
    ("帅", "shuai"),
    ("旭", "xu"),
    ("宁", "ning"),
    ("龙", "long"),
    ("峰", "feng"),
    ("建", "jian"),
    ("亮", "liang"),
    ("成", "cheng"),
    ("志", "zhi"),
    ("文", "wen"),
    ("博", "bo"),
    ("晨", "chen"),
    ("阳", "yang"),
    ("子", "zi"),
    ("轩", "xuan"),
    ("然", "ran"),
    ("睿", "rui"),
    ("泽", "ze"),
    ("天", "tian"),
    ("嘉", "jia"),
    ("毅", "yi"),
    ("昊", "hao"),
    ("铭", "ming"),
    ("海", "hai"),
)
GIVEN_FEMALE: tuple[tuple[str, str], ...] = (
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("艳", "yan"),
    ("娟", "juan"),
    ("霞", "xia"),
    ("秀", "xiu"),
    ("玲", "ling"),
    ("婷", "ting"),
    ("雪", "xue"),
    ("慧", "hui"),
    ("莹", "ying"),
    ("琳", "lin"),
    ("颖", "ying"),
    ("倩", "qian"),
    ("洁", "jie"),
    ("佳", "jia"),
    ("欣", "xin"),
    ("悦", "yue"),
    ("怡", "yi"),
    ("萱", "xuan"),
    ("涵", "han"),
    ("梓", "zi"),
    ("诗", "shi"),
    ("雨", "yu"),
    ("思", "si"),
    ("梦", "meng"),
    ("月", "yue"),
    ("晶", "jing"),
    ("蕾", "lei"),
    ("薇", "wei"),
    ("瑶", "yao"),
    ("琪", "qi"),
    ("妍", "yan"),
    ("婉", "wan"),
    ("晓", "xiao"),
    ("可", "ke"),
    ("馨", "xin"),
)
# Same-sounding characters: the typo a person makes when registering a second time.
NAME_TYPOS = {
    "伟": "玮",
    "明": "铭",
    "丽": "莉",
    "静": "婧",
    "华": "桦",
    "婷": "亭",
    "琳": "霖",
    "慧": "惠",
    "颖": "莹",
    "莹": "颖",
    "涛": "滔",
    "磊": "垒",
    "军": "君",
    "俊": "骏",
    "峰": "锋",
    "晨": "辰",
    "宇": "雨",
    "欣": "馨",
    "馨": "欣",
    "怡": "宜",
    "佳": "嘉",
    "嘉": "佳",
    "杰": "捷",
    "芳": "方",
    "敏": "闵",
    "雪": "雯",
    "洋": "阳",
    "阳": "洋",
    "鑫": "新",
    "鹏": "朋",
}
EMAIL_DOMAINS = (
    ("qq.com", 0.34),
    ("163.com", 0.2),
    ("126.com", 0.08),
    ("foxmail.com", 0.06),
    ("139.com", 0.05),
    ("sina.com", 0.05),
    ("gmail.com", 0.06),
    ("outlook.com", 0.06),
    ("hotmail.com", 0.03),
    ("aliyun.com", 0.02),
    ("sohu.com", 0.03),
    ("yeah.net", 0.02),
)
EMAIL_NICKS = (
    "sunny",
    "lucky",
    "happy",
    "tiger",
    "angel",
    "coco",
    "kiki",
    "leo",
    "jack",
    "amy",
    "momo",
    "xiaobai",
    "dabao",
    "star",
    "panda",
    "summer",
    "cat",
    "moon",
)
# Mobile prefixes in use (China Mobile, Unicom, Telecom, Broadnet, virtual operators).
PHONE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "145",
    "147",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "171",
    "173",
    "175",
    "176",
    "177",
    "178",
    "180",
    "181",
    "182",
    "183",
    "184",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "193",
    "195",
    "196",
    "197",
    "198",
    "199",
)
MOBILE_RE = re.compile(r"^1[3-9][0-9]{9}$")
# How the second registration of a duplicated person writes the same number.
PHONE_STYLES = ("+86 dashed", "+86 spaced", "spaced", "dashed", "86-", "+86", "0086 spaced")

MEMBER_LEVELS = ("normal", "silver", "gold", "platinum")

# (l1, l2, l3, price range in yuan, popularity weight, brands, descriptors).
CATEGORY_TREE: tuple[tuple[str, str, str, float, float, float, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "服装",
        "女装",
        "连衣裙",
        89,
        599,
        6,
        ("优衣库", "ZARA", "太平鸟", "伊芙丽", "欧时力"),
        ("法式碎花", "收腰显瘦", "气质长款", "夏季新款"),
    ),
    ("服装", "女装", "T恤", 39, 199, 5, ("优衣库", "森马", "ONLY", "太平鸟"), ("纯棉短袖", "宽松印花", "基础款圆领")),
    ("服装", "女装", "羽绒服", 299, 1999, 3, ("波司登", "鸭鸭", "雪中飞"), ("轻薄短款", "加厚长款", "连帽")),
    ("服装", "男装", "衬衫", 79, 399, 3, ("海澜之家", "雅戈尔", "优衣库"), ("商务长袖", "免烫修身", "牛津纺")),
    ("服装", "男装", "牛仔裤", 99, 499, 3, ("李维斯", "森马", "杰克琼斯"), ("直筒", "修身小脚", "宽松")),
    ("服装", "男装", "夹克", 199, 899, 2, ("海澜之家", "杰克琼斯", "太平鸟"), ("立领", "工装", "休闲")),
    (
        "运动户外",
        "运动鞋",
        "跑步鞋",
        199,
        1299,
        4,
        ("李宁", "安踏", "耐克", "阿迪达斯", "特步"),
        ("缓震", "轻便透气", "竞速"),
    ),
    ("运动户外", "运动鞋", "篮球鞋", 299, 1499, 2, ("李宁", "安踏", "耐克", "匹克"), ("实战", "高帮", "低帮")),
    ("运动户外", "运动服饰", "运动袜", 19, 69, 2, ("李宁", "安踏", "耐克"), ("中筒", "毛巾底", "5双装")),
    ("运动户外", "运动服饰", "运动裤", 99, 399, 2, ("李宁", "安踏", "阿迪达斯"), ("速干", "束脚", "宽松")),
    (
        "数码",
        "手机",
        "智能手机",
        999,
        8999,
        5,
        ("华为", "小米", "苹果", "OPPO", "vivo", "荣耀"),
        ("5G旗舰", "轻薄", "长续航"),
    ),
    ("数码", "手机配件", "手机壳", 19, 99, 3, ("绿联", "倍思", "图拉斯"), ("防摔", "磨砂", "透明")),
    ("数码", "手机配件", "充电器", 39, 199, 3, ("绿联", "安克", "倍思", "小米"), ("65W快充", "氮化镓", "双口")),
    (
        "数码",
        "电脑",
        "笔记本电脑",
        3499,
        12999,
        3,
        ("联想", "华为", "苹果", "戴尔", "惠普"),
        ("轻薄", "游戏本", "商务"),
    ),
    ("数码", "电脑外设", "鼠标", 29, 399, 3, ("罗技", "雷蛇", "小米"), ("无线", "静音", "电竞")),
    ("数码", "电脑外设", "键盘", 99, 899, 2, ("罗技", "达尔优", "樱桃"), ("机械", "无线蓝牙", "矮轴")),
    ("数码", "影音", "蓝牙耳机", 99, 1999, 4, ("华为", "苹果", "小米", "漫步者", "索尼"), ("降噪", "真无线", "运动")),
    ("食品", "零食", "坚果", 29, 159, 5, ("三只松鼠", "良品铺子", "百草味", "洽洽"), ("每日", "混合", "礼盒装")),
    ("食品", "零食", "饼干", 9.9, 49, 4, ("奥利奥", "好丽友", "嘉士利"), ("夹心", "全麦", "早餐")),
    ("食品", "零食", "薯片", 6.9, 29, 4, ("乐事", "可比克", "品客"), ("原味", "黄瓜味", "番茄味")),
    (
        "食品",
        "饮料冲调",
        "咖啡豆",
        49,
        199,
        2,
        ("星巴克", "雀巢", "三顿半", "隅田川"),
        ("中度烘焙", "意式拼配", "深度烘焙"),
    ),
    ("食品", "饮料冲调", "茶叶", 59, 899, 2, ("八马", "大益", "竹叶青"), ("明前", "特级", "礼盒装")),
    ("食品", "乳品", "牛奶", 39, 89, 4, ("伊利", "蒙牛", "特仑苏", "光明"), ("纯", "低脂", "有机")),
    ("食品", "酒水", "啤酒", 39, 129, 3, ("青岛啤酒", "雪花", "百威", "燕京"), ("经典", "纯生", "罐装")),
    ("食品", "酒水", "白酒", 99, 2999, 1, ("五粮液", "泸州老窖", "洋河", "汾酒"), ("浓香型", "清香型", "礼盒装")),
    (
        "美妆",
        "护肤",
        "面霜",
        99,
        1599,
        4,
        ("兰蔻", "雅诗兰黛", "欧莱雅", "珀莱雅", "自然堂"),
        ("补水保湿", "修护", "抗皱紧致"),
    ),
    ("美妆", "护肤", "精华液", 199, 1999, 3, ("雅诗兰黛", "兰蔻", "珀莱雅", "薇诺娜"), ("小棕瓶", "修护", "提亮")),
    ("美妆", "护肤", "面膜", 49, 299, 3, ("百雀羚", "自然堂", "可复美"), ("补水", "舒缓", "10片装")),
    ("美妆", "彩妆", "口红", 99, 399, 3, ("花西子", "完美日记", "迪奥", "阿玛尼"), ("哑光", "滋润", "丝绒")),
    ("美妆", "彩妆", "粉底液", 149, 599, 2, ("雅诗兰黛", "花西子", "完美日记"), ("持妆", "遮瑕", "控油")),
    ("个护清洁", "洗护", "洗发水", 29, 129, 4, ("海飞丝", "潘婷", "清扬", "阿道夫"), ("去屑", "控油", "柔顺")),
    ("个护清洁", "洗护", "护发素", 29, 129, 2, ("海飞丝", "潘婷", "阿道夫"), ("修护", "柔顺", "滋养")),
    ("个护清洁", "口腔护理", "牙膏", 9.9, 39, 3, ("云南白药", "高露洁", "舒适达", "黑人"), ("美白", "护龈", "清新")),
    ("个护清洁", "口腔护理", "牙刷", 9.9, 299, 2, ("飞利浦", "欧乐B", "高露洁"), ("软毛", "电动", "4支装")),
    ("家居", "厨具", "锅具", 99, 899, 3, ("苏泊尔", "九阳", "双立人", "爱仕达"), ("不粘", "炒锅", "铸铁")),
    ("家居", "厨具", "刀具", 59, 499, 1, ("双立人", "张小泉", "十八子"), ("不锈钢", "菜刀", "套装")),
    ("家居", "餐具", "咖啡杯", 29, 129, 2, ("无印良品", "乐扣乐扣", "膳魔师"), ("陶瓷", "马克杯", "保温")),
    ("家居", "家纺", "四件套", 199, 1299, 2, ("罗莱", "富安娜", "水星家纺"), ("纯棉", "简约", "全棉磨毛")),
    ("家居", "家纺", "枕头", 59, 399, 2, ("罗莱", "富安娜", "水星家纺"), ("乳胶", "护颈", "羽丝绒")),
    ("家居", "收纳", "收纳箱", 29, 149, 2, ("天马", "禧天龙", "无印良品"), ("大容量", "可折叠", "透明")),
    ("母婴", "奶粉", "婴儿奶粉", 199, 499, 3, ("飞鹤", "美赞臣", "爱他美", "惠氏"), ("1段", "2段", "3段")),
    ("母婴", "尿裤湿巾", "纸尿裤", 89, 249, 3, ("帮宝适", "花王", "好奇", "尤妮佳"), ("NB码", "M码", "L码")),
    ("母婴", "玩具", "积木", 59, 899, 2, ("乐高", "布鲁可", "费乐"), ("拼装", "益智", "大颗粒")),
    ("宠物", "猫用品", "猫粮", 59, 399, 3, ("皇家", "渴望", "麦富迪", "网易严选"), ("成猫", "幼猫", "全价")),
    ("宠物", "猫用品", "猫砂", 29, 129, 2, ("洁客", "N1", "网易严选"), ("豆腐", "膨润土", "混合")),
    ("宠物", "狗用品", "狗粮", 69, 499, 2, ("皇家", "比瑞吉", "伯纳天纯"), ("成犬", "幼犬", "全价")),
    ("家电", "厨房电器", "电饭煲", 199, 999, 2, ("美的", "苏泊尔", "九阳"), ("智能", "IH", "4L")),
    ("家电", "厨房电器", "空气炸锅", 199, 699, 3, ("美的", "九阳", "小米"), ("可视", "大容量", "无油")),
    ("家电", "生活电器", "吸尘器", 599, 3999, 2, ("戴森", "追觅", "小米"), ("无线", "手持", "除螨")),
    ("家电", "大家电", "冰箱", 1999, 8999, 1, ("海尔", "美的", "西门子"), ("十字对开门", "风冷无霜", "一级能效")),
)
# The smallest catalogue: every third-level category gets two products.
MIN_PRODUCTS = 2 * len(CATEGORY_TREE)

# Complementary third-level categories; one product of each side is planted as a pair
# bought together far more often than chance.
PAIR_CATEGORIES = (
    ("智能手机", "手机壳"),
    ("笔记本电脑", "鼠标"),
    ("洗发水", "护发素"),
    ("牙膏", "牙刷"),
    ("啤酒", "薯片"),
    ("婴儿奶粉", "纸尿裤"),
    ("猫粮", "猫砂"),
    ("咖啡豆", "咖啡杯"),
    ("面霜", "精华液"),
    ("跑步鞋", "运动袜"),
)
PAIR_BASKET_SHARE = 0.25  # share of baskets that include one planted pair
# Latent tastes below category level: every brand belongs to one of TASTE_CLUSTERS
# clusters (so a cluster cuts across categories: a brand-affinity "style"), every
# person likes one or two of them, and TASTE_SHARE of a known person's product draws
# (views, carts, basket lines) come from their clusters, weighted by popularity within
# the cluster (flattened by TASTE_POP_EXPONENT, so a cluster's tail is reached too).
# Only a model of who-likes-what can exploit this; popularity, global or per category,
# cannot.
TASTE_CLUSTERS = 8
TASTE_SHARE = 0.7
TASTE_TWO_CLUSTERS_SHARE = 0.5  # people with a second cluster
TASTE_SECOND_SHARE = 0.35  # of a two-cluster person's taste draws, from the second
TASTE_POP_EXPONENT = 0.3
QUERY_TEMPLATES = ("{l3}", "{l3} 新款", "{brand} {l3}", "{desc}{l3}", "{l3} 推荐", "{l3} 正品", "便宜{l3}")

# (coupon code, minimum subtotal in cents, cents off, percent off).
COUPONS = (
    ("MJ100-10", 10_000, 1_000, 0),
    ("MJ200-30", 20_000, 3_000, 0),
    ("MJ300-50", 30_000, 5_000, 0),
    ("MJ500-100", 50_000, 10_000, 0),
    ("ZK95", 5_000, 0, 5),
    ("ZK90", 20_000, 0, 10),
)
NEW_USER_COUPON = ("NEW20", 3_900, 2_000, 0)
VIP_COUPON = ("VIP50", 39_900, 5_000, 0)

EVENT_TYPES = ("view", "search", "add_to_cart", "remove_from_cart", "favourite", "share", "purchase")
VIEW, SEARCH, ADD, REMOVE, FAV, SHARE, PURCHASE = range(7)
PAGES = ("product_detail", "search", "cart", "checkout", "home", "recommend", "live_stream", "campaign_landing")
P_DETAIL, P_SEARCH, P_CART, P_CHECKOUT, P_HOME, P_RECOMMEND, P_LIVE, P_CAMPAIGN = range(8)
CHANNELS = ("app", "mini_program", "web")
APP, MINI, WEB = range(3)
PHONES = (
    ("iPhone 15", 8),
    ("iPhone 15 Pro", 6),
    ("iPhone 14", 7),
    ("iPhone 13", 6),
    ("HUAWEI Mate 60", 7),
    ("HUAWEI Mate 60 Pro", 5),
    ("HUAWEI P60", 4),
    ("HUAWEI nova 11", 4),
    ("Xiaomi 14", 6),
    ("Redmi K70", 5),
    ("Redmi Note 13", 5),
    ("OPPO Reno11", 5),
    ("OPPO Find X7", 2),
    ("vivo X100", 4),
    ("vivo S18", 4),
    ("HONOR 100", 3),
    ("HONOR Magic6", 2),
    ("OnePlus 12", 2),
    ("iPad Air", 2),
)
COMPUTERS = ("Windows PC", "MacBook")
# First octets of blocks allocated to Chinese operators.
IPV4_FIRST_OCTETS = (
    36,
    39,
    42,
    49,
    58,
    59,
    60,
    61,
    101,
    106,
    110,
    111,
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    120,
    121,
    122,
    123,
    124,
    125,
    139,
    171,
    175,
    180,
    182,
    183,
    202,
    210,
    211,
    218,
    219,
    220,
    221,
    222,
    223,
)
IPV6_PREFIXES = ("240e:3", "2409:8a", "2408:84")  # China Telecom, Mobile, Unicom
IPV6_SHARE = 0.06
PAYMENT_METHODS = ("alipay", "wechat_pay", "unionpay", "credit_card", "cod")
PAYMENT_WEIGHTS = (0.46, 0.38, 0.07, 0.06, 0.03)

# Sessions by hour of day (local time): ordinary shoppers peak at lunch and in the
# evening; night owls from 22:00 to 03:00.
DAY_HOURS = (
    0.9,
    0.5,
    0.25,
    0.12,
    0.1,
    0.15,
    0.4,
    1.0,
    1.8,
    2.6,
    3.2,
    3.6,
    4.2,
    3.8,
    3.2,
    3.0,
    3.0,
    3.1,
    3.4,
    4.2,
    5.3,
    6.0,
    5.4,
    3.0,
)
NIGHT_HOURS = (
    6.0,
    5.5,
    4.5,
    3.0,
    1.2,
    0.4,
    0.15,
    0.1,
    0.2,
    0.3,
    0.5,
    0.8,
    1.0,
    0.9,
    0.7,
    0.6,
    0.7,
    0.8,
    1.0,
    1.5,
    2.5,
    3.5,
    5.0,
    6.0,
)
# Shopping festivals (month, day) -> traffic multiplier.
FESTIVALS = {(11, 10): 1.5, (11, 11): 2.5, (6, 18): 2.0, (12, 12): 1.6, (1, 1): 1.1}
WEEKDAY_MULT = (1.0, 1.0, 1.0, 1.0, 1.05, 1.2, 1.2)


@dataclass(frozen=True)
class Segment:
    """A planted behavioural segment and the parameters that make it recognisable."""

    name: str
    share: float
    sessions_per_day: float
    mean_events: float  # browse events per session (geometric)
    purchase_prob: float  # share of sessions that end in an order
    extra_lines: float  # Poisson mean of order lines beyond the first
    coupon_prob: float
    price_bias: int  # -1 picks the cheaper of two candidate products, +1 the dearer
    night: bool
    type_probs: tuple[float, float, float, float, float, float]  # view..share


SEGMENTS = (
    Segment("vip_frequent", 0.05, 0.35, 10, 0.35, 1.2, 0.12, 1, False, (0.60, 0.12, 0.14, 0.03, 0.07, 0.04)),
    Segment("regular", 0.15, 0.08, 7, 0.15, 0.6, 0.10, 0, False, (0.62, 0.14, 0.12, 0.03, 0.06, 0.03)),
    Segment("bargain_hunter", 0.12, 0.14, 8, 0.30, 0.8, 0.85, -1, False, (0.62, 0.16, 0.11, 0.04, 0.05, 0.02)),
    Segment("night_owl", 0.08, 0.12, 8, 0.15, 0.5, 0.10, 0, True, (0.64, 0.14, 0.10, 0.03, 0.06, 0.03)),
    Segment("browser_rarely_buys", 0.20, 0.10, 10, 0.02, 0.2, 0.05, 0, False, (0.70, 0.15, 0.04, 0.01, 0.08, 0.02)),
    Segment("occasional", 0.30, 0.045, 6, 0.20, 0.3, 0.10, 0, False, (0.66, 0.16, 0.09, 0.02, 0.05, 0.02)),
    Segment("new", 0.10, 0.15, 7, 0.20, 0.4, 0.40, 0, False, (0.64, 0.18, 0.09, 0.02, 0.05, 0.02)),
)
SEG_INDEX = {s.name: i for i, s in enumerate(SEGMENTS)}
# ``segment_style="distinct"`` (the segmentation tests' shop): the same seven segments
# drawn apart, so the planted groups are what clustering can recover. In the default
# ("overlapping") shop most occasional buyers and browsers never order and look alike,
# VIPs and regulars differ in degree, and a supervised model on profile features
# reaches only ARI 0.72. Here occasional buyers buy when they come, browsers almost
# never do, VIPs come, browse and spend far more, night owls keep to the night, new
# customers joined in the last DISTINCT_NEW_DAYS days, and each person's session and
# purchase rates stray DISTINCT_SPREAD times as far from their segment's mean.
DISTINCT_SEGMENTS = tuple(
    replace(s, **changes)
    for s, changes in zip(
        SEGMENTS,
        (
            {"share": 0.08, "sessions_per_day": 0.5, "purchase_prob": 0.45, "mean_events": 16, "extra_lines": 2.0},
            {"sessions_per_day": 0.05, "mean_events": 4},
            {"purchase_prob": 0.25},
            {"purchase_prob": 0.30},
            {"purchase_prob": 0.01, "mean_events": 14},
            {"share": 0.27, "sessions_per_day": 0.05, "purchase_prob": 0.65, "mean_events": 4, "coupon_prob": 0.03},
            {"purchase_prob": 0.35},
        ),
        strict=True,
    )
)
DISTINCT_SPREAD = 0.3
DISTINCT_NEW_DAYS = 45
SEGMENT_STYLES = ("overlapping", "distinct")
ANON_TYPE_PROBS = (0.78, 0.20, 0.02, 0.0, 0.0, 0.0)
CHURN_SHARE_OF_REGULAR = 0.4
# Attrition (``generate(attrition=...)``, off by default): every customer may leave for
# good, with a constant daily hazard per segment counted from their first active day,
# the customer-base process churn models are built for. Rare buyers leave soonest;
# the values are per day at attrition=1.0.
LAPSE_PER_DAY = {
    "vip_frequent": 0.002,
    "regular": 0.002,
    "bargain_hunter": 0.005,
    "night_owl": 0.005,
    "browser_rarely_buys": 0.010,
    "occasional": 0.010,
    "new": 0.006,
}
# Regular buyers also reorder on a personal cycle (every 4-8 days), which makes both
# the segment and the churners' stop unmistakable.
REGULAR_CYCLE_DAYS = (4, 8)


@dataclass(frozen=True)
class Campaign:
    """A campaign with its variants' true conversion rates (the rate each touch converts at)."""

    campaign_id: str
    name: str
    channel: str
    send_at: float  # fraction of the window
    audience_share: float  # of eligible (consenting, active) customers
    variants: tuple[tuple[str, float, float], ...]  # (variant, true conversion rate, share of audience)
    coupon: tuple[str, int, int, int]


CAMPAIGNS = (
    Campaign(
        "CMP001", "新春焕新季", "sms", 0.2, 0.35, (("A", 0.040, 0.5), ("B", 0.065, 0.5)), ("CNY20", 9_900, 2_000, 0)
    ),
    # Null effect: both variants convert at exactly the same true rate.
    Campaign(
        "CMP002",
        "会员日专享",
        "push",
        0.4,
        0.35,
        (("A", 0.050, 0.5), ("B", 0.050, 0.5)),
        ("VIPDAY30", 19_900, 3_000, 0),
    ),
    Campaign(
        "CMP003",
        "满减狂欢节",
        "wechat",
        0.6,
        0.40,
        (("A", 0.060, 0.4), ("B", 0.090, 0.4), ("control", 0.030, 0.2)),
        ("FEST50", 29_900, 5_000, 0),
    ),
    Campaign(
        "CMP004",
        "新品尝鲜",
        "email",
        0.75,
        0.35,
        (("A", 0.020, 0.45), ("B", 0.035, 0.45), ("control", 0.015, 0.1)),
        ("NEWIN15", 9_900, 1_500, 0),
    ),
)
# Tracked opens and clicks per channel; cost per message sent (yuan, 4 decimals).
CHANNEL_OPEN = {"sms": 0.55, "push": 0.12, "wechat": 0.35, "email": 0.18}
CHANNEL_CLICK = {"sms": 0.10, "push": 0.25, "wechat": 0.20, "email": 0.15}
CHANNEL_COST = {"sms": 450, "push": 5, "wechat": 120, "email": 10}  # ten-thousandths of a yuan

BAD_TIMESTAMPS = ("2024-13-45 99:99", "2024-02-30 25:61:00", "31/01/2024 10:00", "yesterday")
BAD_NUMBERS = ("12.3.4", "abc", "1O8.00", "￥")
BAD_INTEGERS = ("two", "1.5.0", "三")
BAD_BOOLEANS = ("maybe", "unknown", "2", "yes!")
BAD_EVENT_TS = ('"2024-13-45 99:99"', '"{iso}"', '"{ms}ms"')
BAD_GBK = (b"\xff", b"\x80", b"\xfe\x7f")  # never valid GBK at a character boundary
BAD_UTF8 = (b"\xc3\x28", b"\xff", b"\xe4\xb8")  # invalid UTF-8 before an ASCII letter

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
_ID_RE = re.compile(r"^[0-9]{17}[0-9X]$")


# ---------------------------------------------------------------------------- pure helpers
def id_check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a resident ID number's first 17 digits.

    Raises:
        ValueError: when ``first17`` is not exactly 17 ASCII digits.
    """
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11]


def is_valid_id_number(value: str) -> bool:
    """True for an 18-character resident ID whose check character is right (upper-case X only)."""
    return bool(_ID_RE.match(value)) and id_check_digit(value[:17]) == value[17]


def id_number_facts(value: str) -> tuple[date, str]:
    """(birth date, gender "M"/"F") encoded in a valid resident ID number."""
    birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    return birth, ("M" if int(value[16]) % 2 == 1 else "F")


def format_phone(phone: str, style: str) -> str:
    """Write an 11-digit mobile number the way people type it (see :data:`PHONE_STYLES`)."""
    a, b, c = phone[:3], phone[3:7], phone[7:]
    forms = {
        "plain": phone,
        "+86 dashed": f"+86 {a}-{b}-{c}",
        "+86 spaced": f"+86 {a} {b} {c}",
        "spaced": f"{a} {b} {c}",
        "dashed": f"{a}-{b}-{c}",
        "86-": f"86-{phone}",
        "+86": f"+86{phone}",
        "0086 spaced": f"0086 {a} {b} {c}",
    }
    try:
        return forms[style]
    except KeyError:
        raise ValueError(f"unknown phone style {style!r} (known: {', '.join(forms)})") from None


def normalise_phone(value: str) -> str | None:
    """The 11-digit mainland mobile number in ``value`` (country code and separators dropped), or None."""
    digits = re.sub(r"[^0-9]", "", value)
    if len(digits) == 15 and digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return digits if MOBILE_RE.match(digits) else None


def money(cents: int) -> str:
    """Non-negative cents as a decimal string with two places (``1990`` -> ``"19.90"``)."""
    return f"{cents // 100}.{cents % 100:02d}"


def _mix64(values: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection on uint64 (SplitMix64 finaliser): distinct inputs give distinct ids."""
    x = values.astype(np.uint64) + np.uint64(key & 0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _hex_ids(counter: np.ndarray, key: int) -> list[str]:
    return [f"{v:016x}" for v in _mix64(counter, key).tolist()]


def _cdf(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    c = np.cumsum(w / w.sum())
    c[-1] = 1.0
    return c


def _pick(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


def _csv_lines(rows: Iterable[Sequence[str]]) -> list[str]:
    """Each row as one CSV text (RFC 4180 quoting, ``\\n`` line ends; may span lines)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    out = []
    for row in rows:
        writer.writerow(row)
        out.append(buf.getvalue())
        buf.seek(0)
        buf.truncate()
    return out


def _planted_count(rng: np.random.Generator, n: int, rate: float) -> int:
    """How many malformed copies to plant among ``n`` records: about ``rate``, at least two."""
    return max(MIN_PLANTED, int(rng.binomial(n, rate)))


# ---------------------------------------------------------------------------- generator
class _FileSink:
    """Writes files from byte chunks and remembers size, hash and record counts for the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[dict[str, Any]] = []

    def write(
        self,
        rel: str,
        table: str,
        encoding: str,
        chunks: Iterable[bytes],
        records: int,
        blank_lines: int,
        malformed: int,
    ) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with open(path, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        self.files.append(
            {
                "path": rel,
                "table": table,
                "encoding": encoding,
                "records": records,
                "malformed": malformed,
                "blank_lines": blank_lines,
                "bytes": size,
                "sha256": digest.hexdigest(),
            }
        )


class _ShopGenerator:
    """One generation run; :meth:`run` builds the world, writes every file and returns the manifest."""

    def __init__(
        self,
        out_dir: Path,
        users: int,
        days: int,
        seed: int,
        start_date: date,
        attrition: float = 0.0,
        segment_style: str = "overlapping",
        products: int | None = None,
        duplicates: str = "same_phone",
    ) -> None:
        if duplicates not in DUPLICATE_STYLES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_STYLES}, got {duplicates!r}")
        self.duplicates = duplicates
        if users <= 0 or days <= 0:
            raise ValueError(f"users and days must be positive, got users={users}, days={days}")
        if products is not None and products < MIN_PRODUCTS:
            raise ValueError(f"products must be at least {MIN_PRODUCTS} (two per third-level category), got {products}")
        if not 0.0 <= attrition <= 100.0:
            raise ValueError(f"attrition must be between 0 and 100 (a multiplier of LAPSE_PER_DAY), got {attrition}")
        if segment_style not in SEGMENT_STYLES:
            raise ValueError(f"segment_style must be one of {SEGMENT_STYLES}, got {segment_style!r}")
        self.attrition = attrition
        self.segment_style = segment_style
        self.products = products
        distinct = segment_style == "distinct"
        self.segments = DISTINCT_SEGMENTS if distinct else SEGMENTS
        self.night_cdf = _DISTINCT_NIGHT_CDF if distinct else _NIGHT_CDF
        self.out_dir = out_dir
        self.P = users
        self.days = days
        self.seed = seed
        self.start = start_date
        self.end_s = days * DAY_S
        self.epoch0 = (start_date - date(1970, 1, 1)).days * DAY_S - UTC_OFFSET_S
        # New streams go at the end: the first ones stay what they were (spawn is by position).
        names = (
            "people",
            "catalogue",
            "campaigns",
            "sessions",
            "events",
            "orders",
            "planting",
            "ids",
            "tastes",
            "attrition",
            "duplicates",
        )
        children = np.random.SeedSequence(seed).spawn(len(names))
        self.rng = {n: np.random.default_rng(c) for n, c in zip(names, children)}
        id_keys = self.rng["ids"].integers(0, 2**63, 3)
        self.session_key, self.event_key1, self.event_key2 = (int(k) for k in id_keys)
        self.sink = _FileSink(out_dir)
        self.quarantine: dict[str, dict[str, int]] = {}
        self.records: dict[str, int] = {}
        self.base_ts = np.datetime64(start_date.isoformat(), "s")

    # ------------------------------------------------------------------ formatting
    def ts_text(self, secs: Sequence[int] | np.ndarray) -> list[str]:
        arr = self.base_ts + np.asarray(secs, dtype=np.int64).astype("timedelta64[s]")
        return [s.replace("T", " ") for s in np.datetime_as_string(arr, unit="s").tolist()]

    def date_text(self, secs: Sequence[int] | np.ndarray) -> list[str]:
        arr = self.base_ts + np.asarray(secs, dtype=np.int64).astype("timedelta64[s]")
        return np.datetime_as_string(arr, unit="D").tolist()

    # ------------------------------------------------------------------ people
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
        is_new = seg == SEG_INDEX["new"]

        # Registration: the old guard registered up to five years ago, VIPs longer ago;
        # the "new" segment registers during the window.
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

        # Churners: regular buyers who stop at a known date (no sessions, no orders from then on).
        self.stop_day = np.full(P, NEVER, dtype=np.int64)
        regular = np.flatnonzero(seg == SEG_INDEX["regular"])
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

        # Individual heterogeneity around the segment's means.
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

        self.gender_m = rng.random(P) < 0.47
        # Category taste: two favourite top-level categories, tilted by gender.
        l1_names = self.cat_l1_names
        female_taste = {"服装": 3.0, "美妆": 3.0, "母婴": 1.6, "食品": 2.0, "家居": 1.6, "个护清洁": 1.6}
        male_taste = {"数码": 3.2, "运动户外": 2.2, "食品": 2.0, "家电": 1.6, "服装": 1.2}
        fav = np.empty((P, 2), dtype=np.int64)
        for is_m, taste in ((False, female_taste), (True, male_taste)):
            idx = np.flatnonzero(self.gender_m == is_m)
            w = np.array([taste.get(n, 1.0) for n in l1_names])
            keys = rng.random((len(idx), len(l1_names))) ** (1.0 / w)  # weighted sampling w/o replacement
            top = np.argsort(-keys, axis=1, kind="stable")[:, :2]
            fav[idx] = top
        self.fav = fav

        # Devices, channels, IPs.
        self.phone = _pick(rng, _cdf([w for _, w in PHONES]), P)
        self.pc = np.where(rng.random(P) < 0.4, rng.integers(0, len(COMPUTERS), P), -1)
        self.channel_pref = _pick(rng, _cdf([0.55, 0.30, 0.15]), P)
        self.channel_pref = np.where((self.pc < 0) & (self.channel_pref == WEB), APP, self.channel_pref)
        self.pay_pref = _pick(rng, _cdf(PAYMENT_WEIGHTS), P)
        self.home_ip = self._ips(rng, P)

        cities = np.array([TIER_WEIGHT[c[2]] for c in CITIES])
        self.city = _pick(rng, _cdf(cities), P)
        self.district = np.array([rng.integers(0, len(CITIES[c][3])) for c in self.city.tolist()])
        self.consent = rng.random(P) < 0.8

    def _ips(self, rng: np.random.Generator, n: int) -> list[str]:
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

    # ------------------------------------------------------------------ catalogue
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
        lo = np.array([CATEGORY_TREE[c][3] for c in cat_of])
        hi = np.array([CATEGORY_TREE[c][4] for c in cat_of])
        raw = np.exp(rng.uniform(np.log(lo), np.log(hi)))
        ending = rng.random(n)
        cents = np.where(
            raw < 30,
            np.floor(raw) * 100 + 90,
            np.where(raw < 1000, (np.floor(raw / 10) * 10 + 9) * 100, (np.floor(raw / 100) * 100 + 99) * 100),
        )
        cents = np.where((ending < 0.25) & (raw >= 30), np.round(raw) * 100, cents)
        self.price = cents.astype(np.int64)
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

        # Planted co-purchase pairs: a mid-popularity product from each side, so the pair's
        # co-occurrence by chance is small and the planted lift is unmistakable.
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

        # Products with awkward CSV text: a comma, a line break and a double quote inside a field.
        others = [i for i in range(n) if i not in used]
        special = rng.choice(others, 3, replace=False).tolist()
        names[special[0]] = names[special[0]] + ",家庭装"
        names[special[1]] = names[special[1]] + "\n(赠品：收纳袋)"
        names[special[2]] = names[special[2]].replace(" ", ' "网红款" ', 1)
        self.special_products = {
            "comma": self.product_ids[special[0]],
            "newline": self.product_ids[special[1]],
            "double_quote": self.product_ids[special[2]],
        }
        self.product_names = names
        self.brands = brands

        # Sampling tables: the whole catalogue and each top-level category.
        self.cdf_all = (np.arange(n), _cdf(self.pop))
        self.cdf_l1 = []
        for k in range(len(self.cat_l1_names)):
            members = np.flatnonzero(self.p_l1 == k)
            self.cdf_l1.append((members, _cdf(self.pop[members])))

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
            self.cdf_taste.append((members, _cdf(self.pop[members] ** TASTE_POP_EXPONENT)))

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
        return np.where(bias < 0, cheaper, np.where(bias > 0, dearer, first))

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
            members, cdf = self.cdf_all if k < 0 else tables[k]
            out[m] = members[np.minimum(np.searchsorted(cdf, u[m], side="right"), len(members) - 1)]
        return out

    def draw_queries(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
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

    # ------------------------------------------------------------------ campaigns
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
            variant = _pick(rng, _cdf(shares), n_aud)
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
                rows.append(
                    (
                        camp.campaign_id,
                        u,
                        camp.channel,
                        camp.variants[variant[i]][0],
                        int(sent[i]),
                        bool(opened[i]),
                        bool(clicked[i]),
                        bool(converted[i]),
                        0 if is_control[i] else CHANNEL_COST[camp.channel],
                    )
                )
                if converted[i]:
                    s = int(start[i])
                    self.forced.setdefault(s // DAY_S, []).append((u, s, ci))
            variants = {}
            for vi, (name, true_rate, share) in enumerate(camp.variants):
                m = variant == vi
                variants[name] = {
                    "true_conversion_rate": true_rate,
                    "audience_share": share,
                    "touches": int(m.sum()),
                    "observed_conversions": int((m & converted).sum()),
                }
            # True effects of each treatment against A and against the holdout (control).
            rates = {name: rate for name, rate, _ in camp.variants}
            effects = {}
            for ref in ("A", "control"):
                for name, rate in rates.items():
                    if ref in rates and name not in (ref, "control"):
                        effects[f"{name}_vs_{ref}"] = {
                            "absolute": round(rate - rates[ref], 6),
                            "relative": round((rate - rates[ref]) / rates[ref], 6),
                        }
            self.campaign_truth[camp.campaign_id] = {
                "name": camp.name,
                "channel": camp.channel,
                "sent_date": (self.start + timedelta(days=send_day)).isoformat(),
                "coupon_code": camp.coupon[0],
                "variants": variants,
                "true_effects": effects,
                "null_effect": len({v[1] for v in camp.variants if v[0] != "control"}) == 1,
            }
        self.touch_rows = rows

    # ------------------------------------------------------------------ sessions
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
            np.searchsorted(_DAY_CDF, u, side="right"),
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
            np.searchsorted(_DAY_CDF, rng.random(len(routine)), side="right"),
        )
        r_start = d * DAY_S + np.minimum(r_hours, 21) * 3600 + rng.integers(0, 3600, len(routine))

        n_anon = int(rng.poisson(ANON_SESSIONS_PER_USER_DAY * self.P * mult))
        a_start = d * DAY_S + np.searchsorted(_DAY_CDF, rng.random(n_anon), side="right").clip(0, 23) * 3600
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

    # ------------------------------------------------------------------ one day of events
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
        q_events = {"malformed_json": 0, "missing_key": 0, "unparseable_timestamp": 0, "encoding_error": 0}
        carry: dict[str, np.ndarray] | None = None
        seg_probs = np.array([s.type_probs for s in self.segments] + [ANON_TYPE_PROBS])
        type_cdf = np.cumsum(seg_probs / seg_probs.sum(1, keepdims=True), axis=1)
        type_cdf[:, -1] = 1.0
        mean_events = np.array([s.mean_events for s in self.segments])
        extra_lines = np.array([s.extra_lines for s in self.segments])
        self.user_json = [json.dumps(c) for c in self.customer_ids[: self.P]]
        for d in range(self.days):
            s = self.sessions_for_day(d)
            ev = self._day_events(d, s, erng, type_cdf, mean_events, extra_lines)
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
        d: int,
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
        # Session ids and contexts.
        g0 = self.sess_base + len(self.sess_head)
        drop = self.prev_g0 - self.sess_base
        del self.sess_head[:drop], self.sess_ctx[:drop]
        self.sess_base, self.prev_g0 = self.prev_g0, g0
        gidx = np.arange(g0, g0 + S)
        sids = _hex_ids(gidx, self.session_key)
        ch = np.where(rng.random(S) < 0.75, self.channel_pref[safe], _pick(rng, _cdf([0.55, 0.3, 0.15]), S))
        camp_channel = np.array([{"push": APP, "wechat": MINI, "sms": APP, "email": WEB}[c.channel] for c in CAMPAIGNS])
        ch = np.where(forced, camp_channel[np.maximum(s["campaign"], 0)], ch)
        ch = np.where(known, ch, _pick(rng, _cdf([0.2, 0.3, 0.5]), S))
        has_pc = known & (self.pc[safe] >= 0)
        ch = np.where(known & (ch == WEB) & ~has_pc & (rng.random(S) < 0.5), APP, ch)
        anon_phone = _pick(rng, _cdf([w for _, w in PHONES]), S)
        anon_pc = rng.integers(0, len(COMPUTERS), S)
        mobile_ip = rng.random(S) < 0.45
        fresh_ips = self._ips(rng, S)
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

        # Browse length and purchases.
        mean = np.where(known, mean_events[np.minimum(seg, len(self.segments) - 1)], 2.5)
        mean = np.where(forced, 5.0, mean)
        n_browse = np.minimum(rng.geometric(1.0 / mean), 40)
        buys = known & ((rng.random(S) < np.where(known, self.p_buy[safe], 0.0)) | forced | (s["kind"] == ROUTINE))
        buyers = np.flatnonzero(buys)
        baskets = self._baskets(rng, user[buyers], seg[buyers], extra_lines)
        k = np.zeros(S, dtype=np.int64)
        k[buyers] = [len(b) for b in baskets]
        n_browse = np.where(k > 0, np.maximum(n_browse, 2 * k + 1), n_browse)
        b_start = np.zeros(S, dtype=np.int64)
        b_start[buyers] = np.cumsum([0] + [len(b) for b in baskets])[:-1]
        flat_items = np.array([p for b in baskets for p, _ in b], dtype=np.int64)

        tot = n_browse + k
        E = int(tot.sum())
        ev_s = np.repeat(np.arange(S), tot)
        first = np.cumsum(tot) - tot
        pos = np.arange(E) - first[ev_s]
        nb = n_browse[ev_s]
        ke = k[ev_s]
        is_pur = pos >= nb
        cdf = type_cdf[seg[ev_s]]
        etype = (rng.random(E)[:, None] >= cdf).sum(axis=1).astype(np.int64)
        etype = np.minimum(etype, SHARE)
        ev_user = user[ev_s]
        prod = self.draw_products(rng, ev_user)
        query = self.draw_queries(rng, ev_user)
        # The funnel: each basket item is viewed, then added, then bought.
        j = pos - (nb - 2 * ke)
        block = (ke > 0) & (j >= 0) & ~is_pur
        bidx = b_start[ev_s]
        etype[block] = np.where(j[block] % 2 == 0, VIEW, ADD)
        prod[block] = flat_items[bidx[block] + j[block] // 2]
        etype[is_pur] = PURCHASE
        prod[is_pur] = flat_items[bidx[is_pur] + (pos[is_pur] - nb[is_pur])]
        landing = forced[ev_s] & (pos == 0)
        etype[landing] = VIEW
        # A removal takes out the latest item added earlier in the same session.
        add_at = np.where(etype == ADD, np.arange(E), -1)
        last_add = np.maximum.accumulate(add_at)
        rem = etype == REMOVE
        ok = rem & (last_add >= 0)
        ok[ok] = ev_s[last_add[ok]] == ev_s[ok]
        prod[ok] = prod[last_add[ok]]
        etype[rem & ~ok] = VIEW
        prod = np.where(etype == SEARCH, -1, prod)
        query = np.where(etype == SEARCH, query, -1)

        page = np.full(E, P_DETAIL)
        pv = rng.random(E)
        page = np.where((etype == VIEW) & (pv < 0.12), P_RECOMMEND, page)
        page = np.where((etype == VIEW) & (pv >= 0.12) & (pv < 0.18), P_LIVE, page)
        page = np.where((etype == VIEW) & (pos == 0) & (pv >= 0.7), P_HOME, page)
        page = np.where(etype == SEARCH, P_SEARCH, page)
        page = np.where(etype == REMOVE, P_CART, page)
        page = np.where(etype == PURCHASE, P_CHECKOUT, page)
        page = np.where(landing, P_CAMPAIGN, page)

        # Time: 8 s + exponential think time between browse events, a checkout pause,
        # then all purchase events of an order at the order time.
        gap = 8 + np.minimum(rng.exponential(45.0, E), 600.0)
        gap = np.where(is_pur & (pos == nb), 30 + rng.exponential(60.0, E), gap)
        gap = np.where(is_pur & (pos > nb), 0.0, gap)
        gap[first] = 0.0
        gap = gap.astype(np.int64)
        cs = np.cumsum(gap)
        offset = cs - cs[first[ev_s]]
        sec = s["start"][ev_s] + offset
        # Nothing happens after the window ends or on/after a churner's stop date: a
        # session that would run past its deadline is pulled back to end before it.
        deadline = np.minimum(
            self.end_s, np.where(known, np.minimum(self.stop_day[safe], self.days) * DAY_S, self.end_s)
        )
        if S:
            over = np.maximum(0, sec[first + tot - 1] - (deadline - 1))
            sec = sec - over[ev_s]
        ms = np.where(is_pur, 0, rng.integers(0, 1000, E))
        t = (self.epoch0 + sec) * 1000 + ms

        # Orders: one per buying session, at its purchase time.
        pur_first = first[buyers] + n_browse[buyers]
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
            "deadline": (self.epoch0 + deadline[ev_s]) * 1000,
        }

    def _baskets(
        self, rng: np.random.Generator, users: np.ndarray, seg: np.ndarray, extra_lines: np.ndarray
    ) -> list[list[tuple[int, int]]]:
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
                pick = liked[int(pair_u[i] * len(liked))] if len(liked) and pair_u[i] < 0.7 else pair_any[i]
                items.extend(self.pairs[pick])
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
        E = len(ev["t"])
        # Near-duplicates: a legacy client retrying a logged-in user's view/cart/favourite
        # a second or three later, without an event_id.
        cand = np.flatnonzero(
            ev["legacy"]
            & (ev["user"] >= 0)
            & np.isin(ev["etype"], (VIEW, ADD, FAV))
            & (ev["t"] + NEAR_DUP_DELAY_MS[1] < day_end_ms)
        )
        n_near = min(len(cand), int(rng.binomial(E, NEAR_DUP_RATE)))
        if last:
            n_near = min(len(cand), max(n_near, MIN_PLANTED - totals["near"]))
        near_src = np.sort(rng.choice(cand, n_near, replace=False)) if n_near else cand[:0]
        near_t = ev["t"][near_src] + rng.integers(NEAR_DUP_DELAY_MS[0], NEAR_DUP_DELAY_MS[1] + 1, n_near)
        is_copy = np.concatenate([np.zeros(E, bool), np.ones(n_near, bool)])
        ev = {k: np.concatenate([v, v[near_src]]) for k, v in ev.items()}
        ev["t"][E:] = near_t
        order = np.lexsort((np.arange(len(is_copy)), ev["t"]))
        ev = {k: v[order] for k, v in ev.items()}
        is_copy = is_copy[order]
        n = len(is_copy)
        # Event ids in file order, from a bijection of a global counter: unique by construction.
        has_id = ~ev["legacy"]
        n_ids = int(has_id.sum())
        counter = np.arange(self.event_counter, self.event_counter + n_ids)
        self.event_counter += n_ids
        h1 = _mix64(counter, self.event_key1).tolist()
        h2 = _mix64(counter, self.event_key2).tolist()
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

        inserts: list[tuple[int, int, str | bytes]] = []  # (position, tie-break, line)
        # Exact duplicates: the same line delivered again a little later in the file.
        with_id = np.flatnonzero(has_id)
        n_exact = min(len(with_id), int(rng.binomial(n, EXACT_DUP_RATE)))
        if last:
            n_exact = min(len(with_id), max(n_exact, MIN_PLANTED - totals["exact"]))
        for src in np.sort(rng.choice(with_id, n_exact, replace=False)).tolist():
            pos = int(min(n, src + 1 + rng.integers(0, 200)))
            inserts.append((pos, len(inserts), lines[src]))
        # Malformed copies, each with exactly one defect.
        genuine = np.flatnonzero(~is_copy)
        n_malformed = 0
        for kind in ("malformed_json", "missing_key", "unparseable_timestamp", "encoding_error"):
            m = int(rng.binomial(n, EVENT_MALFORMED_RATE))
            if last:
                m = max(m, MIN_PLANTED - q[kind])
            m = min(m, len(genuine))
            for src in rng.choice(genuine, m, replace=False).tolist():
                bad = self._corrupt_event(rng, kind, lines[src], int(ev["t"][src]))
                inserts.append((int(rng.integers(0, n + 1)), len(inserts), bad))
            q[kind] += m
            n_malformed += m
        blank = 0
        if d == 0:
            # Blank lines are not records: one whitespace-only line and a trailing empty line.
            inserts.append((int(rng.integers(0, n + 1)), len(inserts), "   \n"))
            inserts.append((n, len(inserts) + 1_000_000, "\n"))
            blank = 2
        inserts.sort(key=lambda x: (x[0], x[1]))

        def chunks() -> Iterable[bytes]:
            prev = 0
            for pos, _, text in inserts:
                if pos > prev:
                    yield "".join(lines[prev:pos]).encode("utf-8")
                    prev = pos
                yield text if isinstance(text, bytes) else text.encode("utf-8")
            if prev < n:
                yield "".join(lines[prev:]).encode("utf-8")

        day = self.start + timedelta(days=d)
        records = n + len(inserts) - blank
        malformed = n_malformed
        self.sink.write(
            f"{ev_dir}/events_{day.isoformat()}.jsonl", "bronze.events", "utf-8", chunks(), records, blank, malformed
        )
        totals["exact"] += n_exact
        totals["near"] += n_near
        totals["blank"] += blank
        return records

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

    # ------------------------------------------------------------------ customers
    def build_customers(self) -> None:
        """Persons (index < users) plus second registrations of a few of them."""
        rng = self.rng["people"]
        P = self.P
        s_names = [s[0] for s in SURNAMES]
        s_cdf = _cdf([s[2] for s in SURNAMES])
        surname = _pick(rng, s_cdf, P)
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

        # Birth dates: adults, mostly 20-40.
        age_days = ((18 + np.minimum(rng.gamma(3.0, 4.5, P), 52)) * 365.25).astype(np.int64)
        birth_s = -age_days * DAY_S - rng.integers(0, 365, P) * DAY_S
        birth = self.date_text(birth_s)
        # Resident ID: district code, birth date, sequence whose parity is the gender, check digit.
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

        phones = self._unique_phones(rng, P)
        emails = self._emails(rng, pinyin)
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
        level_p = {
            "vip_frequent": (0.0, 0.1, 0.5, 0.4),
            "regular": (0.3, 0.45, 0.2, 0.05),
            "bargain_hunter": (0.55, 0.35, 0.1, 0.0),
            "new": (1.0, 0.0, 0.0, 0.0),
        }
        lu = rng.random(P)
        levels = []
        for i in range(P):
            p = level_p.get(self.segments[self.seg[i]].name, (0.7, 0.22, 0.07, 0.01))
            levels.append(MEMBER_LEVELS[int(np.searchsorted(np.cumsum(p), lu[i], side="right").clip(0, 3))])
        # A few customers typed their number with a country code or separators.
        styled = rng.random(P) < 0.05
        style_pick = rng.integers(0, len(PHONE_STYLES), P)
        phone_text = [format_phone(p, PHONE_STYLES[style_pick[i]]) if styled[i] else p for i, p in enumerate(phones)]
        updated = self.reg_s + (rng.random(P) * (self.end_s - 1 - self.reg_s)).astype(np.int64)

        recs = []  # (registered_s, person, fields-without-id)
        for i in range(P):
            recs.append(
                [
                    int(self.reg_s[i]),
                    i,
                    names[i],
                    phone_text[i],
                    emails[i],
                    ids[i],
                    "M" if self.gender_m[i] else "F",
                    birth[i],
                    i,
                    addresses[i],
                    levels[i],
                    bool(self.consent[i]),
                    int(updated[i]),
                ]
            )

        # Second registrations: the same person again, by default with the same number typed
        # differently; with duplicates="varied" as people really re-register.
        old = np.flatnonzero(self.seg != SEG_INDEX["new"])
        self.dup_kinds: list[list[str]] = []
        if self.duplicates == "varied":
            first = {"names": names, "pinyin": pinyin, "phones": phones, "phone_text": phone_text, "emails": emails}
            first |= {"ids": ids, "birth": birth, "addresses": addresses}
            dup_of = self._plant_varied_seconds(recs, old, first)
        else:
            n_dup = min(len(old), max(MIN_PLANTED, int(round(0.01 * P))))
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
                    email = self._emails(rng, [pinyin[i]])[0]
                phone2 = format_phone(phones[i], PHONE_STYLES[int(r[3] * len(PHONE_STYLES))])
                if phone2 == phone_text[i]:  # the first registration already used that style
                    phone2 = phones[i]
                idn = ids[i] if r[4] < 0.5 else ""
                upd2 = reg2 + int(r[5] * (self.end_s - 1 - reg2))
                recs.append(
                    [
                        reg2,
                        -1 - i,
                        name,
                        phone2,
                        email,
                        idn,
                        "M" if self.gender_m[i] else "F",
                        birth[i],
                        i,
                        addresses[i],
                        "normal",
                        bool(rng.random() < 0.8),
                        upd2,
                    ]
                )
        self.dup_of = dup_of

        recs.sort(key=lambda r: (r[0], r[1]))
        self.customer_ids = [""] * P
        second_ids: dict[int, str] = {}
        rows = []
        reg_txt = self.ts_text([r[0] for r in recs])
        upd_txt = self.ts_text([r[12] for r in recs])
        for n, r in enumerate(recs):
            cid = f"C{10000001 + n}"
            if r[1] >= 0:
                self.customer_ids[r[1]] = cid
            else:
                second_ids[-1 - r[1]] = cid
            prov, city, _, _ = CITIES[self.city[r[8]]]
            rows.append(
                [
                    cid,
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    prov,
                    city,
                    r[9],
                    reg_txt[n],
                    r[10],
                    "true" if r[11] else "false",
                    upd_txt[n],
                ]
            )
        self.customer_rows = rows
        self.dup_pairs = [[self.customer_ids[i], second_ids[i]] for i in dup_of.tolist()]
        self.phones = phones

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
        kinds = []
        for choices in DUPLICATE_VARIATIONS.values():
            u, acc = rng.random(), 0.0
            for kind, p in choices:
                acc += p
                if u < acc:
                    kinds.append(kind)
                    break
        name = first["names"][i]
        sur, given = first["pinyin"][i]
        if "name_typo" in kinds:
            # A same-sounding character in the given name; else its two characters transposed.
            sounds = [p for p in range(1, len(name)) if name[p] in NAME_TYPOS or len(_HOMOPHONES.get(name[p], ())) > 1]
            if sounds:
                pos = sounds[int(rng.integers(0, len(sounds)))]
                alts = [c for c in _HOMOPHONES.get(name[pos], ()) if c != name[pos]]
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
            email = self._emails(rng, [(sur, given)])[0]
        idn = "" if "id_missing" in kinds else first["ids"][i]
        birth = first["birth"][i]
        if "birth_day_month_swapped" in kinds:
            y, m, d = birth.split("-")
            if int(d) <= 12 and d != m:
                birth = f"{y}-{d}-{m}"
            else:
                kinds.remove("birth_day_month_swapped")  # no valid swapped date: written as before
        elif "birth_missing" in kinds:
            birth = ""
        address = "" if "address_missing" in kinds else first["addresses"][i]
        return (name, phone, email, idn, birth, address), kinds

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
        if not hasattr(self, "_email_seen"):
            self._email_seen: dict[str, int] = {}
        dom_cdf = _cdf([w for _, w in EMAIL_DOMAINS])
        out = []
        for sur, given in pinyin:
            dom = EMAIL_DOMAINS[int(_pick(rng, dom_cdf, 1)[0])][0]
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

    # ------------------------------------------------------------------ orders
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
            coupon: tuple[str, int, int, int] | None = None
            if camp >= 0 and r[k, 0] < 0.8:
                coupon = CAMPAIGNS[camp].coupon
            elif seg.name == "new" and user not in new_seen:
                coupon = NEW_USER_COUPON
            elif r[k, 1] < seg.coupon_prob:
                pool = list(COUPONS) + ([VIP_COUPON] if seg.name == "vip_frequent" else [])
                usable = [c for c in pool if subtotal >= c[1]]
                if usable:
                    # Bargain hunters find the best coupon; others take whichever they have.
                    if seg.name == "bargain_hunter":
                        coupon = max(usable, key=lambda c: (self._discount(c, subtotal), c[0]))
                    else:
                        coupon = usable[int(r[k, 2] * len(usable))]
            new_seen.add(user)
            discount = self._discount(coupon, subtotal) if coupon and subtotal >= coupon[1] else 0
            code = coupon[0] if coupon and discount else ""
            if ch == MINI:
                pay = "wechat_pay"  # mini programs pay through WeChat only
            elif r[k, 3] < 0.85:
                pay = PAYMENT_METHODS[self.pay_pref[user]]
            else:
                pay = PAYMENT_METHODS[int(np.searchsorted(_PAY_CDF, r[k, 8], side="right"))]
            first_update = o_s + 5 + int(r[k, 4] * 115)
            status = "paid"
            # Campaign conversions stay paid: a converted touch is followed by a real order.
            if camp < 0 and r[k, 5] < 0.04:
                status, first_update = "cancelled", o_s + 300 + int(r[k, 4] * 1500)
            first_update = min(first_update, self.end_s - 1)
            refund_at = -1
            room = self.end_s - 1 - o_s
            if camp < 0 and status == "paid" and r[k, 6] < 0.045 and room > DAY_S + 60:
                refund_at = o_s + DAY_S + int(r[k, 7] * (min(10 * DAY_S, room) - DAY_S))
            status_counts["refunded" if refund_at >= 0 else status] += 1
            header.append(
                (oid, self.customer_ids[user], status, pay, CHANNELS[ch], code, discount, subtotal - discount)
            )
            times.extend((o_s, first_update, max(refund_at, 0)))
        text = self.ts_text(times)
        swap = rng.random(n) < 0.5
        order_rows: list[list[str]] = []
        line_rows: list[list[str]] = []
        for k, (oid, cid, status, pay, channel, code, discount, total) in enumerate(header):
            o_txt, u1_txt, refund_txt = text[3 * k : 3 * k + 3]
            base = [oid, cid, o_txt, status, pay, channel, code, money(discount), money(total), "CNY", u1_txt]
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
        self.status_counts = status_counts

    @staticmethod
    def _discount(coupon: tuple[str, int, int, int], subtotal: int) -> int:
        if coupon[3]:
            return int(round(subtotal * coupon[3] / 100))
        return coupon[2]

    # ------------------------------------------------------------------ CSV files
    def write_csv(
        self,
        rel: str,
        table: str,
        encoding: str,
        header: Sequence[str],
        rows: list[list[str]],
        malformed: dict[str, list[str | bytes]],
        rng: np.random.Generator,
        bom: bool = False,
        blank_lines: int = 0,
    ) -> None:
        """Write rows, with malformed lines inserted at random positions between records."""
        lines = _csv_lines(rows)
        inserts: list[tuple[int, int, str | bytes]] = []
        for bad_lines in malformed.values():
            for bad in bad_lines:
                inserts.append((int(rng.integers(0, len(lines) + 1)), len(inserts), bad))
        for _ in range(blank_lines):
            inserts.append((int(rng.integers(1, max(2, len(lines)))), len(inserts), "\n"))
        inserts.sort(key=lambda x: (x[0], x[1]))

        def chunks() -> Iterable[bytes]:
            yield (b"\xef\xbb\xbf" if bom else b"") + ",".join(header).encode(encoding) + b"\n"
            prev = 0
            for pos, _, text in inserts:
                if pos > prev:
                    yield "".join(lines[prev:pos]).encode(encoding)
                    prev = pos
                yield text if isinstance(text, bytes) else text.encode(encoding)
            if prev < len(lines):
                yield "".join(lines[prev:]).encode(encoding)

        n_bad = sum(len(v) for v in malformed.values())
        records = len(rows) + n_bad
        self.sink.write(rel, table, encoding, chunks(), records, blank_lines, n_bad)
        self.records[table] = records
        self.quarantine[table] = {k: len(v) for k, v in malformed.items()}

    @staticmethod
    def _plain(fields: Sequence[str]) -> bool:
        return not any(c in f for f in fields for c in ',"\n\r')

    def _sources(self, rng: np.random.Generator, rows: list[list[str]], n: int) -> list[list[str]]:
        """``n`` distinct rows that need no CSV quoting (so a hand-made defect stays the only one)."""
        plain = [i for i, r in enumerate(rows) if self._plain(r)]
        picks = rng.choice(len(plain), min(n, len(plain)), replace=False).tolist()
        return [list(rows[plain[i]]) for i in sorted(picks)]

    def write_customers(self) -> None:
        rng = self.rng["planting"]
        rows = self.customer_rows
        idx = {f: i for i, f in enumerate(CUSTOMER_FIELDS)}
        bad: dict[str, list[str | bytes]] = {"wrong_column_count": [], "missing_key": [], "unparseable_timestamp": []}
        for kind in bad:
            for r in self._sources(rng, rows, _planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
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

    def write_products(self) -> None:
        rng = self.rng["planting"]
        upd = self.ts_text(
            (-rng.integers(0, 180 * DAY_S, self.n_products) + rng.integers(0, self.end_s, self.n_products)).tolist()
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
            for r in self._sources(rng, rows, _planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
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

    def write_orders(self) -> None:
        rng = self.rng["planting"]
        rows = self.order_rows
        bad: dict[str, list[str | bytes]] = {"unparseable_number": [], "wrong_column_count": []}
        for r in self._sources(rng, rows, _planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
            col = 8 if rng.random() < 0.7 else 7  # total_amount or discount_amount
            r[col] = BAD_NUMBERS[int(rng.integers(0, len(BAD_NUMBERS)))]
            bad["unparseable_number"].append(",".join(r) + "\n")
        for r in self._sources(rng, rows, _planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
            r = r[:-1] if rng.random() < 0.5 else r + ["web"]  # a truncated or over-long export line
            bad["wrong_column_count"].append(",".join(r) + "\n")
        self.write_csv(
            f"{SOURCE_FOLDER}/orders/orders.csv", "bronze.orders", "utf-8", ORDER_FIELDS, rows, bad, rng, blank_lines=1
        )

    def write_order_lines(self) -> None:
        rng = self.rng["planting"]
        rows = self.line_rows
        bad: dict[str, list[str | bytes]] = {"unparseable_number": []}
        for r in self._sources(rng, rows, _planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
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

    def write_touches(self) -> None:
        rng = self.rng["planting"]
        sent_txt = self.ts_text([t[4] for t in self.touch_rows])
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
        for r in self._sources(rng, rows, _planted_count(rng, len(rows), CSV_MALFORMED_RATE)):
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

    # ------------------------------------------------------------------ orchestration
    def clear_old_files(self) -> None:
        """Remove files a previous run left where the ingest would read them (stale days would lie)."""
        root = self.out_dir / SOURCE_FOLDER
        stale = [root / MANIFEST_NAME] if (root / MANIFEST_NAME).exists() else []
        for folder, pattern in (
            ("customers", "*.csv"),
            ("products", "*.csv"),
            ("events", "*.jsonl"),
            ("orders", "*.csv"),
            ("order_lines", "*.csv"),
            ("campaign_touches", "*.csv"),
        ):
            stale.extend(sorted((root / folder).glob(pattern)))
        if stale:
            logger.info("removing %d files of a previous run below %s", len(stale), root)
        for path in stale:
            path.unlink()

    def run(self) -> dict[str, Any]:
        self.clear_old_files()
        self.build_catalogue()
        self.build_people()
        self.build_tastes()
        self.build_customers()
        self.build_campaigns()
        self.run_days()
        self.build_orders()
        self.write_customers()
        self.write_products()
        self.write_orders()
        self.write_order_lines()
        self.write_touches()
        return self.manifest()

    def manifest(self) -> dict[str, Any]:
        t = self.event_totals
        self.records["bronze.events"] = t["events"]
        quarantined = {k: sum(v.values()) for k, v in self.quarantine.items()}
        tables = (
            "bronze.customers",
            "bronze.products",
            "bronze.events",
            "bronze.orders",
            "bronze.order_lines",
            "bronze.campaign_touches",
        )
        seg_map = {
            s.name: sorted(self.customer_ids[i] for i in np.flatnonzero(self.seg == k).tolist())
            for k, s in enumerate(self.segments)
        }
        churners = []
        for i in self.churners.tolist():
            stop = int(self.stop_day[i])
            before = sum(1 for o_s, _ in self.order_ids_by_user.get(i, []) if o_s < stop * DAY_S)
            churners.append(
                {
                    "customer_id": self.customer_ids[i],
                    "stop_date": (self.start + timedelta(days=stop)).isoformat(),
                    "orders_before": before,
                }
            )
        churners.sort(key=lambda c: c["customer_id"])
        pairs = [
            {
                "product_ids": [self.product_ids[a], self.product_ids[b]],
                "names": [self.product_names[a], self.product_names[b]],
            }
            for a, b in self.pairs
        ]
        n_orders = len(self.orders)
        end_date = self.start + timedelta(days=self.days)
        manifest: dict[str, Any] = {
            "generator": "jobs.generate",
            "format_version": 1,
            "params": {
                "users": self.P,
                "days": self.days,
                "seed": self.seed,
                "start_date": self.start.isoformat(),
                "attrition": self.attrition,
                "segment_style": self.segment_style,
                # Only when asked for, so the default manifest stays byte-identical to older ones.
                **({"products": self.products} if self.products is not None else {}),
                **({"duplicates": self.duplicates} if self.duplicates != "same_phone" else {}),
            },
            "window": {"start": self.start.isoformat(), "end_exclusive": end_date.isoformat(), "time_zone": TIME_ZONE},
            "files": sorted(self.sink.files, key=lambda f: f["path"]),
            "records_expected": {k: self.records[k] for k in tables},
            "quarantine_expected": {k: self.quarantine[k] for k in tables},
            "valid_records_expected": {k: self.records[k] - quarantined[k] for k in tables},
            "blank_lines": {k: sum(f["blank_lines"] for f in self.sink.files if f["table"] == k) for k in tables},
            "silver_expected": {
                "events": t["events"] - quarantined["bronze.events"] - t["exact"] - t["near"],
                "customers": len(self.customer_rows),
                "persons": self.P,
                "products": self.n_products,
                "orders": n_orders,
                "order_lines": len(self.line_rows),
                "campaign_touches": self.n_touches,
            },
            "duplicates": {
                "exact_duplicate_events": t["exact"],
                "near_duplicate_events": t["near"],
                "near_duplicate_delay_ms": list(NEAR_DUP_DELAY_MS),
                "min_gap_between_genuine_same_content_ms": MIN_SAME_CONTENT_GAP_MS,
            },
            "customer_duplicates": self.dup_pairs,
            # Only for duplicates="varied": what differs in each pair (same order as the pairs).
            **({"customer_duplicate_variations": self.dup_kinds} if self.duplicates == "varied" else {}),
            "segments": seg_map,
            "co_purchased_pairs": pairs,
            "tastes": {
                "clusters": TASTE_CLUSTERS,
                "share_of_draws": TASTE_SHARE,
                "second_cluster_share_of_taste_draws": TASTE_SECOND_SHARE,
                "popularity_exponent": TASTE_POP_EXPONENT,
                "brand_cluster": {b: self.brand_taste[b] for b in sorted(self.brand_taste)},
                "product_cluster": {self.product_ids[i]: int(k) for i, k in enumerate(self.p_taste.tolist())},
                "person_clusters": {
                    self.customer_ids[i]: [int(k) for k in row if k >= 0] for i, row in enumerate(self.taste.tolist())
                },
            },
            "churners": churners,
            "campaigns": self.campaign_truth,
            "orders": {
                "status_latest": self.status_counts,
                "versions": len(self.order_rows),
                "status_changes": self.status_counts["refunded"],
            },
            "special_rows": {"bronze.products": self.special_products},
            "city_tiers": {c[1]: c[2] for c in CITIES},
            "notes": NOTES if self.duplicates == "same_phone" else NOTES | VARIED_NOTES,
        }
        return manifest


# How to read the planted truth; written into the manifest for the jobs and tests that use it.
NOTES = {
    "time": "CSV timestamps are Asia/Shanghai wall-clock time; event ts is epoch milliseconds (UTC). "
    "Event files hold the events of their Asia/Shanghai date, sorted by ts apart from planted copies.",
    "malformed": "Each malformed record is an extra corrupted copy of a record that is also delivered intact, "
    "with exactly one defect; quarantining it loses nothing.",
    "exact_duplicates": "The same event line (same event_id) delivered again later in the same file.",
    "near_duplicates": "A legacy client's retry: a copy of an event without event_id (as is its original), same "
    "user, session, type, product, page and context, ts 1-3 s later. Genuine events with the "
    "same user (or session when anonymous), type and product/query are >= 30 s apart.",
    "orders": "One purchase event per order line at exactly the order time (ts == order_time). Refunded orders "
    "appear twice (paid, then refunded with a later updated_at); file position is random between the two.",
    "customer_duplicates": "[first, second] customer_id pairs: one person registered twice, same phone written "
    "differently; second registrations have no events or orders.",
    "segments": "Every person (first registration) in exactly one segment; churners are a subset of 'regular' "
    "unless params.attrition > 0 (then any segment's customers may lapse).",
    "churners": "No event and no order on or after stop_date (shop-local date).",
    "tastes": "Latent taste clusters below category level: each brand (so each product) is in one cluster, each "
    "person (first registration) likes one or two. share_of_draws of a person's product draws (views, carts, "
    "basket lines) come from their clusters (the first, or the second for second_cluster_share_of_taste_draws of "
    "them), weighted by popularity ** popularity_exponent within the cluster; the rest follow the favourite "
    "top-level categories and catalogue popularity. Visible to collaborative filtering, not to popularity.",
    "campaigns": "converted is drawn at the variant's true rate; every converted touch has an order by that user "
    "within 3 days (+ session length) of sent_at. Control rows are a holdout: not sent, cost 0.",
}

VARIED_NOTES = {
    "customer_duplicates": "[first, second] customer_id pairs: one person registered twice (params.duplicates "
    "'varied'); the second registration varies by the kinds in customer_duplicate_variations (the same order): "
    "name_typo (a same-sounding character), name_transposed (the given name's two characters), name_pinyin "
    "and name_pinyin_swapped (the name in Latin letters, surname first or last), phone_format (+86, spaces, "
    "dashes), email_case, email_dots (a dot added or left out), birth_day_month_swapped, phone_different and "
    "email_different (new, nobody else's), and name, phone, e-mail, resident ID, birth date or address missing; "
    "fields not listed are as in the first. Gender and city are always the same. Second registrations have no "
    "events or orders.",
}

# Given-name characters read the same (the pinyin input method offers them side by side).
_HOMOPHONES: dict[str, tuple[str, ...]] = {}
for _char, _sound in GIVEN_MALE + GIVEN_FEMALE:
    _same = tuple(sorted({c for c, p in GIVEN_MALE + GIVEN_FEMALE if p == _sound}))
    _HOMOPHONES[_char] = _same

_DAY_CDF = _cdf(DAY_HOURS)
_NIGHT_CDF = _cdf(NIGHT_HOURS)
# segment_style="distinct": night owls' sessions start between 22:00 and 03:59 but for a trickle.
_DISTINCT_NIGHT_CDF = _cdf(NIGHT_HOURS[:4] + (0.3,) * 18 + NIGHT_HOURS[22:])
_PAY_CDF = _cdf(PAYMENT_WEIGHTS)


def default_products(users: int) -> int:
    """The catalogue size when none is given: one product per ten people, at least 200."""
    return max(200, users // 10)


def generate(
    out_dir: str | Path,
    users: int,
    days: int,
    seed: int,
    start_date: date,
    attrition: float = 0.0,
    segment_style: str = "overlapping",
    products: int | None = None,
    duplicates: str = "same_phone",
) -> dict:
    """Generate the sample shop's landing files under ``<out_dir>/shop`` and its manifest.

    Args:
        out_dir: Landing root; files go below ``<out_dir>/shop`` as ``conf/sources/shop.yaml`` declares.
            Files a previous run left in those folders are removed first.
        users: Number of distinct people (customers.csv holds a few more rows: second registrations).
        days: Length of the simulated window in days, starting at ``start_date`` 00:00 shop time.
        seed: Seed of every random choice; equal arguments give byte-identical files.
        start_date: First day of the window.
        attrition: Multiplier of :data:`LAPSE_PER_DAY`: 0 (the default) plants only the
            regular buyers' churners; 1.0 lets every customer leave for good at their
            segment's daily hazard (the churn job's test shop).
        segment_style: ``"overlapping"`` (the default) or ``"distinct"``: the planted
            segments drawn apart (:data:`DISTINCT_SEGMENTS`), the segmentation tests' shop.
        products: Catalogue size (at least :data:`MIN_PRODUCTS`); ``None`` (the default) gives
            :func:`default_products` and the same files as before the parameter existed. Shoppers
            draw from a long-tailed popularity, so in a large catalogue many products are never touched.
        duplicates: ``"same_phone"`` (the default): about 1% of people register twice with the same
            phone number written differently, so exact keys link every pair. ``"varied"``: 3% do, with
            typos, pinyin names, reformatted, missing or new phones and e-mails, swapped day and month
            and missing fields (:data:`DUPLICATE_VARIATIONS`; the kinds of each pair in the manifest's
            ``customer_duplicate_variations``), for probabilistic identity resolution.

    Returns:
        The manifest (also written to ``<out_dir>/shop/_manifest.json``).

    Raises:
        ValueError: when ``users`` or ``days`` is not positive, ``attrition`` is out of range
            or ``segment_style`` or ``duplicates`` is unknown, or ``products`` is below :data:`MIN_PRODUCTS`.
    """
    out = Path(out_dir)
    gen = _ShopGenerator(
        out,
        int(users),
        int(days),
        int(seed),
        start_date,
        float(attrition),
        segment_style,
        None if products is None else int(products),
        duplicates,
    )
    manifest = gen.run()
    path = out / SOURCE_FOLDER / MANIFEST_NAME
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    logger.info(
        "generated %d users x %d days (seed %d) into %s: %d event records, %d orders",
        users,
        days,
        seed,
        out / SOURCE_FOLDER,
        manifest["records_expected"]["bronze.events"],
        manifest["silver_expected"]["orders"],
    )
    return manifest
