"""The names and table columns every component agrees on (the project's shared contract).

Kept here as data so the tests can hold Terraform to it; the proto files are read directly.
"""

TOPICS = {"binance-trades", "binance-gaps", "binance-trades-dead-letter"}
SUBSCRIPTIONS = {"binance-trades-bq", "binance-gaps-bq"}
DATASETS = {"market", "dwh", "scd"}
ARTIFACT_REPOSITORY = "binance-pipeline"
IMAGES = {"producer", "consumer", "batch"}
BATCH_JOB = "binance-batch"
SYMBOLS = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"]

# Env var -> value each binary must get (values as the resources are named).
BINARY_ENV = {
    "TRADE_TOPIC": "binance-trades",
    "GAP_TOPIC": "binance-gaps",
    "TRADE_SUBSCRIPTION": "binance-trades-bq",
    "GAP_SUBSCRIPTION": "binance-gaps-bq",
    "DEAD_LETTER_TOPIC": "binance-trades-dead-letter",
    "BQ_MARKET_DATASET": "market",
    "BQ_DWH_DATASET": "dwh",
    "BQ_SCD_DATASET": "scd",
}
BINARY_ENV_PRESENT = {"GCP_PROJECT", "SYMBOLS", "BINANCE_WS_URL", "BINANCE_REST_URL", "METRICS_ADDR", "LOG_FORMAT"}
METRICS_PORT = {"producer": 9100, "consumer": 9101, "batch": 9102}

R, N, P = "REQUIRED", "NULLABLE", "REPEATED"

_SYMBOL_ATTRIBUTES = [
    ("symbol", "STRING", R),
    ("status", "STRING", R),
    ("base_asset", "STRING", R),
    ("quote_asset", "STRING", R),
    ("base_asset_precision", "INT64", R),
    ("quote_asset_precision", "INT64", R),
    ("tick_size", "NUMERIC", R),
    ("min_price", "NUMERIC", R),
    ("max_price", "NUMERIC", R),
    ("step_size", "NUMERIC", R),
    ("min_qty", "NUMERIC", R),
    ("max_qty", "NUMERIC", R),
    ("min_notional", "NUMERIC", R),
    ("max_notional", "NUMERIC", N),
    ("order_types", "STRING", P),
    ("permission_sets", "STRING", R),
    ("row_hash", "STRING", R),
]

# schema file -> (name, type, mode) in order.
COLUMNS = {
    "trades_raw.json": [
        ("symbol", "STRING", R),
        ("trade_id", "INT64", R),
        ("price", "NUMERIC", R),
        ("quantity", "NUMERIC", R),
        ("trade_time", "TIMESTAMP", R),
        ("event_time", "TIMESTAMP", R),
        ("receive_time", "TIMESTAMP", R),
        ("buyer_is_maker", "BOOL", R),
        ("source", "STRING", R),
    ],
    "gaps.json": [
        ("symbol", "STRING", R),
        ("from_id", "INT64", R),
        ("to_id", "INT64", R),
        ("reason", "STRING", R),
        ("detected_time", "TIMESTAMP", R),
        ("reporter", "STRING", R),
    ],
    "coverage.json": [
        ("symbol", "STRING", R),
        ("day", "DATE", R),
        ("first_id", "INT64", N),
        ("last_id", "INT64", N),
        ("trade_count", "INT64", R),
        ("source_mix", "STRING", N),
        ("status", "STRING", R),
        ("missing_ids", "INT64", N),
        ("checked_time", "TIMESTAMP", R),
    ],
    "klines.json": [
        ("symbol", "STRING", R),
        ("open_time", "TIMESTAMP", R),
        ("open", "NUMERIC", R),
        ("high", "NUMERIC", R),
        ("low", "NUMERIC", R),
        ("close", "NUMERIC", R),
        ("volume", "NUMERIC", R),
        ("close_time", "TIMESTAMP", R),
        ("quote_volume", "NUMERIC", R),
        ("trade_count", "INT64", R),
        ("taker_buy_base_volume", "NUMERIC", R),
        ("taker_buy_quote_volume", "NUMERIC", R),
        ("loaded_at", "TIMESTAMP", R),
    ],
    "symbols.json": _SYMBOL_ATTRIBUTES + [("as_of", "TIMESTAMP", R)],
    "symbols_history.json": _SYMBOL_ATTRIBUTES
    + [("valid_from", "TIMESTAMP", R), ("valid_to", "TIMESTAMP", N), ("is_current", "BOOL", R)],
}

# Which proto message each proto-backed table carries, and which string/int64 fields the contract
# stores as NUMERIC/TIMESTAMP rather than STRING/INT64.
PROTO_TABLES = {
    "trades_raw.json": ("trade.proto", "Trade"),
    "gaps.json": ("gap.proto", "Gap"),
}

# (dataset, table) -> schema file, partition field, clustering.
TABLES = {
    ("market", "trades_raw"): ("trades_raw.json", "trade_time", ["symbol", "trade_id"]),
    ("market", "gaps"): ("gaps.json", "detected_time", None),
    ("market", "coverage"): ("coverage.json", None, ["symbol"]),
    ("dwh", "symbols"): ("symbols.json", None, None),
    ("scd", "symbols_history"): ("symbols_history.json", None, None),
}
KLINES = ("klines.json", "open_time")

TRADES_VIEW_SQL = (
    "SELECT * FROM market.trades_raw WHERE TRUE QUALIFY ROW_NUMBER() OVER "
    "(PARTITION BY symbol, trade_id ORDER BY receive_time) = 1"
)

TRADES_BETWEEN_SQL = (
    "SELECT * FROM market.trades_raw WHERE trade_time >= start_time AND trade_time < end_time "
    "QUALIFY ROW_NUMBER() OVER (PARTITION BY symbol, trade_id ORDER BY receive_time) = 1"
)

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
