# Pub/Sub: the trade topic (typed by proto/proto/trade.proto), the gap topic (gap.proto), the
# consumer's subscriptions and the dead-letter topic.

# The schema is the very .proto file the Rust crates compile: one source of truth, no copy.
resource "google_pubsub_schema" "trade" {
  name       = "binance-trade"
  type       = "PROTOCOL_BUFFER"
  definition = file("${path.module}/../proto/proto/trade.proto")

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_schema" "gap" {
  name       = "binance-gap"
  type       = "PROTOCOL_BUFFER"
  definition = file("${path.module}/../proto/proto/gap.proto")

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "trades" {
  name = local.trade_topic_name

  # Pub/Sub rejects any publish that is not a binary-encoded Trade, so a bad producer build
  # fails loudly at publish time instead of poisoning the subscription.
  schema_settings {
    schema   = google_pubsub_schema.trade.id
    encoding = "BINARY"
  }

  # Keep published messages for a day so a new subscription (or a seek) can replay recent trades.
  message_retention_duration = "86400s"

  # Messages stay in the deployment's region (Binance blocks US addresses; keep data near it).
  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }
}

resource "google_pubsub_topic" "gaps" {
  name = local.gap_topic_name

  schema_settings {
    schema   = google_pubsub_schema.gap.id
    encoding = "BINARY"
  }

  message_retention_duration = "86400s"

  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }
}

# Dead letters carry no schema on purpose: an undecodable payload must still be accepted here.
# Only the consumer publishes here, and only poison (a payload that fails its checks, or a row
# BigQuery names in a row error), with the reason as an attribute. `consumer replay` republishes
# letters once their cause is fixed.
resource "google_pubsub_topic" "dead_letter" {
  name = local.dead_letter_topic_name

  message_retention_duration = "604800s"

  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }
}

resource "google_pubsub_subscription" "trades_bq" {
  name  = local.trade_subscription_name
  topic = google_pubsub_topic.trades.id

  # The consumer acks only after BigQuery took the batch; the client extends leases beyond this.
  ack_deadline_seconds = var.subscription_ack_deadline_seconds

  # Unacked trades are kept 7 days: this is where trades wait out a BigQuery outage (the
  # consumer holds and retries, it never dead-letters good trades), so it bounds how long
  # BigQuery may refuse appends before trades are lost from Pub/Sub (past it, only a REST
  # backfill from Binance gets them back). A week covers an outage noticed on a Friday evening
  # and fixed after the weekend; the backlog-age alert (monitoring.tf) fires long before.
  # Pub/Sub allows 10 minutes to 31 days; unacked messages kept over a day are billed as storage
  # (https://cloud.google.com/pubsub/docs/subscription-properties), under 1 GB a day here.
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  # Unordered on purpose, although the producer publishes with ordering key = symbol (other
  # subscribers may want per-symbol order): rows are keyed by (symbol, trade id) and the view
  # deduplicates, so order buys the consumer nothing, while ordered delivery holds back a whole
  # symbol behind one unacked message and, on redelivery, resends everything after it. (The
  # emulator even leaves keys leased by a SIGKILLed consumer stuck for minutes: tests/tests/chaos.rs.)
  enable_message_ordering = false

  # Fewer redeliveries after timely acks means fewer duplicate raw rows; correctness does not
  # depend on it (the market.trades view deduplicates).
  enable_exactly_once_delivery = var.trade_subscription_exactly_once

  # Never delete the subscription for inactivity.
  expiration_policy {
    ttl = ""
  }

  # Back off on nacks (a shutdown hands its held messages back) instead of hammering a replica.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  # No dead_letter_policy, on purpose: Pub/Sub counts every nack, lapsed lease and restart as a
  # delivery attempt, so a long BigQuery outage would move good trades to the dead-letter topic
  # after max_delivery_attempts. Good trades stay here until BigQuery takes them; the consumer
  # dead-letters poison itself (publish with the reason, then ack).
}

resource "google_pubsub_subscription" "gaps_bq" {
  name  = local.gap_subscription_name
  topic = google_pubsub_topic.gaps.id

  ack_deadline_seconds       = var.subscription_ack_deadline_seconds
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  # No dead_letter_policy: see trades_bq.
}

# Where dead letters wait for a human and `consumer replay` (which reads this subscription by
# default). Seven days, acked ones included, so a replay can be repeated after a seek.
resource "google_pubsub_subscription" "dead_letter" {
  name  = local.dead_letter_subscription_name
  topic = google_pubsub_topic.dead_letter.id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}
