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
# The consumer publishes poison messages itself (with the reason as an attribute) because the
# emulator has no dead-letter policies; in the cloud Pub/Sub also forwards messages that exceed
# max_delivery_attempts.
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

  # Seven days (the maximum) of unacked trades survive a consumer outage.
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

  # Back off on nacks (e.g. BigQuery unavailable) instead of hammering the consumer.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # The service agent must hold its roles before Pub/Sub accepts the dead-letter policy's use.
  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher_pubsub_agent,
  ]
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

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher_pubsub_agent,
  ]
}

# Where dead letters wait for a human (or a replay tool). Retained for the maximum seven days.
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
