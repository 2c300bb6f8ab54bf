"""Our metrics in Cloud Monitoring: the collector Terraform puts on each VM scrapes the port the
binary serves (from the Rust default and the METRICS_ADDR Terraform gives it, not a copy), writes
to Managed Service for Prometheus, and every PromQL alert names metrics the binaries expose,
with the sample suffix of their kind and labels they carry.

The cloud-init is Terraform's own rendering (tfeval: templatefile through `terraform console`);
the metrics are read from producer/src/metrics.rs and consumer/src/metrics.rs (rustmetrics).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

import rustmetrics
import tfeval
from tfmodel import block, blocks

# The Rust sources are the repository's, also when the structural tests run on a copy of terraform/.
REPO_ROOT = Path(__file__).resolve().parents[2]
VMS = {"producer": "google_compute_instance", "consumer": "google_compute_instance_template"}
COLLECTOR_CONFIG = "/etc/binance-pipeline/otel-collector.yaml"
COLLECTOR_UNIT = "/etc/systemd/system/otel-collector.service"
# Labels of the prometheus_target resource every sample gets in Managed Service for Prometheus
# (the googlemanagedprometheus exporter's mapping), queryable like metric labels; a metric label
# of the same name would be rejected.
GMP_RESOURCE_LABELS = {"project_id", "location", "cluster", "namespace", "job", "instance"}
PROMQL_FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "absent",
    "absent_over_time", "max_over_time", "min_over_time", "avg_over_time", "vector", "clamp_min", "time",
}  # fmt: skip
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


@pytest.fixture(scope="module")
def binaries():
    return rustmetrics.load(REPO_ROOT)


@pytest.fixture(scope="module")
def evaluator(tf, tf_dir):
    return tfeval.Evaluator(tf, tf_dir)


@pytest.fixture(scope="module")
def cloud_init(tf, evaluator):
    """Per VM: the cloud-init Terraform renders, as files by path plus runcmd."""
    rendered = {}
    for name, rtype in VMS.items():
        user_data = tf.resource(rtype, name)["metadata"]["user-data"]
        config = yaml.safe_load(evaluator.evaluate(tfeval.to_hcl(user_data)))
        rendered[name] = {"files": {f["path"]: f["content"] for f in config["write_files"]}, "runcmd": config["runcmd"]}
    return rendered


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@pytest.mark.parametrize("name", sorted(VMS))
def test_the_collector_scrapes_the_port_the_binary_serves(name, evaluator, cloud_init):
    rust_port = _port(rustmetrics.metrics_addr_default(REPO_ROOT, name))
    given_port = _port(evaluator.local(f"{name}_env")["METRICS_ADDR"])
    assert given_port == rust_port, f"Terraform gives {name} METRICS_ADDR port {given_port}, its default is {rust_port}"
    assert evaluator.local("metrics_ports")[name] == given_port

    files = cloud_init[name]["files"]
    collector = yaml.safe_load(files[COLLECTOR_CONFIG])
    (job,) = collector["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert job["job_name"] == name
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"127.0.0.1:{rust_port}"], f"the {name} collector scrapes {targets}, the binary serves :{rust_port}"
    # The port the unit opens and the consumer's health check probe are the same one.
    unit = files[f"/etc/systemd/system/{name}.service"]
    assert set(re.findall(r"--dport (\d+)", unit)) == {str(rust_port)}


def test_the_consumer_health_check_probes_the_metrics_port(tf, evaluator):
    check = block(tf.resource("google_compute_health_check", "consumer"), "http_health_check")
    port = evaluator.evaluate(tfeval.to_hcl(check["port"]))
    assert port == _port(rustmetrics.metrics_addr_default(REPO_ROOT, "consumer"))


@pytest.mark.parametrize("name", sorted(VMS))
def test_the_collector_writes_to_managed_prometheus_as_its_own_unit(name, tf, cloud_init):
    files = cloud_init[name]["files"]
    collector = yaml.safe_load(files[COLLECTOR_CONFIG])
    pipelines = collector["service"]["pipelines"]
    assert list(pipelines) == ["metrics"], pipelines
    pipeline = pipelines["metrics"]
    assert pipeline["receivers"] == ["prometheus"], "only the scrape: no receiver that listens on a port"
    assert set(collector["receivers"]) == {"prometheus"}
    assert pipeline["exporters"] == ["googlemanagedprometheus"]
    interval = collector["receivers"]["prometheus"]["config"]["scrape_configs"][0]["scrape_interval"]
    assert interval == f"{tf.variables['metrics_scrape_interval_seconds']['default']}s"
    # instance = the VM's name (resourcedetection's host.name), set after it is detected: the
    # consumers of the group all scrape 127.0.0.1 and would otherwise be one colliding target.
    processors = pipeline["processors"]
    assert collector["processors"]["resourcedetection"]["detectors"] == ["gcp"]
    assert {"key": "service.instance.id", "from_attribute": "host.name", "action": "upsert"} in collector["processors"][
        "resource"
    ]["attributes"]
    assert processors.index("resourcedetection") < processors.index("resource")
    assert processors[0] == "memory_limiter"
    assert collector["service"]["telemetry"]["metrics"]["level"] == "none", "no internal metrics port on the VM"

    unit = files[COLLECTOR_UNIT]
    (start,) = [shlex.split(line.split("=", 1)[1]) for line in unit.splitlines() if line.startswith("ExecStart=")]
    image = tf.variables["otel_collector_image"]["default"]
    assert start[:3] == ["/usr/bin/docker", "run", "--rm"] and "--network=host" in start
    assert start[start.index(image) + 1 :] == ["--config=/etc/otelcol/config.yaml"]
    assert f"--volume={COLLECTOR_CONFIG}:/etc/otelcol/config.yaml:ro" in start
    assert "Restart=always" in unit.splitlines()
    assert "--dport" not in unit, "the collector only connects out"
    assert "systemctl enable --now otel-collector.service" in cloud_init[name]["runcmd"]


def test_the_vm_accounts_may_write_metrics(tf):
    bindings = tf.locals["telemetry_bindings"].values()
    for name in VMS:
        assert {"component": name, "role": "roles/monitoring.metricWriter"} in bindings, (
            f"the {name} VM's collector needs roles/monitoring.metricWriter: {list(bindings)}"
        )
    for name in VMS:
        vm = tf.resource(VMS[name], name)
        assert block(vm, "service_account")["email"] == f"${{google_service_account.{name}.email}}"


# ---------------------------------------------------------------------------------------------
# The metrics the binaries expose (rustmetrics) and what the alerts ask for


def test_the_rust_sources_are_read_completely(binaries):
    for binary in binaries.values():
        assert len(binary.metrics) >= 8, f"{binary.source}: only {len(binary.metrics)} metrics found"
        assert binary.labels, f"{binary.source}: no label names found"
        # Every sample name the Rust unit tests assert on the real exposition is one we derive.
        assert binary.test_needles, f"{binary.source}: the Rust tests name no metric: the cross-check is empty"
        unknown = {n for n in binary.test_needles if binary.sample(n) is None}
        assert not unknown, f"{binary.source}: the Rust tests see {unknown}, which the parser does not derive"


def test_no_label_collides_with_managed_prometheus_resource_labels(binaries):
    for binary in binaries.values():
        assert not binary.labels & GMP_RESOURCE_LABELS, (
            f"{binary.name} uses {binary.labels & GMP_RESOURCE_LABELS}, reserved for the prometheus_target resource"
        )


def promql_conditions(tf):
    for name, body in tf.of_type("google_monitoring_alert_policy").items():
        for condition in blocks(body, "conditions"):
            inner = block(condition, "condition_prometheus_query_language")
            if inner:
                yield name, body, inner, tf.resolve(tfeval.heredoc(inner["query"]))


def promql_references(query: str) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """(metric names, label names, (range function, metric) pairs) of a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}", "", text)
    for words in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {w.strip() for w in words.split(",") if w.strip()}
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    ranged = set(re.findall(r"\b(rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", text))
    text = re.sub(r"\[[^\]]*\]", "", text)
    metrics = set()
    for found in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = found.group(1), found.group(2)
        if word in PROMQL_FUNCTIONS or word in PROMQL_KEYWORDS:
            continue  # an aggregation may be followed by `by (...)` before its parenthesis
        assert not call, f"unknown PromQL function {word}() in {query}"
        metrics.add(word)
    return metrics, labels, ranged


def test_the_promql_reader_finds_metrics_labels_and_rates():
    metrics, labels, ranged = promql_references(
        'sum by (instance) (rate(a_total{table="x",b!="y"}[5m])) > 2 unless on (instance) max(c) or absent(d)'
    )
    assert metrics == {"a_total", "c", "d"}
    assert labels == {"instance", "table", "b"}
    assert ranged == {("rate", "a_total")}


def test_every_alert_query_names_metrics_the_binaries_expose(tf, binaries):
    conditions = list(promql_conditions(tf))
    assert len(conditions) >= 4, "expected PromQL alerts on our own metrics"
    for policy, _, _, query in conditions:
        metrics, labels, ranged = promql_references(query)
        assert metrics, f"{policy}: the query names no metric: {query}"
        owners = {}
        for name in metrics:
            owner = next((b for b in binaries.values() if b.sample(name)), None)
            assert owner, (
                f"{policy}: {name} is not exposed by the producer or the consumer (counters end in _total, "
                f"histograms are read through _bucket/_sum/_count): {query}"
            )
            owners[name] = owner
        allowed = GMP_RESOURCE_LABELS.union(*(b.labels for b in owners.values()))
        if any(name.endswith("_bucket") and owners[name].sample(name).kind == "histogram" for name in metrics):
            allowed |= {"le"}
        assert labels <= allowed, f"{policy}: labels {labels - allowed} are not on these metrics: {query}"
        for function, name in ranged:
            metric = owners[name].sample(name)
            assert metric.kind in ("counter", "histogram"), f"{policy}: {function}() of the {metric.kind} {name}"
        if "histogram_quantile" in query:
            assert re.search(r"histogram_quantile\([^,]+,.*\bby\s*\([^)]*\ble\b", query), f"{policy}: quantile without le"


# What only our binaries know, and the alert that watches it: (metric family, what it means).
OUR_ALERTS = {
    "producer_gap_ids_outstanding": "ids waiting for backfill",
    "consumer_exchange_to_bigquery_seconds": "exchange to BigQuery latency",
    "producer_connected": "producer disconnected",
    "consumer_rows_appended": "consumer not acking",
}


def test_what_only_we_know_pages_someone(tf, binaries):
    families = {}
    for policy, body, inner, query in promql_conditions(tf):
        metrics, _, _ = promql_references(query)
        for name in metrics:
            for binary in binaries.values():
                if binary.sample(name):
                    families.setdefault(binary.sample(name).family, []).append((policy, body, inner))
    for family, what in OUR_ALERTS.items():
        assert family in families, f"no alert on {family} ({what})"
        for policy, body, inner in families[family]:
            assert body["notification_channels"] == "${local.notification_channels}", policy
            assert len(block(body, "documentation")["content"]) > 200, f"{policy}: runbook text too short"
            # The metrics exist only after the collector's first write, after the VMs start.
            assert inner.get("disable_metric_validation") is True, policy
            assert re.fullmatch(r"\$\{.*\}s|\d+s", inner["duration"]), policy


def test_the_latency_alert_is_the_p99_above_the_threshold(tf):
    (query,) = [q for _, _, _, q in promql_conditions(tf) if "exchange_to_bigquery" in q]
    threshold = tf.variables["exchange_to_bigquery_p99_alert_seconds"]["default"]
    assert threshold == 5
    assert re.fullmatch(r"histogram_quantile\(0\.99, .*\) > " + str(threshold), query.strip()), query
