# Compute: the producer VM, the consumer managed instance group, the batch Cloud Run job and the
# Artifact Registry repository their images come from.
#
# Producer and consumer run on Container-Optimized OS: the image is pulled from Artifact Registry
# and run by a systemd unit written by cloud-init (templates/container-service.yaml.tftpl). We do
# not use the gce-container-declaration metadata (the deprecated container startup agent).
#
# Beside each binary, a second unit runs the Google-Built OpenTelemetry Collector: it scrapes the
# binary's /metrics on the VM and writes them to Managed Service for Prometheus, where the PromQL
# alerts of monitoring.tf read them. COS has no Ops Agent (not supported there); Google documents
# the collector as a container on COS:
# https://cloud.google.com/stackdriver/docs/instrumentation/opentelemetry-collector-cos

resource "google_artifact_registry_repository" "images" {
  repository_id = local.artifact_repository_id
  location      = var.region
  format        = "DOCKER"
  description   = "Images of the binance-pipeline producer, consumer and batch."

  # Untagged images left by re-pushed tags are deleted after a week; tagged images are kept.
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "604800s"
    }
  }

  # Terraform runs images by digest: a rebuilt commit moves its tag, and the digest still deployed
  # (or the one to roll back to) must not be deleted as untagged. KEEP wins over DELETE.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [google_project_service.enabled]
}

locals {
  producer_env = merge(local.common_env, {
    METRICS_ADDR = "0.0.0.0:9100"
    # The resume point survives restarts and reboots (the unit mounts
    # /var/lib/binance-pipeline/producer of the boot disk there), so a restarted producer
    # backfills the trades of its downtime.
    PRODUCER_STATE_FILE = "/var/lib/producer/resume.json"
  })
  consumer_env = merge(local.common_env, {
    METRICS_ADDR = "0.0.0.0:9101"
  })
  batch_env = merge(local.common_env, {
    METRICS_ADDR = "0.0.0.0:9102"
  })

  # The port each VM binary serves /metrics and /healthz on, read back from the METRICS_ADDR it is
  # given: the unit opens it, the health check probes it and the collector scrapes it.
  metrics_ports = {
    producer = tonumber(regex("[0-9]+$", local.producer_env.METRICS_ADDR))
    consumer = tonumber(regex("[0-9]+$", local.consumer_env.METRICS_ADDR))
  }

  # The collector's configuration on each VM: scrape that binary, write to Managed Service for
  # Prometheus (tests/terraform/test_metrics.py holds it to the ports and the alerts' metrics).
  collector_config = {
    for name, port in local.metrics_ports : name => templatefile("${path.module}/templates/otel-collector.yaml.tftpl", {
      job                     = name
      port                    = port
      scrape_interval_seconds = var.metrics_scrape_interval_seconds
    })
  }
}

# ---------------------------------------------------------------------------------------------
# Producer: one VM. Each symbol must have exactly one active owner (the trade-id continuity
# tracker is per symbol), so the producer is a single instance, not a group that could briefly
# run two. Crashes are restarted by systemd; a silent producer pages through monitoring.tf.
resource "google_compute_instance" "producer" {
  name         = "binance-producer"
  machine_type = var.producer_machine_type
  zone         = var.zone
  tags         = ["binance-pipeline"]

  boot_disk {
    initialize_params {
      image = "cos-cloud/cos-stable"
      size  = 10
      type  = "pd-balanced"
    }
  }

  # No access_config block: no external IP. Egress goes through Cloud NAT (network.tf).
  network_interface {
    subnetwork = google_compute_subnetwork.pipeline.id
  }

  service_account {
    email  = google_service_account.producer.email
    scopes = ["cloud-platform"] # access is decided by IAM roles, not legacy scopes
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  # OS Login instead of metadata SSH keys; the COS agents ship container logs and VM health
  # metrics (node-problem-detector); our own metrics go through the collector unit.
  metadata = {
    enable-oslogin            = "TRUE"
    block-project-ssh-keys    = "true"
    google-logging-enabled    = "true"
    google-monitoring-enabled = "true"
    user-data = templatefile("${path.module}/templates/container-service.yaml.tftpl", {
      name                 = "producer"
      image                = local.images.producer
      registry_host        = local.registry_host
      env                  = local.producer_env
      health_port          = local.metrics_ports.producer
      stop_timeout_seconds = 30
      collector_image      = var.otel_collector_image
      collector_config     = local.collector_config.producer
    })
  }

  # Live-migrate on host maintenance rather than stop: a stop is a reconnect and a REST backfill.
  scheduling {
    on_host_maintenance = "MIGRATE"
    automatic_restart   = true
  }

  allow_stopping_for_update = true
  deletion_protection       = var.deletion_protection

  depends_on = [
    google_compute_router_nat.pipeline,
    google_artifact_registry_repository_iam_member.producer_reader,
    google_pubsub_topic_iam_member.trades_publisher_producer,
  ]
}

# ---------------------------------------------------------------------------------------------
# Consumer: a regional managed instance group. Chosen over a Cloud Run worker pool because the
# MIG gives autohealing on the consumer's own /livez (a wedged streaming pull is replaced, not
# only a crashed process), autoscaling on the subscription's backlog, and the same COS + systemd
# runtime as the producer; worker pools were still new in the provider when this was written.
resource "google_compute_instance_template" "consumer" {
  name_prefix  = "binance-consumer-"
  machine_type = var.consumer_machine_type
  tags         = ["binance-pipeline"]

  disk {
    source_image = "cos-cloud/cos-stable"
    disk_size_gb = 10
    disk_type    = "pd-balanced"
    boot         = true
    auto_delete  = true
  }

  # No access_config block: no external IP.
  network_interface {
    subnetwork = google_compute_subnetwork.pipeline.id
  }

  service_account {
    email  = google_service_account.consumer.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  # OS Login instead of metadata SSH keys; the COS agents ship container logs and VM health
  # metrics (node-problem-detector); our own metrics go through the collector unit.
  metadata = {
    enable-oslogin            = "TRUE"
    block-project-ssh-keys    = "true"
    google-logging-enabled    = "true"
    google-monitoring-enabled = "true"
    user-data = templatefile("${path.module}/templates/container-service.yaml.tftpl", {
      name                 = "consumer"
      image                = local.images.consumer
      registry_host        = local.registry_host
      env                  = local.consumer_env
      health_port          = local.metrics_ports.consumer
      stop_timeout_seconds = 60
      collector_image      = var.otel_collector_image
      collector_config     = local.collector_config.consumer
    })
  }

  scheduling {
    on_host_maintenance = "MIGRATE"
    automatic_restart   = true
  }

  # A new template (new image digest) is created before the old one is removed, so the MIG can roll.
  lifecycle {
    create_before_destroy = true
  }
}

# Autohealing probes /livez, not /healthz: /healthz is 503 for a BigQuery outage too (rows held,
# nothing acked), and recreating VMs cannot fix BigQuery, it only churns; /livez is 503 only for
# what a new process can fix (a streaming pull silent across a reopen). /healthz feeds alerts.
resource "google_compute_health_check" "consumer" {
  name                = "binance-consumer-livez"
  check_interval_sec  = 10
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 3

  http_health_check {
    port         = local.metrics_ports.consumer
    request_path = "/livez"
  }

  log_config {
    enable = true
  }
}

resource "google_compute_region_instance_group_manager" "consumer" {
  name               = "binance-consumer"
  region             = var.region
  base_instance_name = "binance-consumer"

  version {
    instance_template = google_compute_instance_template.consumer.id
  }

  # Replace an instance whose /livez fails; give a new one time to pull the image and start.
  auto_healing_policies {
    health_check      = google_compute_health_check.consumer.id
    initial_delay_sec = 180
  }

  # Roll new templates in without losing capacity: the subscription keeps being drained.
  update_policy {
    type                  = "PROACTIVE"
    minimal_action        = "REPLACE"
    max_surge_fixed       = 3
    max_unavailable_fixed = 0
  }

  depends_on = [
    google_compute_router_nat.pipeline,
    google_artifact_registry_repository_iam_member.consumer_reader,
    google_pubsub_subscription_iam_member.trades_subscriber_consumer,
  ]
}

# Scale on the trade subscription's backlog: N replicas share one subscription (the dedup
# guarantee lives in BigQuery, so extra replicas cannot create visible duplicates).
resource "google_compute_region_autoscaler" "consumer" {
  name   = "binance-consumer"
  region = var.region
  target = google_compute_region_instance_group_manager.consumer.id

  autoscaling_policy {
    min_replicas    = var.consumer_min_replicas
    max_replicas    = var.consumer_max_replicas
    cooldown_period = 180

    metric {
      name                       = "pubsub.googleapis.com/subscription/num_undelivered_messages"
      filter                     = "resource.type = pubsub_subscription AND resource.labels.subscription_id = \"${google_pubsub_subscription.trades_bq.name}\""
      single_instance_assignment = var.consumer_backlog_per_replica
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Batch: a Cloud Run job the Composer DAG executes with per-task args
# (`batch symbols`, `batch klines --date D --symbols S`, `batch check ...`, `batch reconcile ...`).
resource "google_cloud_run_v2_job" "batch" {
  name                = local.batch_job_name
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.batch.email
      timeout         = var.batch_task_timeout
      # The DAG retries at task level; one retry here covers a lost instance.
      max_retries = 1

      containers {
        image = local.images.batch
        # Default subcommand; the DAG overrides args per task.
        args = ["symbols"]

        dynamic "env" {
          for_each = local.batch_env
          content {
            name  = env.key
            value = env.value
          }
        }

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }
      }

      # Egress to Binance through the VPC, from the batch subnetwork, so it leaves from the batch
      # NAT's own address (network.tf): the batch never spends the producer's REST weight.
      vpc_access {
        network_interfaces {
          network    = google_compute_network.pipeline.id
          subnetwork = google_compute_subnetwork.batch.id
        }
        egress = "ALL_TRAFFIC"
      }
    }
  }

  depends_on = [google_project_service.enabled]
}
