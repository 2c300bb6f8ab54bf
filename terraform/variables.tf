# Inputs. Every variable says what it is for; the ones a user must think about have no default.

variable "project_id" {
  description = "Google Cloud project ID to deploy into (must already exist, with billing enabled)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 characters, lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region for every regional resource. Defaults to asia-northeast1 (Tokyo), close to Binance's matching engine. It must be outside the United States: Binance answers HTTP 451 to requests from US addresses, so a producer or batch running in a us-* region cannot read any market data."
  type        = string
  default     = "asia-northeast1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region)) && !startswith(var.region, "us-")
    error_message = "region must be a Google Cloud region name (e.g. asia-northeast1) and must not be a us-* region: Binance answers HTTP 451 to US addresses."
  }
}

variable "zone" {
  description = "Zone of the producer VM. Must be in var.region."
  type        = string
  default     = "asia-northeast1-b"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]-[a-z]$", var.zone)) && !startswith(var.zone, "us-")
    error_message = "zone must be a zone name such as asia-northeast1-b, outside the United States."
  }
}

variable "bigquery_location" {
  description = "Location of the BigQuery datasets (a region such as asia-northeast1, or a multi-region such as EU). Keep it with var.region to avoid cross-region egress."
  type        = string
  default     = "asia-northeast1"

  validation {
    condition     = length(var.bigquery_location) > 0
    error_message = "bigquery_location must not be empty."
  }
}

variable "symbols" {
  description = "Binance spot symbols to capture, upper case. One dwh.klines_<symbol> table is created per symbol; the binaries receive them as SYMBOLS."
  type        = list(string)
  default     = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"]

  validation {
    condition     = length(var.symbols) > 0 && alltrue([for s in var.symbols : can(regex("^[A-Z0-9]{2,20}$", s))])
    error_message = "symbols must be a non-empty list of upper-case Binance symbols such as BTCUSDT."
  }

  validation {
    condition     = length(distinct(var.symbols)) == length(var.symbols)
    error_message = "symbols must not contain duplicates."
  }
}

variable "producer_image_digest" {
  description = "Digest (sha256:<64 hex>) of the producer image in the binance-pipeline Artifact Registry repository; scripts/deploy reads it from the registry after the push and passes it. No default: a tag can be moved or never pushed, a digest names exactly one build."
  type        = string

  validation {
    condition     = can(regex("^sha256:[0-9a-f]{64}$", var.producer_image_digest))
    error_message = "producer_image_digest must be an image digest: sha256: and 64 lower-case hex digits (scripts/deploy passes the pushed one)."
  }
}

variable "consumer_image_digest" {
  description = "Digest (sha256:<64 hex>) of the consumer image in the binance-pipeline Artifact Registry repository; scripts/deploy reads it from the registry after the push and passes it. No default: a tag can be moved or never pushed, a digest names exactly one build."
  type        = string

  validation {
    condition     = can(regex("^sha256:[0-9a-f]{64}$", var.consumer_image_digest))
    error_message = "consumer_image_digest must be an image digest: sha256: and 64 lower-case hex digits (scripts/deploy passes the pushed one)."
  }
}

variable "batch_image_digest" {
  description = "Digest (sha256:<64 hex>) of the batch image in the binance-pipeline Artifact Registry repository; scripts/deploy reads it from the registry after the push and passes it. No default: a tag can be moved or never pushed, a digest names exactly one build."
  type        = string

  validation {
    condition     = can(regex("^sha256:[0-9a-f]{64}$", var.batch_image_digest))
    error_message = "batch_image_digest must be an image digest: sha256: and 64 lower-case hex digits (scripts/deploy passes the pushed one)."
  }
}

variable "otel_collector_image" {
  description = "Google-Built OpenTelemetry Collector image run beside the producer and each consumer: it scrapes their /metrics and writes the samples to Managed Service for Prometheus. A release version tag (the default) or IMAGE@sha256:<digest>; scripts/deploy resolves the tag to its digest and passes that. Never latest."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.137.0"

  validation {
    condition     = can(regex("^[a-z0-9.-]+(/[a-z0-9._-]+)+(:[0-9]+\\.[0-9]+\\.[0-9]+|@sha256:[0-9a-f]{64})$", var.otel_collector_image))
    error_message = "otel_collector_image must be REGISTRY/PATH:X.Y.Z (a release) or REGISTRY/PATH@sha256:<64 hex>, never latest or another moving tag."
  }
}

variable "metrics_scrape_interval_seconds" {
  description = "How often the collector scrapes each binary's /metrics. Managed Service for Prometheus bills per sample, so this sets the cost (terraform/README.md, cost table); the alerts look at 5-15 minute windows."
  type        = number
  default     = 30

  validation {
    condition     = var.metrics_scrape_interval_seconds >= 10 && var.metrics_scrape_interval_seconds <= 300 && floor(var.metrics_scrape_interval_seconds) == var.metrics_scrape_interval_seconds
    error_message = "metrics_scrape_interval_seconds must be a whole number between 10 and 300."
  }
}

variable "gap_ids_outstanding_alert_minutes" {
  description = "Alert when a symbol has trade ids waiting for REST backfill (producer_gap_ids_outstanding > 0) for this many minutes. Backfill normally closes a gap within seconds; minutes mean Binance throttles or refuses the REST calls."
  type        = number
  default     = 15

  validation {
    condition     = var.gap_ids_outstanding_alert_minutes >= 1 && var.gap_ids_outstanding_alert_minutes <= 1440
    error_message = "gap_ids_outstanding_alert_minutes must be between 1 and 1440."
  }
}

variable "exchange_to_bigquery_p99_alert_seconds" {
  description = "Alert when the 99th percentile of the time from a trade at Binance to BigQuery's append acknowledgement (consumer_exchange_to_bigquery_seconds) stays above this many seconds for 10 minutes."
  type        = number
  default     = 5

  validation {
    condition     = var.exchange_to_bigquery_p99_alert_seconds > 0
    error_message = "exchange_to_bigquery_p99_alert_seconds must be positive."
  }
}

variable "consumer_stall_minutes" {
  description = "Alert when a consumer instance pulled trades but appended (and so acked) none for this many minutes."
  type        = number
  default     = 10

  validation {
    condition     = var.consumer_stall_minutes >= 2 && var.consumer_stall_minutes <= 120
    error_message = "consumer_stall_minutes must be between 2 and 120."
  }
}

variable "binance_ws_url" {
  description = "Binance websocket base URL for the producer (BINANCE_WS_URL)."
  type        = string
  default     = "wss://data-stream.binance.vision"

  validation {
    condition     = can(regex("^wss?://", var.binance_ws_url))
    error_message = "binance_ws_url must start with wss:// or ws://."
  }
}

variable "binance_rest_url" {
  description = "Binance REST base URL for the producer's backfill and the batch (BINANCE_REST_URL). api.binance.com by default because the data-api host does not serve historicalTrades."
  type        = string
  default     = "https://api.binance.com"

  validation {
    condition     = can(regex("^https?://", var.binance_rest_url))
    error_message = "binance_rest_url must start with https:// or http://."
  }
}

variable "producer_machine_type" {
  description = "Machine type of the producer VM. e2-small is plenty for four symbols (a few hundred trades per second at peak)."
  type        = string
  default     = "e2-small"

  validation {
    condition     = length(var.producer_machine_type) > 0
    error_message = "producer_machine_type must not be empty."
  }
}

variable "consumer_machine_type" {
  description = "Machine type of each consumer instance."
  type        = string
  default     = "e2-small"

  validation {
    condition     = length(var.consumer_machine_type) > 0
    error_message = "consumer_machine_type must not be empty."
  }
}

variable "consumer_min_replicas" {
  description = "Minimum number of consumer instances (they share one subscription)."
  type        = number
  default     = 1

  validation {
    condition     = var.consumer_min_replicas >= 1 && floor(var.consumer_min_replicas) == var.consumer_min_replicas
    error_message = "consumer_min_replicas must be a whole number, at least 1."
  }
}

variable "consumer_max_replicas" {
  description = "Maximum number of consumer instances the backlog autoscaler may start."
  type        = number
  default     = 4

  validation {
    condition     = var.consumer_max_replicas >= 1 && var.consumer_max_replicas <= 100 && floor(var.consumer_max_replicas) == var.consumer_max_replicas
    error_message = "consumer_max_replicas must be a whole number between 1 and 100."
  }
}

variable "consumer_backlog_per_replica" {
  description = "Undelivered messages on the trade subscription per consumer instance the autoscaler aims for."
  type        = number
  default     = 50000

  validation {
    condition     = var.consumer_backlog_per_replica > 0
    error_message = "consumer_backlog_per_replica must be positive."
  }
}

variable "subnet_cidr" {
  description = "Primary IPv4 range of the pipeline's subnetwork."
  type        = string
  default     = "10.42.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be an IPv4 CIDR block."
  }
}

variable "allow_iap_ssh" {
  description = "Allow SSH to the VMs through Identity-Aware Proxy TCP forwarding (source 35.235.240.0/20 only; the VMs have no external IP and use OS Login)."
  type        = bool
  default     = true
}

variable "trade_subscription_exactly_once" {
  description = "Enable exactly-once delivery on the trade subscription. The deduplicating view already guarantees one row per trade; exactly-once mainly cuts redeliveries (and so duplicate raw rows) after acks the consumer made in time."
  type        = bool
  default     = true
}

variable "subscription_ack_deadline_seconds" {
  description = "Ack deadline of the trade and gap subscriptions. The consumer acks only after BigQuery accepted the batch, so this must exceed one batch's write time; clients extend it while they hold a message."
  type        = number
  default     = 60

  validation {
    condition     = var.subscription_ack_deadline_seconds >= 10 && var.subscription_ack_deadline_seconds <= 600
    error_message = "subscription_ack_deadline_seconds must be between 10 and 600 (Pub/Sub limits)."
  }
}

variable "composer_image_version" {
  description = "Cloud Composer 3 image version. Composer 3 runs Airflow 2 by default; the DAG is written to run on Airflow 2 and 3."
  type        = string
  default     = "composer-3-airflow-2.10.5"

  validation {
    condition     = startswith(var.composer_image_version, "composer-3-")
    error_message = "composer_image_version must be a Cloud Composer 3 image (composer-3-airflow-...)."
  }
}

variable "composer_environment_size" {
  description = "Composer environment size. SMALL runs one daily DAG comfortably."
  type        = string
  default     = "ENVIRONMENT_SIZE_SMALL"

  validation {
    condition     = contains(["ENVIRONMENT_SIZE_SMALL", "ENVIRONMENT_SIZE_MEDIUM", "ENVIRONMENT_SIZE_LARGE"], var.composer_environment_size)
    error_message = "composer_environment_size must be ENVIRONMENT_SIZE_SMALL, _MEDIUM or _LARGE."
  }
}

variable "dag_id" {
  description = "Airflow DAG id of the daily batch DAG (dags/binance_daily.py); used by the DAG-failure alert."
  type        = string
  default     = "binance_daily"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.dag_id))
    error_message = "dag_id must be a valid Airflow DAG id."
  }
}

variable "batch_task_timeout" {
  description = "Longest one batch job execution may run, as a duration string (e.g. 3600s)."
  type        = string
  default     = "3600s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.batch_task_timeout))
    error_message = "batch_task_timeout must be a duration in seconds such as 3600s."
  }
}

variable "deletion_protection" {
  description = "Protect BigQuery tables, the batch job and the producer VM from terraform destroy. Turn off only to tear down a test project."
  type        = bool
  default     = true
}

variable "notification_emails" {
  description = "E-mail addresses that receive every alert (one notification channel is created per address)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.notification_emails : can(regex("^[^@[:space:]]+@[^@[:space:]]+\\.[^@[:space:]]+$", e))])
    error_message = "notification_emails must contain e-mail addresses."
  }
}

variable "notification_channel_ids" {
  description = "Existing Cloud Monitoring notification channels (projects/P/notificationChannels/ID) that also receive every alert, e.g. Slack or PagerDuty."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channel_ids : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channel_ids must be full channel names: projects/PROJECT/notificationChannels/ID."
  }
}

variable "backlog_alert_seconds" {
  description = "Alert when the oldest unacked message on the trade subscription is older than this many seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.backlog_alert_seconds >= 60
    error_message = "backlog_alert_seconds must be at least 60."
  }
}

variable "producer_silence_minutes" {
  description = "Alert when nothing was published to the trade topic for this many minutes (BTCUSDT trades every second, so silence means the producer is down or cut off)."
  type        = number
  default     = 10

  validation {
    condition     = var.producer_silence_minutes >= 2 && var.producer_silence_minutes <= 1440
    error_message = "producer_silence_minutes must be between 2 and 1440 (Cloud Monitoring absence window limits)."
  }
}

# --- IAM and access (issue 14) -------------------------------------------------------------------

variable "subscribers" {
  description = "IAM members (user:, group:, serviceAccount:, domain:, principal: or principalSet:) allowed to attach their own subscriptions to the trade and gap topics. Each gets roles/pubsub.subscriber on those two topics only (for pubsub.topics.attachSubscription) and nothing on the pipeline's subscriptions; the subscriptions live in the subscriber's own project (docs/iam.md)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.subscribers : can(regex("^(user|group|serviceAccount|domain|principal|principalSet):[^[:space:]]+$", m))])
    error_message = "subscribers must be IAM members such as group:team@example.com or serviceAccount:app@other-project.iam.gserviceaccount.com (allUsers and allAuthenticatedUsers are not accepted)."
  }

  validation {
    condition     = length(distinct(var.subscribers)) == length(var.subscribers)
    error_message = "subscribers must not contain duplicates."
  }
}

variable "composer_web_server_allowed_ip_ranges" {
  description = "IPv4/IPv6 CIDR ranges allowed to reach the Airflow web UI of the Composer environment (an office or VPN range, e.g. 203.0.113.0/24). Empty (the default) lets no address in: the allow-list then holds only 192.0.2.0/24 (TEST-NET-1, RFC 5737, not routed on the internet), because an unset allow-list would admit every address. The DAG runs either way, and IAM still decides who may use the UI."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.composer_web_server_allowed_ip_ranges : can(cidrhost(c, 0))])
    error_message = "composer_web_server_allowed_ip_ranges must hold CIDR ranges such as 203.0.113.0/24 or 2001:db8::/32."
  }
}

# --- First deploy (issue 14)

variable "go_live_date" {
  description = "First UTC day (YYYY-MM-DD) the daily DAG loads, normally the day the producer goes live; it becomes the DAG's start_date (PIPELINE_START_DATE). Airflow schedules no run for an earlier day: load days before it explicitly with `batch backfill` (terraform/README.md, \"The DAG\")."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.go_live_date)) && can(formatdate("YYYY-MM-DD", "${var.go_live_date}T00:00:00Z"))
    error_message = "go_live_date must be a real calendar day written YYYY-MM-DD, e.g. 2026-03-10."
  }
}

variable "batch_subnet_cidr" {
  description = "Primary IPv4 range of the batch job's subnetwork (Direct VPC egress takes the job's addresses from it; Cloud Run asks for /26 or larger). Must not overlap subnet_cidr."
  type        = string
  default     = "10.42.1.0/26"

  validation {
    condition     = can(cidrhost(var.batch_subnet_cidr, 0)) && tonumber(split("/", var.batch_subnet_cidr)[1]) <= 26
    error_message = "batch_subnet_cidr must be an IPv4 CIDR block of /26 or larger (Cloud Run Direct VPC egress)."
  }
}
