# Composer 3: runs the daily DAG (dags/binance_daily.py), which executes the batch Cloud Run job
# per step and checks the loads with BigQuery operators.

resource "google_composer_environment" "pipeline" {
  name   = "binance-pipeline"
  region = var.region

  config {
    environment_size = var.composer_environment_size

    software_config {
      image_version = var.composer_image_version

      # What the DAG reads with os.environ. GCP_PROJECT is set by Composer itself (reserved name),
      # so it is not repeated here.
      env_variables = {
        BATCH_JOB_NAME    = google_cloud_run_v2_job.batch.name
        BATCH_JOB_REGION  = google_cloud_run_v2_job.batch.location
        BQ_MARKET_DATASET = google_bigquery_dataset.market.dataset_id
        BQ_DWH_DATASET    = google_bigquery_dataset.dwh.dataset_id
        BQ_SCD_DATASET    = google_bigquery_dataset.scd.dataset_id
        SYMBOLS           = join(",", var.symbols)
        # The DAG's start_date: no run is scheduled for a day before it (dags/binance_daily.py).
        PIPELINE_START_DATE = var.go_live_date
      }
    }

    node_config {
      service_account = google_service_account.composer.email
    }

    # Who may reach the Airflow web UI at the network level (docs/iam.md). Without this block
    # Composer applies no network restriction; an empty variable is therefore turned into an
    # allow-list that no internet address matches, never into an absent one.
    web_server_network_access_control {
      dynamic "allowed_ip_range" {
        for_each = length(var.composer_web_server_allowed_ip_ranges) > 0 ? var.composer_web_server_allowed_ip_ranges : [local.composer_web_server_nobody]
        content {
          value       = allowed_ip_range.value
          description = allowed_ip_range.value == local.composer_web_server_nobody ? "no address: set composer_web_server_allowed_ip_ranges" : "composer_web_server_allowed_ip_ranges"
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.composer_worker,
    google_service_account_iam_member.composer_agent_ext,
  ]
}

locals {
  # TEST-NET-1 (RFC 5737): reserved for documentation, never routed on the internet.
  composer_web_server_nobody = "192.0.2.0/24"

  # dag_gcs_prefix looks like gs://BUCKET/dags.
  composer_bucket = split("/", trimprefix(google_composer_environment.pipeline.config[0].dag_gcs_prefix, "gs://"))[0]
  dag_files       = fileset("${path.module}/../dags", "*.py")
}

# Every top-level .py in dags/ goes to the environment's dags/ folder. The content is part of the
# resource, so an edited DAG is re-uploaded on the next apply.
resource "google_storage_bucket_object" "dags" {
  for_each = local.dag_files

  bucket       = local.composer_bucket
  name         = "dags/${each.value}"
  content      = file("${path.module}/../dags/${each.value}")
  content_type = "text/x-python"
}
