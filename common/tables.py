"""The table registry: every table's name, layer, schema, keys and partitioning,
declared once and used by writers, readers, tests and docs.

Bronze tables hold source records typed to these schemas plus ingest metadata
(:data:`INGEST_META`); raw personal data lives only there. Silver and gold hold
pseudonymous keys only (``user_key``), never names, phones, e-mails, ID numbers,
street addresses or full IPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import types as T

from common.errors import SchemaMismatch

LAYERS = ("bronze", "silver", "gold", "ops")

MONEY = T.DecimalType(18, 2)


def _fields(*specs: tuple[str, T.DataType] | tuple[str, T.DataType, bool]) -> list[T.StructField]:
    out = []
    for spec in specs:
        name, dtype, *nullable = spec
        out.append(T.StructField(name, dtype, nullable[0] if nullable else True))
    return out


# Provenance carried by every bronze row: where it came from and which run put it there.
# `_file_sha256` makes ingest idempotent per file content (re-runs replace, never duplicate).
INGEST_META = _fields(
    ("_source", T.StringType(), False),
    ("_source_file", T.StringType(), False),
    ("_source_line", T.LongType(), False),
    ("_file_sha256", T.StringType(), False),
    ("_ingest_run_id", T.StringType(), False),
    ("_ingested_at", T.TimestampType(), False),
)
INGEST_META_NAMES = tuple(f.name for f in INGEST_META)


@dataclass(frozen=True)
class TableSpec:
    """A table's declaration.

    Attributes:
        name: ``<layer>.<table>``, e.g. ``bronze.events``.
        schema: the exact columns and types written.
        keys: columns that identify a row (unique in silver/gold; merge keys).
        partition_by: Delta partition columns.
        pii: True when the table holds raw personal data (bronze only).
        description: one line for docs and ``shoplake tables``.
        written_by: the one job that writes it (``shoplake.registry`` derives the pipeline
            order from this and each job's declared reads); empty for ``ops.run_log``,
            which every job appends to.
    """

    name: str
    schema: T.StructType
    keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    pii: bool = False
    description: str = ""
    written_by: str = ""
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        layer = self.name.split(".", 1)[0]
        if layer not in LAYERS or "." not in self.name:
            raise ValueError(f"table name {self.name!r} must be <layer>.<table> with layer in {LAYERS}")
        if self.pii and layer != "bronze":
            raise ValueError(f"{self.name}: raw personal data may live only in bronze")
        cols = tuple(self.schema.fieldNames())
        missing = [c for c in (*self.keys, *self.partition_by) if c not in cols]
        if missing:
            raise ValueError(f"{self.name}: keys/partitions {missing} are not columns ({list(cols)})")
        object.__setattr__(self, "columns", cols)

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def change_data_feed(self) -> bool:
        """Silver tables record their row-level changes (Delta's Change Data Feed, on
        delta-spark), so consumers read what changed since a version, not everything."""
        return self.layer == "silver"

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    def relative_path(self) -> str:
        """Path of the table below the lake root: ``<layer>/<table>``."""
        return f"{self.layer}/{self.short_name}"

    def check_columns(self, found: list[str] | tuple[str, ...]) -> None:
        """Raise :class:`SchemaMismatch` listing what is missing and what is extra."""
        missing = [c for c in self.columns if c not in found]
        extra = [c for c in found if c not in self.columns]
        if missing or extra:
            raise SchemaMismatch(
                f"{self.name}: columns do not match the declared schema; "
                f"missing {missing}, unexpected {extra}, expected {list(self.columns)}"
            )


def bronze(name: str, description: str, *cols, keys=(), pii=False) -> TableSpec:
    schema = T.StructType(_fields(("source_system", T.StringType(), False), *cols) + INGEST_META)
    return TableSpec(f"bronze.{name}", schema, keys=keys, pii=pii, description=description, written_by="ingest")


# ---------------------------------------------------------------------------- bronze
BRONZE_CUSTOMERS = bronze(
    "customers",
    "Customer records as registered, raw personal data intact (restricted zone).",
    ("customer_id", T.StringType(), False),
    ("name", T.StringType()),
    ("phone", T.StringType()),
    ("email", T.StringType()),
    ("id_number", T.StringType()),
    ("gender", T.StringType()),
    ("birth_date", T.DateType()),
    ("province", T.StringType()),
    ("city", T.StringType()),
    ("address", T.StringType()),
    ("country", T.StringType()),
    ("registered_at", T.TimestampType()),
    ("member_level", T.StringType()),
    ("marketing_consent", T.BooleanType()),
    ("updated_at", T.TimestampType()),
    keys=("source_system", "customer_id"),
    pii=True,
)

BRONZE_PRODUCTS = bronze(
    "products",
    "Product catalogue records.",
    ("product_id", T.StringType(), False),
    ("product_name", T.StringType()),
    ("category_l1", T.StringType()),
    ("category_l2", T.StringType()),
    ("category_l3", T.StringType()),
    ("brand", T.StringType()),
    ("price", MONEY),
    ("updated_at", T.TimestampType()),
    keys=("source_system", "product_id"),
)

BRONZE_EVENTS = bronze(
    "events",
    "Clickstream events (view, search, add_to_cart, ...), IPs intact.",
    ("event_id", T.StringType()),
    ("user_id", T.StringType()),
    ("session_id", T.StringType()),
    ("event_type", T.StringType(), False),
    ("event_time", T.TimestampType(), False),
    ("product_id", T.StringType()),
    ("search_query", T.StringType()),
    ("channel", T.StringType()),
    ("device", T.StringType()),
    ("ip", T.StringType()),
    ("page", T.StringType()),
    keys=("source_system", "event_id"),
    pii=True,
)

BRONZE_ORDERS = bronze(
    "orders",
    "Order headers; one row per delivered version of an order.",
    ("order_id", T.StringType(), False),
    ("user_id", T.StringType()),
    ("order_time", T.TimestampType()),  # basket files carry no time
    ("status", T.StringType()),
    ("payment_method", T.StringType()),
    ("channel", T.StringType()),
    ("coupon_code", T.StringType()),
    ("discount_amount", MONEY),
    ("total_amount", MONEY),
    ("currency", T.StringType()),
    ("updated_at", T.TimestampType()),
    keys=("source_system", "order_id"),
)

BRONZE_ORDER_LINES = bronze(
    "order_lines",
    "Order lines: product, quantity and price per order.",
    ("order_id", T.StringType(), False),
    ("line_no", T.IntegerType(), False),
    ("product_id", T.StringType(), False),
    ("quantity", T.IntegerType()),
    ("unit_price", MONEY),
    ("line_amount", MONEY),
    ("updated_at", T.TimestampType()),
    keys=("source_system", "order_id", "line_no"),
)

BRONZE_CAMPAIGN_TOUCHES = bronze(
    "campaign_touches",
    "Campaign sends with their outcome flags and cost.",
    ("touch_id", T.StringType(), False),
    ("campaign_id", T.StringType(), False),
    ("user_id", T.StringType(), False),
    ("channel", T.StringType()),
    ("variant", T.StringType()),
    ("sent_at", T.TimestampType(), False),
    ("opened", T.BooleanType()),
    ("clicked", T.BooleanType()),
    ("converted", T.BooleanType()),
    ("cost", T.DecimalType(18, 4)),
    keys=("source_system", "touch_id"),
)

BRONZE_QUARANTINE = TableSpec(
    "bronze.quarantine",
    T.StructType(
        _fields(
            ("source_system", T.StringType(), False),
            ("target_table", T.StringType(), False),
            ("reason", T.StringType(), False),
            ("detail", T.StringType(), False),
            ("raw", T.StringType()),
        )
        + INGEST_META
    ),
    keys=("_file_sha256", "_source_line"),
    pii=True,
    description="Records that could not be parsed or typed: raw text, file, line and reason.",
    written_by="ingest",
)

BRONZE_INGESTED_FILES = TableSpec(
    "bronze.ingested_files",
    T.StructType(
        _fields(
            ("source_system", T.StringType(), False),
            ("feed", T.StringType(), False),
            ("path", T.StringType(), False),
            ("file_sha256", T.StringType(), False),
            ("size_bytes", T.LongType(), False),
            ("records", T.LongType(), False),
            ("loaded", T.LongType(), False),
            ("quarantined", T.LongType(), False),
            ("ingest_run_id", T.StringType(), False),
            ("ingested_at", T.TimestampType(), False),
        )
    ),
    keys=("file_sha256",),
    description="One row per landing file ingested (content hash), so re-runs and re-deliveries add nothing.",
    written_by="ingest",
)

# ---------------------------------------------------------------------------- silver
# Every silver row names its source system: ids are unique within a source, and
# keys include it. `dq_flags` lists soft data-quality findings (values out of
# bounds, unknown items) that are kept, not dropped.
DQ_FLAGS = ("dq_flags", T.ArrayType(T.StringType()))


def silver(name: str, description: str, *cols, keys=(), partition_by=()) -> TableSpec:
    schema = T.StructType(_fields(("source_system", T.StringType(), False), *cols))
    return TableSpec(
        f"silver.{name}", schema, keys=keys, partition_by=partition_by, description=description, written_by="clean"
    )


SILVER_CUSTOMERS = TableSpec(
    "silver.customers",
    T.StructType(
        _fields(
            ("user_key", T.StringType(), False),
            ("source_records", T.IntegerType(), False),
            ("gender", T.StringType()),
            ("birth_year", T.IntegerType()),
            ("age_band", T.StringType()),
            ("province", T.StringType()),
            ("city", T.StringType()),
            ("country", T.StringType()),
            ("email_domain", T.StringType()),
            ("phone_masked", T.StringType()),
            ("registered_at", T.TimestampType()),
            ("member_level", T.StringType()),
            ("marketing_consent", T.BooleanType(), False),
            ("updated_at", T.TimestampType()),
        )
    ),
    keys=("user_key",),
    description="One row per person (registrations merged), pseudonymised; only derived or generalised attributes.",
    written_by="clean",
)

SILVER_USER_KEY_MAP = TableSpec(
    "silver.user_key_map",
    T.StructType(
        _fields(
            ("source_key", T.StringType(), False),
            ("user_key", T.StringType(), False),
        )
    ),
    keys=("source_key",),
    description="Keyed hash of every source customer id -> the surviving user_key of its person.",
    written_by="clean",
)

SILVER_PRODUCTS = silver(
    "products",
    "One row per product, latest version.",
    ("item_id", T.StringType(), False),
    ("product_name", T.StringType()),
    ("category_l1", T.StringType()),
    ("category_l2", T.StringType()),
    ("category_l3", T.StringType()),
    ("brand", T.StringType()),
    ("price", MONEY),
    ("updated_at", T.TimestampType()),
    DQ_FLAGS,
    keys=("source_system", "item_id"),
)

SILVER_EVENTS = silver(
    "events",
    "One row per real event: duplicates removed, UTC, pseudonymous user, IP truncated.",
    ("event_id", T.StringType(), False),
    ("user_key", T.StringType()),
    ("session_id", T.StringType()),
    ("event_type", T.StringType(), False),
    ("event_time", T.TimestampType(), False),
    ("event_date", T.DateType(), False),
    ("item_id", T.StringType()),
    ("search_query", T.StringType()),
    ("channel", T.StringType()),
    ("device", T.StringType()),
    ("ip_prefix", T.StringType()),
    ("page", T.StringType()),
    DQ_FLAGS,
    keys=("source_system", "event_id"),
    partition_by=("event_date",),
)

SILVER_ORDERS = silver(
    "orders",
    "One row per order, latest version wins (paid -> refunded applied).",
    ("order_id", T.StringType(), False),
    ("user_key", T.StringType()),
    ("order_time", T.TimestampType()),
    ("status", T.StringType()),
    ("payment_method", T.StringType()),
    ("channel", T.StringType()),
    ("coupon_code", T.StringType()),
    ("discount_amount", MONEY),
    ("total_amount", MONEY),
    ("currency", T.StringType()),
    ("updated_at", T.TimestampType()),
    DQ_FLAGS,
    keys=("source_system", "order_id"),
)

SILVER_ORDER_LINES = silver(
    "order_lines",
    "One row per order line, latest version.",
    ("order_id", T.StringType(), False),
    ("line_no", T.IntegerType(), False),
    ("item_id", T.StringType(), False),
    ("quantity", T.IntegerType()),
    ("unit_price", MONEY),
    ("line_amount", MONEY),
    DQ_FLAGS,
    keys=("source_system", "order_id", "line_no"),
)

SILVER_CAMPAIGN_TOUCHES = silver(
    "campaign_touches",
    "One row per campaign touch.",
    ("touch_id", T.StringType(), False),
    ("campaign_id", T.StringType(), False),
    ("user_key", T.StringType()),
    ("channel", T.StringType()),
    ("variant", T.StringType()),
    ("sent_at", T.TimestampType(), False),
    ("opened", T.BooleanType()),
    ("clicked", T.BooleanType()),
    ("converted", T.BooleanType()),
    ("cost", T.DecimalType(18, 4)),
    keys=("source_system", "touch_id"),
)

SILVER_REJECTED = TableSpec(
    "silver.rejected",
    T.StructType(
        _fields(
            ("table_name", T.StringType(), False),
            ("failed_expectation", T.StringType(), False),
            ("record", T.StringType(), False),
        )
    ),
    description="Rows the current silver build's row-level expectations removed (pseudonymised record as JSON).",
    written_by="clean",
)

# ---------------------------------------------------------------------------- gold
# Every gold table is computed as of an explicit date (common.asof) and keeps one
# partition per date, so an old date can be rebuilt and compared. The columns
# below the "contract" comment of each table are what other jobs rely on.


def gold(name: str, description: str, *cols, written_by: str, keys=(), partition_by=("as_of",)) -> TableSpec:
    schema = T.StructType(_fields(*cols))
    return TableSpec(
        f"gold.{name}", schema, keys=keys, partition_by=partition_by, description=description, written_by=written_by
    )


# Top interests: (name, weight) pairs, weights the share of the customer's interest.
INTEREST_LIST = T.ArrayType(
    T.StructType([T.StructField("name", T.StringType()), T.StructField("weight", T.DoubleType())])
)

GOLD_PROFILES = gold(
    "profiles",
    "One row per customer and as-of date: attributes, RFM, behaviour, interests, lifecycle stage, tags.",
    # contract
    ("user_key", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("marketing_consent", T.BooleanType(), False),
    ("recency_days", T.IntegerType()),
    ("frequency", T.LongType(), False),
    ("monetary", MONEY),
    ("r_score", T.IntegerType()),
    ("f_score", T.IntegerType()),
    ("m_score", T.IntegerType()),
    ("rfm_segment", T.StringType()),
    ("lifecycle_stage", T.StringType(), False),
    ("tags", T.ArrayType(T.StringType()), False),
    # profile job (jobs/profiles/): attributes
    ("age_band", T.StringType()),
    ("gender", T.StringType()),
    ("province", T.StringType()),
    ("city", T.StringType()),
    ("city_tier", T.IntegerType()),
    ("registration_days", T.IntegerType()),
    ("member_level", T.StringType()),
    # RFM detail (amounts net of refunds)
    ("first_purchase_days", T.IntegerType()),
    ("avg_order_value", MONEY),
    ("mean_interpurchase_days", T.DoubleType()),
    ("refunded_orders", T.LongType(), False),
    ("refund_amount", MONEY, False),
    # behaviour
    ("last_active_days", T.IntegerType()),
    ("sessions", T.LongType(), False),
    ("views", T.LongType(), False),
    ("searches", T.LongType(), False),
    ("add_to_carts", T.LongType(), False),
    ("cart_abandonment_rate", T.DoubleType()),
    ("view_to_purchase_rate", T.DoubleType()),
    ("preferred_hour", T.IntegerType()),
    ("preferred_weekday", T.IntegerType()),
    ("night_share", T.DoubleType()),
    ("preferred_channel", T.StringType()),
    ("preferred_payment_method", T.StringType()),
    ("discount_order_share", T.DoubleType()),
    # interests
    ("top_categories", INTEREST_LIST),
    ("top_brands", INTEREST_LIST),
    ("brand_loyalty_index", T.DoubleType()),
    keys=("user_key", "as_of"),
    written_by="profile",
)

GOLD_SEGMENTS = gold(
    "segments",
    "Each customer's k-means segment as of a date.",
    # contract
    ("user_key", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("segment_id", T.IntegerType(), False),
    ("segment_name", T.StringType(), False),
    # segment job (jobs/segment.py)
    ("model_version", T.StringType(), False),
    keys=("user_key", "as_of"),
    written_by="segment",
)

GOLD_SEGMENT_SUMMARY = gold(
    "segment_summary",
    "One row per k-means segment and as-of date: size, centroid, name, description and profile summaries.",
    ("as_of", T.DateType(), False),
    ("segment_id", T.IntegerType(), False),
    ("segment_name", T.StringType(), False),
    ("description", T.StringType(), False),
    ("customers", T.LongType(), False),
    ("share", T.DoubleType(), False),
    # centroid in standard deviations from the population mean, per feature
    ("centroid", T.MapType(T.StringType(), T.DoubleType()), False),
    ("avg_recency_days", T.DoubleType()),
    ("avg_frequency", T.DoubleType()),
    ("avg_monetary", T.DoubleType()),
    ("avg_order_value", T.DoubleType()),
    ("avg_views", T.DoubleType()),
    ("avg_discount_order_share", T.DoubleType()),
    ("avg_night_share", T.DoubleType()),
    ("top_lifecycle_stage", T.StringType()),
    ("top_rfm_segment", T.StringType()),
    ("k", T.IntegerType(), False),
    ("silhouette", T.DoubleType(), False),
    ("model_version", T.StringType(), False),
    keys=("as_of", "segment_id"),
    written_by="segment",
)

GOLD_CHURN_SCORES = gold(
    "churn_scores",
    "Churn probability (calibrated) and risk tier per customer as of a date.",
    # contract
    ("user_key", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("probability", T.DoubleType(), False),
    ("risk_tier", T.StringType(), False),
    ("model_version", T.StringType(), False),
    # added by the churn job
    ("top_features", T.ArrayType(T.StringType()), False),
    ("raw_score", T.DoubleType(), False),
    keys=("user_key", "as_of"),
    written_by="churn",
)

GOLD_CLV = gold(
    "clv",
    "Expected customer lifetime value over a horizon, per customer as of a date.",
    # contract
    ("user_key", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("clv", T.DoubleType(), False),
    # added by the churn job: clv = discounted_transactions x expected_spend x margin
    # (BG/NBD and Gamma-Gamma fitted up to as_of, common.btyd.with_clv), and their inputs
    ("p_alive", T.DoubleType(), False),
    ("expected_transactions", T.DoubleType(), False),  # BG/NBD, over the horizon, undiscounted
    ("discounted_transactions", T.DoubleType(), False),
    ("expected_spend", T.DoubleType(), False),  # Gamma-Gamma, per purchase day
    ("margin", T.DoubleType(), False),
    ("repeat_purchases", T.DoubleType(), False),  # x: purchase days after the first
    ("recency_weeks", T.DoubleType(), False),  # t_x: first to last purchase day
    ("age_weeks", T.DoubleType(), False),  # T: first purchase day to as_of
    ("mean_repeat_spend", T.DoubleType(), False),
    ("churn_probability", T.DoubleType(), False),
    ("model_version", T.StringType(), False),
    keys=("user_key", "as_of"),
    written_by="churn",
)

GOLD_RECOMMENDATIONS = gold(
    "recommendations",
    "Top-N items per customer: ALS where it knows the customer, a popularity fallback elsewhere.",
    # contract
    ("user_key", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("rank", T.IntegerType(), False),
    ("item_id", T.StringType(), False),
    ("score", T.DoubleType(), False),
    ("reason", T.StringType(), False),
    keys=("user_key", "as_of", "rank"),
    written_by="recommend",
)

# Owned by the recommend job (jobs/recommend/).
GOLD_SIMILAR_ITEMS = gold(
    "similar_items",
    "Item-to-item neighbours: exact top-k cosine of ALS item factors (positive); for items ALS has not seen, content"
    " neighbours (reason content), else category popularity (reason fallback).",
    ("item_id", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("rank", T.IntegerType(), False),
    ("similar_item_id", T.StringType(), False),
    ("similarity", T.DoubleType(), False),
    ("reason", T.StringType(), False),
    keys=("item_id", "as_of", "rank"),
    written_by="recommend",
)

# Owned by the basket job (jobs/basket.py).
GOLD_ASSOCIATION_RULES = gold(
    "association_rules",
    "FP-growth association rules (single-item consequents, as arules mines them) with their measures.",
    ("rule_id", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("antecedent", T.ArrayType(T.StringType()), False),
    ("consequent", T.ArrayType(T.StringType()), False),
    ("rule_items", T.IntegerType(), False),
    ("basket_count", T.LongType(), False),
    ("support", T.DoubleType(), False),
    ("confidence", T.DoubleType(), False),
    ("lift", T.DoubleType(), False),
    ("leverage", T.DoubleType(), False),
    ("conviction", T.DoubleType()),  # null when confidence is 1 (infinite conviction)
    keys=("rule_id", "as_of"),
    written_by="basket",
)

GOLD_CROSS_SELL = gold(
    "cross_sell",
    "For each item, the best items to suggest with it (single-item rules ranked by lift, then confidence).",
    ("item_id", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("rank", T.IntegerType(), False),
    ("suggested_item_id", T.StringType(), False),
    ("support", T.DoubleType(), False),
    ("confidence", T.DoubleType(), False),
    ("lift", T.DoubleType(), False),
    keys=("item_id", "as_of", "rank"),
    written_by="basket",
)

GOLD_BUNDLES = gold(
    "bundles",
    "Bundle candidates: frequent itemsets of 2-3 items ranked by lift, then by the revenue of baskets holding them.",
    ("bundle_id", T.StringType(), False),
    ("as_of", T.DateType(), False),
    ("rank", T.IntegerType(), False),
    ("items", T.ArrayType(T.StringType()), False),
    ("size", T.IntegerType(), False),
    ("basket_count", T.LongType(), False),
    ("support", T.DoubleType(), False),
    ("lift", T.DoubleType(), False),
    ("revenue", T.DoubleType(), False),
    keys=("bundle_id", "as_of"),
    written_by="basket",
)

# Campaign (jobs/campaign/): audiences with their hold-out groups, the export
# marketing tools receive, KPIs and A/B results.
GOLD_AUDIENCES = gold(
    "audiences",
    "Campaign audiences as of a date: who, which group (treatment or hold-out control), and why.",
    ("as_of", T.DateType(), False),
    ("campaign_id", T.StringType(), False),
    ("user_key", T.StringType(), False),
    ("campaign_name", T.StringType(), False),
    ("playbook", T.StringType(), False),
    ("channel", T.StringType(), False),
    ("offer", T.StringType()),
    ("priority", T.IntegerType(), False),
    ("assignment", T.StringType(), False),  # treatment | control (held out)
    ("lifecycle_stage", T.StringType()),
    ("segment_name", T.StringType()),
    ("risk_tier", T.StringType()),
    ("churn_probability", T.DoubleType()),
    ("clv", T.DoubleType()),
    ("recommended_items", T.ArrayType(T.StringType()), False),
    ("abandoned_items", T.ArrayType(T.StringType()), False),
    keys=("as_of", "campaign_id", "user_key"),
    written_by="campaign",
)

GOLD_AUDIENCE_EXPORT = gold(
    "audience_export",
    "What marketing tools receive: treatment recipients by pseudonymous key, campaign attributes, "
    "person attributes withheld below k-anonymity.",
    ("as_of", T.DateType(), False),
    ("campaign_id", T.StringType(), False),
    ("user_key", T.StringType(), False),
    ("channel", T.StringType(), False),
    ("offer", T.StringType()),
    ("lifecycle_stage", T.StringType()),
    ("segment_name", T.StringType()),
    ("risk_tier", T.StringType()),
    ("recommended_items", T.ArrayType(T.StringType()), False),
    ("abandoned_items", T.ArrayType(T.StringType()), False),
    keys=("as_of", "campaign_id", "user_key"),
    written_by="campaign",
)

GOLD_CAMPAIGN_KPIS = gold(
    "campaign_kpis",
    "Campaign outcomes by campaign and by channel, segment and variant: sends, opens, clicks, "
    "conversions, attributed revenue, cost, rates, ROI, ROAS, CAC, repeat purchases.",
    ("as_of", T.DateType(), False),
    ("campaign_id", T.StringType(), False),  # "ALL" for the cross-campaign channel rows
    ("dimension", T.StringType(), False),  # campaign | channel | segment | variant
    ("dimension_value", T.StringType(), False),
    ("recipients", T.LongType(), False),  # touches including hold-out rows
    ("sends", T.LongType(), False),  # messages actually sent (hold-out excluded)
    ("opens", T.LongType(), False),
    ("clicks", T.LongType(), False),
    ("conversions", T.LongType(), False),
    ("attributed_orders", T.LongType(), False),
    ("converting_customers", T.LongType(), False),
    ("revenue", T.DoubleType(), False),
    ("cost", T.DoubleType(), False),
    ("open_rate", T.DoubleType()),
    ("ctr", T.DoubleType()),
    ("cvr", T.DoubleType()),
    ("revenue_per_recipient", T.DoubleType()),
    ("roi", T.DoubleType()),
    ("roas", T.DoubleType()),
    ("cac", T.DoubleType()),
    ("repeat_purchase_rate", T.DoubleType()),
    keys=("as_of", "campaign_id", "dimension", "dimension_value"),
    written_by="campaign",
)

GOLD_AB_RESULTS = gold(
    "ab_results",
    "A/B and hold-out tests per campaign: effect, interval, p-value, uplift, MDE, power warning.",
    ("as_of", T.DateType(), False),
    ("campaign_id", T.StringType(), False),
    ("metric", T.StringType(), False),  # conversion_rate | revenue_per_recipient
    ("treatment", T.StringType(), False),
    ("reference", T.StringType(), False),
    ("test", T.StringType(), False),
    ("n_treatment", T.LongType(), False),
    ("n_reference", T.LongType(), False),
    ("value_treatment", T.DoubleType(), False),
    ("value_reference", T.DoubleType(), False),
    ("diff", T.DoubleType(), False),
    ("ci_low", T.DoubleType()),
    ("ci_high", T.DoubleType()),
    ("p_value", T.DoubleType()),
    ("significant", T.BooleanType(), False),
    ("relative_uplift", T.DoubleType()),
    ("uplift_ci_low", T.DoubleType()),
    ("uplift_ci_high", T.DoubleType()),
    ("bootstrap_ci_low", T.DoubleType()),
    ("bootstrap_ci_high", T.DoubleType()),
    ("mde", T.DoubleType()),
    ("power", T.DoubleType()),
    ("underpowered", T.BooleanType(), False),
    ("warning", T.StringType()),
    keys=("as_of", "campaign_id", "metric", "treatment", "reference"),
    written_by="campaign",
)

# ---------------------------------------------------------------------------- ops
OPS_RUN_LOG = TableSpec(
    "ops.run_log",
    T.StructType(
        _fields(
            ("run_id", T.StringType(), False),
            ("job", T.StringType(), False),
            ("env", T.StringType(), False),
            ("status", T.StringType(), False),
            ("started_at", T.TimestampType(), False),
            ("finished_at", T.TimestampType(), False),
            ("duration_s", T.DoubleType(), False),
            ("parameters", T.StringType(), False),
            ("input_versions", T.MapType(T.StringType(), T.LongType())),
            ("output_versions", T.MapType(T.StringType(), T.LongType())),
            ("row_counts", T.MapType(T.StringType(), T.LongType())),
            ("metrics", T.StringType()),
            ("error", T.StringType()),
        )
    ),
    keys=("run_id", "job"),
    description="One row per job run: parameters, table versions read and written, counts, status.",
)

OPS_STREAM_PROGRESS = TableSpec(
    "ops.stream_progress",
    T.StructType(
        _fields(
            ("run_id", T.StringType(), False),
            ("query", T.StringType(), False),
            ("batch_id", T.LongType(), False),
            ("started_at", T.TimestampType(), False),
            ("input_rows", T.LongType(), False),
            ("input_rows_per_second", T.DoubleType()),
            ("processed_rows_per_second", T.DoubleType()),
            ("batch_duration_ms", T.LongType(), False),
            ("watermark", T.TimestampType()),
            ("state_rows", T.LongType(), False),
            ("late_rows", T.LongType()),
        )
    ),
    keys=("run_id", "query", "batch_id"),
    description="One row per micro-batch of `shoplake stream`: rows read (files, for a landing folder), "
    "rates, duration, event-time watermark, rows held in state and rows dropped as later than the "
    "watermark (Spark's query progress).",
    written_by="stream",
)

GOLD_LIVE_FUNNEL = gold(
    "live_funnel",
    "Per event minute and channel, from the stream's silver.events: sessions seen, views, add-to-carts, "
    "purchases and purchases per session; minutes the watermark can still change are rewritten by each "
    "silver micro-batch.",
    ("minute", T.TimestampType(), False),
    ("channel", T.StringType(), False),
    ("events", T.LongType(), False),
    ("sessions", T.LongType(), False),
    ("views", T.LongType(), False),
    ("add_to_carts", T.LongType(), False),
    ("orders", T.LongType(), False),
    ("conversion", T.DoubleType()),
    written_by="stream",
    keys=("minute", "channel"),
    partition_by=(),
)

GOLD_LIVE_TRENDING = gold(
    "live_trending",
    "The products most viewed and added to carts in the last stream.live.trending_minutes of event time "
    "(score = the recommender's event weights), best first; replaced by each silver micro-batch.",
    ("rank", T.IntegerType(), False),
    ("item_id", T.StringType(), False),
    ("views", T.LongType(), False),
    ("add_to_carts", T.LongType(), False),
    ("score", T.DoubleType(), False),
    ("window_start", T.TimestampType(), False),
    ("window_end", T.TimestampType(), False),
    written_by="stream",
    keys=("item_id",),
    partition_by=(),
)

GOLD_CART_ABANDONMENT_TRIGGERS = gold(
    "cart_abandonment_triggers",
    "One row per real-time cart-abandonment message to send: a consenting customer's add-to-cart whose item "
    "was not bought within stream.live.abandon_minutes, within campaign.frequency_cap (campaign touches "
    "and earlier triggers count); appended, never rewritten (a trigger is a message sent).",
    ("trigger_id", T.StringType(), False),
    ("user_key", T.StringType(), False),
    ("item_id", T.StringType(), False),
    ("added_at", T.TimestampType(), False),
    ("due_at", T.TimestampType(), False),
    ("channel", T.StringType()),
    written_by="stream",
    keys=("trigger_id",),
    partition_by=(),
)

ALL_TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        BRONZE_CUSTOMERS,
        BRONZE_PRODUCTS,
        BRONZE_EVENTS,
        BRONZE_ORDERS,
        BRONZE_ORDER_LINES,
        BRONZE_CAMPAIGN_TOUCHES,
        BRONZE_QUARANTINE,
        BRONZE_INGESTED_FILES,
        SILVER_CUSTOMERS,
        SILVER_USER_KEY_MAP,
        SILVER_PRODUCTS,
        SILVER_EVENTS,
        SILVER_ORDERS,
        SILVER_ORDER_LINES,
        SILVER_CAMPAIGN_TOUCHES,
        SILVER_REJECTED,
        GOLD_PROFILES,
        GOLD_SEGMENTS,
        GOLD_SEGMENT_SUMMARY,
        GOLD_CHURN_SCORES,
        GOLD_CLV,
        GOLD_RECOMMENDATIONS,
        GOLD_SIMILAR_ITEMS,
        GOLD_ASSOCIATION_RULES,
        GOLD_CROSS_SELL,
        GOLD_BUNDLES,
        GOLD_AUDIENCES,
        GOLD_AUDIENCE_EXPORT,
        GOLD_CAMPAIGN_KPIS,
        GOLD_AB_RESULTS,
        OPS_RUN_LOG,
        GOLD_LIVE_FUNNEL,
        GOLD_LIVE_TRENDING,
        GOLD_CART_ABANDONMENT_TRIGGERS,
        OPS_STREAM_PROGRESS,
    )
}

# Bronze tables a source mapping may load into.
BRONZE_DATA_TABLES = {
    spec.name: spec
    for spec in ALL_TABLES.values()
    if spec.layer == "bronze" and spec.name not in ("bronze.quarantine", "bronze.ingested_files")
}


def get_table(name: str) -> TableSpec:
    """Look a table up by ``<layer>.<table>``; the error lists the known names."""
    try:
        return ALL_TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(ALL_TABLES))}") from None
