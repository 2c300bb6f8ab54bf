# Monitoring: alerts for the failure modes that lose or delay data. Every alert goes to the
# e-mail channels created here plus any existing channels passed in.

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.notification_emails)

  display_name = "binance-pipeline ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.enabled]
}

locals {
  notification_channels = concat(
    [for c in google_monitoring_notification_channel.email : c.id],
    var.notification_channel_ids,
  )
}

# Consumer behind: the oldest unacked trade is getting old (consumer down, BigQuery refusing
# writes, or a poison message being retried).
resource "google_monitoring_alert_policy" "trade_backlog_age" {
  display_name          = "binance-pipeline: trade subscription backlog older than ${var.backlog_alert_seconds}s"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "oldest unacked message age on ${local.trade_subscription_name}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.trades_bq.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.backlog_alert_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "The consumer is not keeping up with ${local.trade_topic_name}. Check the binance-consumer instance group's health and logs, and BigQuery write errors. Trades are retained on the subscription for 7 days."
    mime_type = "text/markdown"
  }
}

# Producer silent: no publish to the trade topic for N minutes. BTCUSDT trades every second, so
# this means the producer (or its egress to Binance) is down.
resource "google_monitoring_alert_policy" "producer_silence" {
  display_name          = "binance-pipeline: no trades published for ${var.producer_silence_minutes} min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "no publish requests on ${local.trade_topic_name}"
    condition_absent {
      filter   = "resource.type = \"pubsub_topic\" AND resource.labels.topic_id = \"${google_pubsub_topic.trades.name}\" AND metric.type = \"pubsub.googleapis.com/topic/send_request_count\""
      duration = "${var.producer_silence_minutes * 60}s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    content   = "The producer VM binance-producer has published nothing. Check its serial console and container logs (journalctl -u producer), Cloud NAT errors, and whether Binance answers 451/418 from the NAT addresses."
    mime_type = "text/markdown"
  }
}

# Trades lost: the producer (or the batch reconciliation) wrote a gap record, i.e. trade ids it
# could not recover (451, a ban longer than it may wait, ids Binance no longer serves). The
# records land in market.gaps; someone has to decide what to do about them.
resource "google_monitoring_alert_policy" "trade_gaps" {
  display_name          = "binance-pipeline: trade ids could not be recovered (gap records)"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "publishes on ${local.gap_topic_name}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_topic\" AND resource.labels.topic_id = \"${google_pubsub_topic.gaps.name}\" AND metric.type = \"pubsub.googleapis.com/topic/send_request_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    content   = "Trade ids were declared unrecoverable. Query `SELECT * FROM market.gaps ORDER BY detected_time DESC` for the symbols, id ranges and reasons (geo_blocked_451, ip_banned_418, ids_unavailable, resume_too_old, ...). The producer's log says the same at severity ERROR."
    mime_type = "text/markdown"
  }
}

# Dead letters: any message Pub/Sub forwarded after max_delivery_attempts, or that the consumer
# dead-lettered itself, is waiting on the dead-letter subscription.
resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "binance-pipeline: messages dead-lettered"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "dead-lettered by Pub/Sub from ${local.trade_subscription_name}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.trades_bq.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  conditions {
    display_name = "messages waiting on ${local.dead_letter_subscription_name}"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.dead_letter.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "Messages reached ${local.dead_letter_topic_name}. Pull them from ${local.dead_letter_subscription_name}; the consumer sets the reason as a message attribute."
    mime_type = "text/markdown"
  }
}

# Batch failed: any execution of the Cloud Run job that ended in failure.
resource "google_monitoring_alert_policy" "batch_failure" {
  display_name          = "binance-pipeline: batch job execution failed"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "failed executions of ${local.batch_job_name}"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_job\" AND resource.labels.job_name = \"${google_cloud_run_v2_job.batch.name}\" AND metric.type = \"run.googleapis.com/job/completed_execution_count\" AND metric.labels.result = \"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  # The DAG is the batch's caller: a failed run (including a failed BigQuery check) also pages.
  conditions {
    display_name = "failed runs of DAG ${var.dag_id}"
    condition_threshold {
      filter          = "resource.type = \"cloud_composer_workflow\" AND resource.labels.workflow_name = \"${var.dag_id}\" AND metric.type = \"composer.googleapis.com/workflow/run_count\" AND metric.labels.state = \"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    content   = "The daily batch failed. Open the ${var.dag_id} DAG run in Airflow (see output airflow_uri) and the ${local.batch_job_name} execution logs in Cloud Run; every step is idempotent, so clear and rerun the failed date."
    mime_type = "text/markdown"
  }
}
