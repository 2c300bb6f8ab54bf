# Network: a private subnetwork for the producer and consumer VMs. They have no external IP, so
# Cloud NAT gives them egress to Binance, and Private Google Access reaches Google APIs without NAT.

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

# Egress for the VMs to Binance's websocket and REST hosts. Binance rate-limits per IP; one
# regional NAT keeps the producer's address range small and stable.
resource "google_compute_router_nat" "pipeline" {
  name                               = "binance-pipeline"
  router                             = google_compute_router.pipeline.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
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
