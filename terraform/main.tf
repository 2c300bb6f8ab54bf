# Project-wide pieces: the APIs every other file needs, and names shared between files.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Names the binaries and the DAG expect by default (see the contract in README.md). They are
  # fixed here rather than made variables: renaming one would need the same change in the code.
  trade_topic_name              = "binance-trades"
  trade_subscription_name       = "binance-trades-bq"
  gap_topic_name                = "binance-gaps"
  gap_subscription_name         = "binance-gaps-bq"
  dead_letter_topic_name        = "binance-trades-dead-letter"
  dead_letter_subscription_name = "binance-trades-dead-letter-sub"
  artifact_repository_id        = "binance-pipeline"
  batch_job_name                = "binance-batch"

  market_dataset_id = "market"
  dwh_dataset_id    = "dwh"
  scd_dataset_id    = "scd"

  # One kline table per symbol: dwh.klines_btcusdt, ... keyed by the lower-case symbol.
  kline_tables = { for s in var.symbols : lower(s) => s }

  # Docker host of the Artifact Registry repository, e.g. asia-northeast1-docker.pkg.dev.
  registry_host = "${var.region}-docker.pkg.dev"
  image_base    = "${local.registry_host}/${var.project_id}/${local.artifact_repository_id}"
  # By digest: the VMs, the group and the job run exactly the build scripts/deploy pushed.
  images = {
    producer = "${local.image_base}/producer@${var.producer_image_digest}"
    consumer = "${local.image_base}/consumer@${var.consumer_image_digest}"
    batch    = "${local.image_base}/batch@${var.batch_image_digest}"
  }

  # The Composer service agent must be allowed to act for the environment's own service account.
  composer_service_agent = "serviceAccount:service-${data.google_project.this.number}@cloudcomposer-accounts.iam.gserviceaccount.com"

  # Environment shared by the three binaries (names from the shared contract).
  common_env = {
    GCP_PROJECT        = var.project_id
    TRADE_TOPIC        = local.trade_topic_name
    GAP_TOPIC          = local.gap_topic_name
    TRADE_SUBSCRIPTION = local.trade_subscription_name
    GAP_SUBSCRIPTION   = local.gap_subscription_name
    DEAD_LETTER_TOPIC  = local.dead_letter_topic_name
    SYMBOLS            = join(",", var.symbols)
    BQ_MARKET_DATASET  = local.market_dataset_id
    BQ_DWH_DATASET     = local.dwh_dataset_id
    BQ_SCD_DATASET     = local.scd_dataset_id
    BINANCE_WS_URL     = var.binance_ws_url
    BINANCE_REST_URL   = var.binance_rest_url
    LOG_FORMAT         = "json"
  }
}

# Every API the pipeline uses. disable_on_destroy = false: turning an API off on destroy would
# break anything else in the project that uses it.
resource "google_project_service" "enabled" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "composer.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}
