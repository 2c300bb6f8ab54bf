"""The cloud-init template really renders (with Terraform's own templatefile) into a unit that
runs the image with the contract environment and opens only the health port."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml


IMAGE = "asia-northeast1-docker.pkg.dev/proj/binance-pipeline/{name}@sha256:" + "ab" * 32
COLLECTOR_IMAGE = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.137.0"
COLLECTOR_CONFIG = "receivers:\n  prometheus: {}\nexporters:\n  googlemanagedprometheus:\n"


def _render(template: Path, name: str, port: int, env: dict[str, str], workdir: Path) -> str:
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.fail("terraform is not installed")
    env_hcl = "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + "}"
    expression = (
        f'templatefile({json.dumps(str(template))}, {{name = "{name}", image = "{IMAGE.format(name=name)}", '
        f'registry_host = "asia-northeast1-docker.pkg.dev", env = {env_hcl}, health_port = {port}, '
        f"stop_timeout_seconds = 30, collector_image = {json.dumps(COLLECTOR_IMAGE)}, "
        f"collector_config = {json.dumps(COLLECTOR_CONFIG)}}})"
    )
    # `terraform console` evaluates built-in functions with no provider and no init.
    result = subprocess.run(
        [terraform, "console"], input=expression, cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"<<EOT\n(.*)\nEOT", result.stdout, re.S)
    assert match, result.stdout
    return match.group(1)


@pytest.mark.parametrize("name,port", [("producer", 9100), ("consumer", 9101)])
def test_template_renders_a_runnable_unit(tf_dir, tmp_path, name, port):
    env = {"TRADE_TOPIC": "binance-trades", "METRICS_ADDR": f"0.0.0.0:{port}", "BINANCE_WS_URL": "wss://x.example"}
    rendered = _render(tf_dir / "templates" / "container-service.yaml.tftpl", name, port, env, tmp_path)
    assert rendered.startswith("#cloud-config\n")
    config = yaml.safe_load(rendered)
    files = {f["path"]: f["content"] for f in config["write_files"]}
    env_lines = files[f"/etc/binance-pipeline/{name}.env"].splitlines()
    assert sorted(env_lines) == sorted(f"{k}={v}" for k, v in env.items())
    unit = files[f"/etc/systemd/system/{name}.service"]
    exec_start = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == [
        f"ExecStart=/usr/bin/docker run --rm --name={name} --network=host "
        f"--env-file=/etc/binance-pipeline/{name}.env "
        f"--volume=/var/lib/binance-pipeline/{name}:/var/lib/{name} {IMAGE.format(name=name)}"
    ]
    # The mounted state directory exists and belongs to the image's user before the start.
    assert (
        f"ExecStartPre=/bin/sh -c 'mkdir -p /var/lib/binance-pipeline/{name} && "
        f"chown 65532:65532 /var/lib/binance-pipeline/{name}'" in unit
    )
    opened = set(re.findall(r"--dport (\d+)", unit))
    assert opened == {str(port)}, f"only the health port may be opened, got {opened}"
    assert "Restart=always" in unit
    assert f"systemctl enable --now {name}.service" in config["runcmd"]
    # The collector: its configuration verbatim, its own restart-always unit, no port opened.
    assert files["/etc/binance-pipeline/otel-collector.yaml"] == COLLECTOR_CONFIG
    collector = files["/etc/systemd/system/otel-collector.service"]
    assert f" {COLLECTOR_IMAGE} --config=" in collector and "Restart=always" in collector
    assert "--dport" not in collector
    assert config["runcmd"].index(f"systemctl enable --now {name}.service") < config["runcmd"].index(
        "systemctl enable --now otel-collector.service"
    )


def test_vms_pass_the_template_the_right_arguments(tf):
    for rtype, name in (("google_compute_instance", "producer"), ("google_compute_instance_template", "consumer")):
        user_data = tf.resource(rtype, name)["metadata"]["user-data"]
        assert 'templatefile("${path.module}/templates/container-service.yaml.tftpl"' in user_data
        for argument in (
            "name", "image", "registry_host", "env", "health_port", "stop_timeout_seconds", "collector_image",
            "collector_config",
        ):  # fmt: skip
            assert re.search(rf"\b{argument} = ", user_data), f"{name} does not pass {argument}"
        assert f'name = "{name}"' in user_data
        assert "collector_image = var.otel_collector_image" in user_data
        assert f"collector_config = local.collector_config.{name}" in user_data
