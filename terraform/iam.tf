# Service accounts and IAM: one account per component, each role bound on the resource the call
# acts on (topic, subscription, dataset, table, repository, job) wherever the API allows.
# terraform/iam/permissions.yaml lists every Google call the code makes and the permission it
# needs; tests/terraform/test_iam_proof.py proves these bindings against it and docs/iam.md is the
# readable table. Project-level bindings are only those whose resource is the project (log and
# metric writing, BigQuery jobs, Cloud Run operations, Composer worker). No primitive roles, no
# service-account keys: every workload gets its credentials from the metadata server.

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
  description  = "Composer environment: runs the daily DAG, which executes the batch Cloud Run job with per-step arguments."
}

# --- Logs and metrics (project-level only: these APIs have no resource-level IAM) -------------
# The VMs' Container-Optimized OS agents ship container logs and VM metrics as the VM's service
# account. Cloud Run collects the batch job's logs and metrics itself, so batch needs neither.
locals {
  telemetry_bindings = {
    producer-logWriter    = { component = "producer", role = "roles/logging.logWriter" }
    producer-metricWriter = { component = "producer", role = "roles/monitoring.metricWriter" }
    consumer-logWriter    = { component = "consumer", role = "roles/logging.logWriter" }
    consumer-metricWriter = { component = "consumer", role = "roles/monitoring.metricWriter" }
  }
  component_accounts = {
    producer = google_service_account.producer.email
    consumer = google_service_account.consumer.email
  }
}

resource "google_project_iam_member" "telemetry" {
  for_each = local.telemetry_bindings

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${local.component_accounts[each.value.component]}"
}

# --- Artifact Registry: the VMs pull only from our repository ---------------------------------
# The batch job needs no grant: Cloud Run imports its image at deploy time (as the deployer and
# its own service agent), not as the job's account.
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

# No grant to the Pub/Sub service agent: no subscription has a dead-letter policy (pubsub.tf says
# why), so the agent forwards nothing.

# --- BigQuery -----------------------------------------------------------------------------------
# Consumer: appends trades and gaps through the Storage Write API, which needs
# bigquery.tables.updateData on the table written: Data Editor on those two tables, nothing
# dataset-wide (it must not replace the trades view or the trades_between function).
resource "google_bigquery_table_iam_member" "market_editor_consumer" {
  for_each = {
    trades_raw = google_bigquery_table.trades_raw.table_id
    gaps       = google_bigquery_table.gaps.table_id
  }

  dataset_id = google_bigquery_dataset.market.dataset_id
  table_id   = each.value
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.consumer.email}"
}

# Batch, dwh: creates, fills (Storage Write), merges from and drops a staging table per load, so
# it needs bigquery.tables.create in the dataset: dataset-level Data Editor is the only form.
resource "google_bigquery_dataset_iam_member" "dwh_editor_batch" {
  dataset_id = google_bigquery_dataset.dwh.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

# Batch, scd: MERGEs the type-2 history into its one table.
resource "google_bigquery_table_iam_member" "scd_history_editor_batch" {
  dataset_id = google_bigquery_dataset.scd.dataset_id
  table_id   = google_bigquery_table.symbols_history.table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

# Batch, market: appends reconciled trades (source "batch") to trades_raw, and reads the trades
# view, which also needs read access to trades_raw (the editor grant includes it).
resource "google_bigquery_table_iam_member" "trades_raw_editor_batch" {
  dataset_id = google_bigquery_dataset.market.dataset_id
  table_id   = google_bigquery_table.trades_raw.table_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

# Batch, market: batch history MERGEs the per-day completeness into coverage and the id ranges it
# could not fill into gaps (insert only); table-level, like the consumer's grants.
resource "google_bigquery_table_iam_member" "market_editor_batch" {
  for_each = {
    coverage = google_bigquery_table.coverage.table_id
    gaps     = google_bigquery_table.gaps.table_id
  }

  dataset_id = google_bigquery_dataset.market.dataset_id
  table_id   = each.value
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

resource "google_bigquery_table_iam_member" "trades_view_viewer_batch" {
  dataset_id = google_bigquery_dataset.market.dataset_id
  table_id   = google_bigquery_table.trades.table_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.batch.email}"
}

# Query jobs (MERGE, DDL, checks) are project resources: jobUser has no narrower form. The
# consumer writes through the Storage Write API and the DAG runs no BigQuery operator, so only
# the batch needs it.
resource "google_project_iam_member" "bigquery_job_user_batch" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.batch.email}"
}

# --- Cloud Run: Composer executes the batch job with per-step arguments, and only that job ------
# CloudRunExecuteJobOperator calls jobs.run with overrides (run.jobs.run and
# run.jobs.runWithOverrides), waits on the returned operation (run.operations.get) and then reads
# the job (run.jobs.get). Cloud Run Invoker lacks runWithOverrides; Jobs Executor With Overrides
# lacks jobs.get and has no job-level form; Cloud Run Developer could also update and delete the
# job. A custom role with exactly the three job permissions, bound on the job, is the narrowest.
resource "google_project_iam_custom_role" "batch_job_runner" {
  project     = var.project_id
  role_id     = "binancePipelineBatchJobRunner"
  title       = "binance-pipeline batch job runner"
  description = "Execute the binance-batch Cloud Run job with argument overrides and read it (CloudRunExecuteJobOperator). Bound on that job only."
  permissions = [
    "run.jobs.get",
    "run.jobs.run",
    "run.jobs.runWithOverrides",
  ]

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_job_iam_member" "batch_runner_composer" {
  name     = google_cloud_run_v2_job.batch.name
  location = google_cloud_run_v2_job.batch.location
  role     = google_project_iam_custom_role.batch_job_runner.name
  member   = "serviceAccount:${google_service_account.composer.email}"
}

# Operations (projects/P/locations/L/operations/ID) are not children of the job, so polling them
# needs a project-level grant; this role holds run.operations.get and nothing else (Cloud Run
# Viewer would add read access to every service, job and IAM policy in the project).
resource "google_project_iam_custom_role" "run_operations_reader" {
  project     = var.project_id
  role_id     = "binancePipelineRunOperationsReader"
  title       = "binance-pipeline Cloud Run operations reader"
  description = "Poll the long-running operation of a Cloud Run job execution (CloudRunExecuteJobOperator waits on it)."
  permissions = ["run.operations.get"]

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "run_operations_composer" {
  project = var.project_id
  role    = google_project_iam_custom_role.run_operations_reader.name
  member  = "serviceAccount:${google_service_account.composer.email}"
}

# --- Composer -----------------------------------------------------------------------------------
# Required of every Composer environment's service account; granted at project level only. It is
# broad (project-wide Pub/Sub, Storage, GKE permissions; docs/iam.md lists them): Google requires
# it by name, and the proof records it as the one accepted wide grant.
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
