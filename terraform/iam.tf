# Service accounts and IAM: one account per component, roles bound on the resource they act on
# (topic, subscription, dataset, table, repository, job) wherever the API allows. Project-level
# bindings are only the ones that have no resource-level form (log/metric writing, BigQuery jobs,
# Composer worker). No primitive roles, no service-account keys: every workload gets its
# credentials from the metadata server.

resource "google_service_account" "producer" {
  account_id   = "binance-producer"
  display_name = "binance-pipeline producer"
  description  = "Producer VM: publishes trades and gaps."
}

resource "google_service_account" "consumer" {
  account_id   = "binance-consumer"
  display_name = "binance-pipeline consumer"
  description  = "Consumer MIG: pulls trades and gaps, appends them to BigQuery market, dead-letters poison messages."
}

resource "google_service_account" "batch" {
  account_id   = "binance-batch"
  display_name = "binance-pipeline batch"
  description  = "Batch Cloud Run job: klines, symbol dimension and SCD history, load checks and reconciliation."
}

resource "google_service_account" "composer" {
  account_id   = "binance-composer"
  display_name = "binance-pipeline Composer"
  description  = "Composer environment: runs the daily DAG, executes the batch job, runs BigQuery checks."
}

# --- Logs and metrics (project-level only: these APIs have no resource-level IAM) -------------
locals {
  telemetry_roles = ["roles/logging.logWriter", "roles/monitoring.metricWriter"]
  telemetry_bindings = {
    for pair in setproduct(["producer", "consumer", "batch"], local.telemetry_roles) :
    "${pair[0]}-${pair[1]}" => { component = pair[0], role = pair[1] }
  }
  component_accounts = {
    producer = google_service_account.producer.email
    consumer = google_service_account.consumer.email
    batch    = google_service_account.batch.email
  }
}

resource "google_project_iam_member" "telemetry" {
  for_each = local.telemetry_bindings

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${local.component_accounts[each.value.component]}"
}

# --- Artifact Registry: each runtime pulls only from our repository ---------------------------
resource "google_artifact_registry_repository_iam_member" "producer_reader" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.producer.email}"
}

resource "google_artifact_registry_repository_iam_member" "consumer_reader" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_artifact_registry_repository_iam_member" "batch_reader" {
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

# --- Pub/Sub ------------------------------------------------------------------------------------
# Producer: publish trades and gaps, nothing else.
resource "google_pubsub_topic_iam_member" "trades_publisher_producer" {
  topic  = google_pubsub_topic.trades.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.producer.email}"
}

resource "google_pubsub_topic_iam_member" "gaps_publisher_producer" {
  topic  = google_pubsub_topic.gaps.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.producer.email}"
}

# Consumer: pull its two subscriptions; publish undecodable messages to the dead-letter topic
# itself (with the reason), as the emulator has no dead-letter policy.
resource "google_pubsub_subscription_iam_member" "trades_subscriber_consumer" {
  subscription = google_pubsub_subscription.trades_bq.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_pubsub_subscription_iam_member" "gaps_subscriber_consumer" {
  subscription = google_pubsub_subscription.gaps_bq.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.consumer.email}"
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher_consumer" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.consumer.email}"
}

# Pub/Sub service agent: forward messages past max_delivery_attempts to the dead-letter topic
# (publisher there) and ack them on the source subscriptions (subscriber there).
resource "google_pubsub_topic_iam_member" "dead_letter_publisher_pubsub_agent" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "trades_subscriber_pubsub_agent" {
  subscription = google_pubsub_subscription.trades_bq.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "gaps_subscriber_pubsub_agent" {
  subscription = google_pubsub_subscription.gaps_bq.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# --- BigQuery -----------------------------------------------------------------------------------
# Consumer: append trades and gaps (Storage Write API needs tables.updateData: data editor).
resource "google_bigquery_dataset_iam_member" "market_editor_consumer" {
  dataset_id = google_bigquery_dataset.market.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.consumer.email}"
}

# Batch: owns the warehouse and SCD datasets' data; reads market for the reconciliation, and may
# append reconciled trades (source "batch") and gap rows (reporter "batch") to those two tables.
resource "google_bigquery_dataset_iam_member" "dwh_editor_batch" {
  dataset_id = google_bigquery_dataset.dwh.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_bigquery_dataset_iam_member" "scd_editor_batch" {
  dataset_id = google_bigquery_dataset.scd.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_bigquery_dataset_iam_member" "market_viewer_batch" {
  dataset_id = google_bigquery_dataset.market.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_bigquery_table_iam_member" "trades_raw_editor_batch" {
  dataset_id = google_bigquery_dataset.market.dataset_id
  table_id   = google_bigquery_table.trades_raw.table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_bigquery_table_iam_member" "gaps_editor_batch" {
  dataset_id = google_bigquery_dataset.market.dataset_id
  table_id   = google_bigquery_table.gaps.table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

# Composer: the DAG's BigQuery check operators read all three datasets.
resource "google_bigquery_dataset_iam_member" "viewer_composer" {
  for_each = {
    market = google_bigquery_dataset.market.dataset_id
    dwh    = google_bigquery_dataset.dwh.dataset_id
    scd    = google_bigquery_dataset.scd.dataset_id
  }

  dataset_id = each.value
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.composer.email}"
}

# Query jobs (MERGE, DDL, checks) are project resources: jobUser has no narrower form. The
# consumer writes through the Storage Write API and needs no job role.
resource "google_project_iam_member" "bigquery_job_user" {
  for_each = {
    batch    = google_service_account.batch.email
    composer = google_service_account.composer.email
  }

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${each.value}"
}

# --- Cloud Run: Composer may execute (with per-task args) the batch job, and only that job ----
resource "google_cloud_run_v2_job_iam_member" "batch_runner_composer" {
  name     = google_cloud_run_v2_job.batch.name
  location = google_cloud_run_v2_job.batch.location
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.composer.email}"
}

# CloudRunExecuteJobOperator waits on the long-running operation; run.operations.get is granted
# only at project level (roles/run.viewer is read-only).
resource "google_project_iam_member" "run_viewer_composer" {
  project = var.project_id
  role    = "roles/run.viewer"
  member  = "serviceAccount:${google_service_account.composer.email}"
}

# --- Composer -----------------------------------------------------------------------------------
# Required of every Composer environment's service account; granted at project level only.
resource "google_project_iam_member" "composer_worker" {
  # checkov:skip=CKV_GCP_49:Cloud Composer requires roles/composer.worker on the environment's service account at project level; the role has no resource-level binding.
  project = var.project_id
  role    = "roles/composer.worker"
  member  = "serviceAccount:${google_service_account.composer.email}"
}

# Composer's service agent creates the environment's workloads as our service account.
resource "google_service_account_iam_member" "composer_agent_ext" {
  service_account_id = google_service_account.composer.name
  role               = "roles/composer.ServiceAgentV2Ext"
  member             = local.composer_service_agent

  # The agent exists only once the Composer API is on.
  depends_on = [google_project_service.enabled]
}
