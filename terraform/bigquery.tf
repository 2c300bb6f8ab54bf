# BigQuery: three datasets (raw market data, warehouse, slowly changing dimensions), tables whose
# schemas are the JSON files in schemas/ (the contract shared with the code and the local stack),
# and the deduplicating view users query.

resource "google_bigquery_dataset" "market" {
  dataset_id    = local.market_dataset_id
  friendly_name = "Binance market data"
  description   = "Trades as the consumer appends them (trades_raw, at-least-once), the deduplicated trades view users query, and gaps that could not be filled."
  location      = var.bigquery_location

  # Never drop data on terraform destroy: the tables' own deletion protection also applies.
  delete_contents_on_destroy = false

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_dataset" "dwh" {
  dataset_id    = local.dwh_dataset_id
  friendly_name = "Binance warehouse"
  description   = "Per-symbol one-minute klines (klines_<symbol>) and the current symbol dimension, loaded idempotently per date by the batch."
  location      = var.bigquery_location

  delete_contents_on_destroy = false

  depends_on = [google_project_service.enabled]
}

resource "google_bigquery_dataset" "scd" {
  dataset_id    = local.scd_dataset_id
  friendly_name = "Binance symbol history"
  description   = "Type-2 history of exchangeInfo symbol attributes (valid_from, valid_to, is_current, row_hash)."
  location      = var.bigquery_location

  delete_contents_on_destroy = false

  depends_on = [google_project_service.enabled]
}

# Append-only landing table. Day partitions on trade_time keep each query's scan to the days it
# asks for; clustering by (symbol, trade_id) makes the view's dedup window and per-symbol queries
# read little.
resource "google_bigquery_table" "trades_raw" {
  dataset_id  = google_bigquery_dataset.market.dataset_id
  table_id    = "trades_raw"
  description = "Every Trade message the consumer wrote (Storage Write API, at-least-once). Query market.trades instead: it has exactly one row per (symbol, trade_id)."
  schema      = file("${path.module}/schemas/trades_raw.json")

  time_partitioning {
    type  = "DAY"
    field = "trade_time"
  }

  clustering = ["symbol", "trade_id"]

  deletion_protection = var.deletion_protection
}

# What users query: one row per (symbol, trade_id) whatever Pub/Sub redelivered, keeping the
# earliest received copy. The SQL is the contract's, character for character.
resource "google_bigquery_table" "trades" {
  dataset_id  = google_bigquery_dataset.market.dataset_id
  table_id    = "trades"
  description = "Binance spot trades, exactly one row per (symbol, trade_id)."

  view {
    query          = "SELECT * FROM `${var.project_id}.${local.market_dataset_id}.trades_raw` WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY symbol, trade_id ORDER BY receive_time) = 1"
    use_legacy_sql = false
  }

  deletion_protection = var.deletion_protection

  depends_on = [google_bigquery_table.trades_raw]
}

# What users query for a time range: the same one row per (symbol, trade_id), but the trade_time
# filter runs before the deduplication, so only the partitions of the range are read (a WHERE on
# the view above comes after its window function and scans all of trades_raw).
#   SELECT * FROM market.trades_between(TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-02')
resource "google_bigquery_routine" "trades_between" {
  dataset_id      = google_bigquery_dataset.market.dataset_id
  routine_id      = "trades_between"
  routine_type    = "TABLE_VALUED_FUNCTION"
  language        = "SQL"
  description     = "Binance spot trades with start_time <= trade_time < end_time, exactly one row per (symbol, trade_id); reads only the days asked for."
  definition_body = "SELECT * FROM `${var.project_id}.${local.market_dataset_id}.trades_raw` WHERE trade_time >= start_time AND trade_time < end_time QUALIFY ROW_NUMBER() OVER (PARTITION BY symbol, trade_id ORDER BY receive_time) = 1"

  arguments {
    name      = "start_time"
    data_type = jsonencode({ typeKind = "TIMESTAMP" })
  }
  arguments {
    name      = "end_time"
    data_type = jsonencode({ typeKind = "TIMESTAMP" })
  }

  depends_on = [google_bigquery_table.trades_raw]
}

resource "google_bigquery_table" "gaps" {
  dataset_id  = google_bigquery_dataset.market.dataset_id
  table_id    = "gaps"
  description = "Trade id ranges the producer or the batch knows it could not deliver, with the reason."
  schema      = file("${path.module}/schemas/gaps.json")

  time_partitioning {
    type  = "DAY"
    field = "detected_time"
  }

  clustering = ["symbol"]

  deletion_protection = var.deletion_protection
}

# A row per symbol and UTC day (a few thousand rows a symbol over years): too small to partition.
resource "google_bigquery_table" "coverage" {
  dataset_id  = google_bigquery_dataset.market.dataset_id
  table_id    = "coverage"
  description = "Per symbol and UTC day: first and last trade id, distinct ids, rows per source and whether the day is proven complete (complete | holes | missing); batch history and the daily check MERGE it by (symbol, day)."
  schema      = file("${path.module}/schemas/coverage.json")

  clustering = ["symbol"]

  deletion_protection = var.deletion_protection
}

# One table per symbol, generated from var.symbols: dwh.klines_btcusdt, dwh.klines_aaveusdt, ...
resource "google_bigquery_table" "klines" {
  for_each = local.kline_tables

  dataset_id  = google_bigquery_dataset.dwh.dataset_id
  table_id    = "klines_${each.key}"
  description = "One-minute klines of ${each.value}, one row per open_time; the batch replaces a whole day's partition on each run, so reruns are idempotent."
  schema      = file("${path.module}/schemas/klines.json")

  time_partitioning {
    type  = "DAY"
    field = "open_time"
  }

  deletion_protection = var.deletion_protection
}

resource "google_bigquery_table" "symbols" {
  dataset_id  = google_bigquery_dataset.dwh.dataset_id
  table_id    = "symbols"
  description = "Current exchangeInfo attributes of each captured symbol (one row per symbol)."
  schema      = file("${path.module}/schemas/symbols.json")

  clustering = ["symbol"]

  deletion_protection = var.deletion_protection
}

resource "google_bigquery_table" "symbols_history" {
  dataset_id  = google_bigquery_dataset.scd.dataset_id
  table_id    = "symbols_history"
  description = "Type-2 history of symbol attributes: a new row each time row_hash changes; valid_to is NULL and is_current TRUE on the current row."
  schema      = file("${path.module}/schemas/symbols_history.json")

  clustering = ["symbol", "valid_from"]

  deletion_protection = var.deletion_protection
}
