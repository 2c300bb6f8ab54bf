# What users need after apply: where to push images, what to query, where to look.

output "artifact_registry_repository" {
  description = "Docker repository to push the producer, consumer and batch images to (docker push <this>/producer:TAG)."
  value       = local.image_base
}

output "images" {
  description = "Full image references the deployment runs, per component, by digest (REPOSITORY/IMAGE@sha256:...)."
  value       = local.images
}

output "trade_topic" {
  description = "Pub/Sub topic of Trade messages (binary protobuf, schema from proto/proto/trade.proto)."
  value       = google_pubsub_topic.trades.id
}

output "gap_topic" {
  description = "Pub/Sub topic of Gap messages."
  value       = google_pubsub_topic.gaps.id
}

output "trade_subscription" {
  description = "The consumer's subscription on the trade topic."
  value       = google_pubsub_subscription.trades_bq.id
}

output "dead_letter_subscription" {
  description = "Subscription to inspect dead-lettered messages."
  value       = google_pubsub_subscription.dead_letter.id
}

output "trades_view" {
  description = "The table users query: one row per (symbol, trade_id)."
  value       = "${var.project_id}.${google_bigquery_dataset.market.dataset_id}.${google_bigquery_table.trades.table_id}"
}

output "kline_tables" {
  description = "Per-symbol kline tables, keyed by symbol."
  value       = { for k, t in google_bigquery_table.klines : local.kline_tables[k] => "${var.project_id}.${t.dataset_id}.${t.table_id}" }
}

output "producer_instance" {
  description = "Producer VM name (ssh: gcloud compute ssh NAME --zone ZONE --tunnel-through-iap)."
  value       = google_compute_instance.producer.name
}

output "consumer_instance_group" {
  description = "Consumer managed instance group."
  value       = google_compute_region_instance_group_manager.consumer.name
}

output "batch_job" {
  description = "Cloud Run job the DAG executes (gcloud run jobs execute NAME --region REGION --args=...)."
  value       = google_cloud_run_v2_job.batch.name
}

output "airflow_uri" {
  description = "Airflow web UI of the Composer environment."
  value       = google_composer_environment.pipeline.config[0].airflow_uri
}

output "composer_dag_prefix" {
  description = "Where the DAG files are uploaded."
  value       = google_composer_environment.pipeline.config[0].dag_gcs_prefix
}

output "nat_router" {
  description = "Cloud Router whose NAT gives the VMs and the batch their egress addresses (the addresses Binance sees)."
  value       = google_compute_router.pipeline.name
}

output "service_accounts" {
  description = "Service account e-mail of each component."
  value = {
    producer = google_service_account.producer.email
    consumer = google_service_account.consumer.email
    batch    = google_service_account.batch.email
    composer = google_service_account.composer.email
  }
}

output "egress_addresses" {
  description = "Static addresses Binance sees: the producer's and the batch job's (each has its own REST weight budget; name them in an API-key allow-list)."
  value = {
    producer = google_compute_address.producer_egress.address
    batch    = google_compute_address.batch_egress.address
  }
}
