# Network: a private subnetwork for the producer and consumer VMs and one for the batch Cloud Run
# job. Nothing has an external IP: Cloud NAT gives them egress to Binance, and Private Google
# Access reaches Google APIs without NAT.
#
# Two NAT gateways, two static addresses. Binance counts REST request weight per IP (6000 per
# minute, then 429 and 418 bans), so the producer's gap backfill and the batch (reconciliation,
# backfills) each leave from their own address: neither can spend the other's weight, and both
# are fixed addresses a Binance API allow-list can name (terraform/README.md, "Egress addresses").

resource "google_compute_network" "pipeline" {
  name                    = "binance-pipeline"
  auto_create_subnetworks = false

  depends_on = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "pipeline" {
  name          = "binance-pipeline-${var.region}"
  network       = google_compute_network.pipeline.id
  region        = var.region
  ip_cidr_range = var.subnet_cidr

  # Pub/Sub, BigQuery and Artifact Registry over Google's network, not through NAT.
  private_ip_google_access = true

  # Sampled flow logs: enough to investigate Binance connectivity problems, cheap at this volume.
  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "pipeline" {
  name    = "binance-pipeline"
  region  = var.region
  network = google_compute_network.pipeline.id
}

# The producer's egress address (the consumers share the subnetwork, but reach only Google APIs).
resource "google_compute_address" "producer_egress" {
  name         = "binance-pipeline-producer-egress"
  description  = "Egress address of the producer (Cloud NAT binance-pipeline): the IP Binance counts its REST weight against."
  region       = var.region
  address_type = "EXTERNAL"

  depends_on = [google_project_service.enabled]
}

# The batch job's egress address: daily runs and backfills spend the weight of this IP only.
resource "google_compute_address" "batch_egress" {
  name         = "binance-pipeline-batch-egress"
  description  = "Egress address of the batch Cloud Run job (Cloud NAT binance-pipeline-batch): the IP Binance counts its REST weight against."
  region       = var.region
  address_type = "EXTERNAL"

  depends_on = [google_project_service.enabled]
}

# The batch job's own subnetwork (Direct VPC egress takes its addresses from here; Cloud Run asks
# for /26 or larger), so that its own NAT gateway, and so its own address, serves it.
resource "google_compute_subnetwork" "batch" {
  name          = "binance-pipeline-batch-${var.region}"
  network       = google_compute_network.pipeline.id
  region        = var.region
  ip_cidr_range = var.batch_subnet_cidr

  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Egress for the VMs to Binance's websocket and REST hosts, from the producer's address only.
# A router may hold several NAT gateways as long as each subnetwork is served by one of them
# (LIST_OF_SUBNETWORKS; never ALL_SUBNETWORKS_*, which would claim the batch subnetwork too).
resource "google_compute_router_nat" "pipeline" {
  name                               = "binance-pipeline"
  router                             = google_compute_router.pipeline.name
  region                             = var.region
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.producer_egress.self_link]
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.pipeline.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Egress for the batch job, from the batch address only.
resource "google_compute_router_nat" "batch" {
  name                               = "binance-pipeline-batch"
  router                             = google_compute_router.pipeline.name
  region                             = var.region
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.batch_egress.self_link]
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.batch.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# Google's health checkers (autohealing) must reach the consumer's and producer's /healthz.
# Source ranges are Google's documented health-check ranges.
resource "google_compute_firewall" "health_checks" {
  name      = "binance-pipeline-allow-health-checks"
  network   = google_compute_network.pipeline.id
  direction = "INGRESS"

  source_ranges = ["35.191.0.0/16", "130.211.0.0/22"]
  target_tags   = ["binance-pipeline"]

  allow {
    protocol = "tcp"
    ports    = ["9100", "9101"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

# SSH only through Identity-Aware Proxy TCP forwarding (its documented source range); OS Login
# decides who may log in.
resource "google_compute_firewall" "iap_ssh" {
  count = var.allow_iap_ssh ? 1 : 0

  name      = "binance-pipeline-allow-iap-ssh"
  network   = google_compute_network.pipeline.id
  direction = "INGRESS"

  source_ranges = ["35.235.240.0/20"]
  target_tags   = ["binance-pipeline"]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}
