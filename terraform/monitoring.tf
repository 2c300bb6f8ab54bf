# Monitoring: alerts for the failure modes that lose or delay data. Every alert goes to the
# e-mail channels created here plus any existing channels passed in.
#
# Two kinds of condition: filters on Google's own metrics (Pub/Sub, Cloud Run, Composer), and
# PromQL on the metrics only our binaries know (gaps, backfill, connection, latency, acks), which
# the collector on each VM writes to Managed Service for Prometheus (compute.tf). Those metric
# names come from producer/src/metrics.rs and consumer/src/metrics.rs as the exposition writes
# them (counters end in _total, histograms are read through _bucket); tests/terraform/
# test_metrics.py fails if a query names a metric, a kind or a label the binaries do not expose.
# disable_metric_validation: the metrics exist only once the collector has written them, after
# the VMs start, so Cloud Monitoring could not check them when Terraform creates the policies.

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
# Kept on the gap topic rather than producer_gaps_unfilled_total: the topic also carries the batch
# reconciliation's records, and it sees the first record, which a PromQL increase() cannot (a
# labelled counter series is created at 1 by that very record).
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

# Dead letters: a message the consumer dead-lettered (poison: it failed our checks or BigQuery
# named its row) is waiting on the dead-letter subscription.
resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "binance-pipeline: messages dead-lettered"
  combiner              = "OR"
  notification_channels = local.notification_channels

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
    content   = "Messages reached ${local.dead_letter_topic_name}: poison the consumer refused (our own checks, or a row BigQuery named in a row error), each with its reason as the `reason` attribute. Count them by reason without changing anything: consumer replay --project PROJECT --dry-run. If a fix made them acceptable (e.g. rejected_by_bigquery after a schema fix), bring them back: consumer replay --reason REASON (consumer/README.md). True poison (undecodable, invalid_value) stays."
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

# ---------------------------------------------------------------------------------------------
# What only our binaries know (PromQL on Managed Service for Prometheus).

# Backfill stuck: trade ids detected missing and still not filled over REST.
resource "google_monitoring_alert_policy" "gap_ids_outstanding" {
  display_name          = "binance-pipeline: trade ids waiting for backfill for ${var.gap_ids_outstanding_alert_minutes} min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "producer_gap_ids_outstanding > 0, by symbol"
    condition_prometheus_query_language {
      query                     = <<-EOT
        max by (symbol) (producer_gap_ids_outstanding) > 0
      EOT
      duration                  = "${var.gap_ids_outstanding_alert_minutes * 60}s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "The producer knows trade ids it has not published and has not filled them over REST for ${var.gap_ids_outstanding_alert_minutes} minutes (the symbol is in the alert's labels). Usually Binance throttles or refuses historicalTrades: check the producer log (journalctl -u producer, or Cloud Logging) for 429/418/451 and the Cloud NAT addresses. The ids are not lost: passing REST trouble (429, 5xx, a long 418, a proxy's page) keeps them open and the producer asks again, backing off up to 10 minutes (producer_backfill_retries_total by reason says why); only a refusal that cannot change (451, another 4xx) becomes a gap record (the gap-record alert), and the daily reconciliation checks the day again."
    mime_type = "text/markdown"
  }
}

# Late data: trades take too long from the exchange into BigQuery (consumer view of the whole path).
resource "google_monitoring_alert_policy" "exchange_to_bigquery_latency" {
  display_name          = "binance-pipeline: exchange to BigQuery p99 above ${var.exchange_to_bigquery_p99_alert_seconds}s"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "p99 of consumer_exchange_to_bigquery_seconds over 5 min"
    condition_prometheus_query_language {
      query                     = <<-EOT
        histogram_quantile(0.99, sum by (le) (rate(consumer_exchange_to_bigquery_seconds_bucket[5m]))) > ${var.exchange_to_bigquery_p99_alert_seconds}
      EOT
      duration                  = "600s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "For 10 minutes, 1 trade in 100 took more than ${var.exchange_to_bigquery_p99_alert_seconds}s from Binance's trade time to BigQuery's append acknowledgement (all consumer instances together; the histogram's buckets double from 50 ms, so the threshold is read between 3.2 s and 6.4 s). Compare producer_exchange_to_publish_seconds (exchange to Pub/Sub) to see which half is slow: a slow producer half points at Binance or Pub/Sub publish, a slow consumer half at the subscription backlog (backlog alert) or slow AppendRows (consumer_append_seconds, consumer_append_retries_total). Nothing is lost; data is late."
    mime_type = "text/markdown"
  }
}

# Producer cut off from Binance: its websocket has been down (or it reports nothing at all).
resource "google_monitoring_alert_policy" "producer_disconnected" {
  display_name          = "binance-pipeline: producer not connected to Binance for ${var.producer_silence_minutes} min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "producer_connected below 1, or absent"
    condition_prometheus_query_language {
      query                     = <<-EOT
        (max(producer_connected) < 1) or absent(producer_connected)
      EOT
      duration                  = "${var.producer_silence_minutes * 60}s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "The producer's websocket to Binance has been closed for ${var.producer_silence_minutes} minutes, or no producer metrics arrive at all (producer or its collector down). On binance-producer (gcloud compute ssh binance-producer --tunnel-through-iap): systemctl status producer otel-collector, journalctl -u producer for the connection errors (451/418 from the NAT addresses, DNS, TLS). If only otel-collector is down, trades still flow (the no-trades-published alert stays quiet): restart it. After reconnecting the producer backfills what it missed over REST."
    mime_type = "text/markdown"
  }
}

# Consumer not acking: an instance pulls trades but none is appended (the consumer acks only what
# BigQuery took, or a duplicate it already has), so the subscription redelivers and backs up.
resource "google_monitoring_alert_policy" "consumer_not_acking" {
  display_name          = "binance-pipeline: a consumer pulls trades but appends none for ${var.consumer_stall_minutes} min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "received > 0 and appended = duplicates = 0, by instance"
    condition_prometheus_query_language {
      query                     = <<-EOT
        (sum by (instance) (rate(consumer_messages_received_total{table="trades_raw"}[${var.consumer_stall_minutes}m])) > 0)
        unless on (instance) (sum by (instance) (rate(consumer_rows_appended_total{table="trades_raw"}[${var.consumer_stall_minutes}m])) > 0)
        unless on (instance) (sum by (instance) (rate(consumer_duplicates_suppressed_total{table="trades_raw"}[${var.consumer_stall_minutes}m])) > 0)
      EOT
      duration                  = "60s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "A consumer instance (the instance label names the VM) received trades for ${var.consumer_stall_minutes} minutes and appended none to market.trades_raw, so it acked none: Pub/Sub redelivers them and the backlog grows. Check its log (Cloud Logging, the instance's consumer container) for AppendRows errors and consumer_append_retries_total: BigQuery permissions, quota, a schema mismatch. The group's autohealer replaces it only if /healthz fails; to replace it by hand: gcloud compute instance-groups managed recreate-instances binance-consumer --region REGION --instances NAME. Nothing is lost while the subscription retains the messages (7 days)."
    mime_type = "text/markdown"
  }
}

# Producer cannot publish: Pub/Sub has acknowledged nothing for 30 s while messages are
# outstanding (frozen, unreachable, or refusing). Memory stays bounded; Binance drops what the
# producer cannot read, and the producer backfills it once Pub/Sub answers.
resource "google_monitoring_alert_policy" "producer_not_publishing" {
  display_name          = "binance-pipeline: producer cannot publish to Pub/Sub for ${var.producer_silence_minutes} min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "producer_publishing below 1"
    condition_prometheus_query_language {
      query                     = <<-EOT
        max(producer_publishing) < 1
      EOT
      duration                  = "${var.producer_silence_minutes * 60}s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "The producer has messages outstanding and Pub/Sub acknowledged none of them for ${var.producer_silence_minutes} minutes (its /healthz answers 503 \"not publishing\"). Check the Pub/Sub status page, the producer's log (journalctl -u producer: publish errors, permission denied on the topic), Private Google Access on the subnet. Memory is bounded: the producer stops reading from Binance, which then drops what it cannot send; those ids become gaps that the producer backfills over REST once Pub/Sub answers (or the next run, from its state file). Nothing to do about the data; fix Pub/Sub access."
    mime_type = "text/markdown"
  }
}

# Hostile or corrupted input: stream trades quarantined because their id is implausible.
resource "google_monitoring_alert_policy" "producer_quarantined_trades" {
  display_name          = "binance-pipeline: producer quarantined implausible trade ids"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "increase of producer_quarantined_trades_total, by symbol"
    condition_prometheus_query_language {
      query                     = <<-EOT
        sum by (symbol) (increase(producer_quarantined_trades_total[10m])) > 0
      EOT
      duration                  = "60s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "The producer refused stream trades whose id is far beyond anything Binance can have traded since the last id it accounted for (more than 10,000,000 ids plus 100,000 per second); they were not published. One or two are a corrupted frame; a steady stream means Binance's ids jumped for real (a reset, a migration) or something is answering in Binance's place (check the websocket host, BINANCE_WS_URL, DNS). The producer log line 'implausible trade id quarantined' has the ids. Until this is understood, the symbol's trades after the jump are not published."
    mime_type = "text/markdown"
  }
}

# The producer's resume point cannot be saved: a restart would start from an older point (more
# backfill) or, if the file is gone, at the exchange's latest id.
resource "google_monitoring_alert_policy" "producer_state_file_failing" {
  display_name          = "binance-pipeline: producer cannot write its resume point"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "producer_state_file_ok below 1"
    condition_prometheus_query_language {
      query                     = <<-EOT
        max(producer_state_file_ok) < 1
      EOT
      duration                  = "900s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "For 15 minutes the producer could not write /var/lib/binance-pipeline/producer/resume.json on the VM (disk full or read-only; producer_state_write_failures_total counts the failures). Trades still flow. A restart now would resume from the last point written (more backfill, nothing lost) or at the exchange's latest id if none was ever written, leaving the downtime to the daily reconciliation. On the VM: df -h /var/lib/binance-pipeline, dmesg for a read-only remount, journalctl -u producer. A state file set aside at start (producer_state_file_set_aside_total) is explained in producer/README.md."
    mime_type = "text/markdown"
  }
}

# The consumer is in outage mode: BigQuery refuses its appends as a whole (schema drift, missing
# table or dataset, permission denied). Rows are held, nothing is acked or dead-lettered, and the
# backlog waits in Pub/Sub (7 days).
resource "google_monitoring_alert_policy" "consumer_appends_refused" {
  display_name          = "binance-pipeline: BigQuery refuses the consumer's appends"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "increase of consumer_append_refused_total, by table and code"
    condition_prometheus_query_language {
      query                     = <<-EOT
        sum by (table, code) (increase(consumer_append_refused_total[5m])) > 0
      EOT
      duration                  = "60s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "BigQuery refused AppendRows requests as a whole (the code label says how: NOT_FOUND for a missing table or dataset, PERMISSION_DENIED, INVALID_ARGUMENT for a schema that no longer matches the Trade message). The consumer holds those rows, acks and dead-letters nothing, retries every minute at most and answers 503 on /healthz; the trades wait on the subscription (7 days). The consumer log at ERROR quotes BigQuery's reason. Fix the table (terraform apply restores schemas; ALTER TABLE back a dropped column) or the grant (dataEditor on market.trades_raw and market.gaps); the consumer recovers by itself, nothing lost."
    mime_type = "text/markdown"
  }
}

# Appends failing for long (any reason, transient ones included): data is late and piling up.
resource "google_monitoring_alert_policy" "consumer_stuck" {
  display_name          = "binance-pipeline: consumer appends failing for ${var.consumer_stall_minutes} min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "consumer_stuck_seconds above ${var.consumer_stall_minutes} min, by table"
    condition_prometheus_query_language {
      query                     = <<-EOT
        max by (table) (consumer_stuck_seconds) > ${var.consumer_stall_minutes * 60}
      EOT
      duration                  = "60s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "For ${var.consumer_stall_minutes} minutes the consumer has held rows whose appends keep failing (transient errors: BigQuery unavailable, deadline exceeded, quota; or a refusal, see the refused-appends alert). Nothing is acked meanwhile, so nothing is lost; trades are late. Check BigQuery's status, the consumer log (AppendRows errors), consumer_append_retries_total."
    mime_type = "text/markdown"
  }
}

# The trade subscription's streaming pull stays silent across a reopen: Pub/Sub or the producer.
resource "google_monitoring_alert_policy" "consumer_pull_silent" {
  display_name          = "binance-pipeline: consumer receives no trades for 5 min"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "consumer_pull_silent at 1, by instance"
    condition_prometheus_query_language {
      query                     = <<-EOT
        max by (instance) (consumer_pull_silent{table="trades_raw"}) >= 1
      EOT
      duration                  = "300s"
      evaluation_interval       = "60s"
      disable_metric_validation = true
    }
  }

  documentation {
    content   = "A consumer instance got no trade from its streaming pull for --pull-silence, reopened it, and still gets none. BTCUSDT alone trades ~35 times a second, so either the producer publishes nothing (the no-trades-published and producer alerts say so) or the pull is wedged (Pub/Sub status, Private Google Access on the subnet). The group's autohealer (/livez) replaces an instance whose pull stays silent."
    mime_type = "text/markdown"
  }
}
