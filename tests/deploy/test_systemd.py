"""The cloud-init Terraform gives the producer VM and the consumer instances, rendered with
Terraform's own templatefile() and the arguments compute.tf passes: the systemd unit passes
`systemd-analyze verify`, restarts always, runs the image Terraform names with the environment
Terraform sets, and gives the binary time to flush after SIGTERM before it is killed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import deploymodel
import tfeval
from conftest import CONTRACT_PORTS

VMS = {"producer": "google_compute_instance", "consumer": "google_compute_instance_template"}
# Time between the binary's flush deadline and docker's SIGKILL: process exit, the last
# Pub/Sub/BigQuery round trip, Docker's own bookkeeping.
STOP_MARGIN_SECONDS = 5
# The binaries' flush deadline on SIGTERM (their --help names it; each has an env fallback).
SHUTDOWN_ENV = {"producer": "PRODUCER_SHUTDOWN_DEADLINE", "consumer": "SHUTDOWN_DEADLINE"}


@pytest.fixture(scope="module")
def evaluator(tf, root):
    return tfeval.Evaluator(tf, root / "terraform", {"project_id": deploymodel.PLACEHOLDER_PROJECT})


@pytest.fixture(scope="module", params=sorted(VMS))
def rendered(request, tf, evaluator):
    """The VM's user-data exactly as Terraform renders it (its templatefile call, evaluated)."""
    name = request.param
    call = deploymodel.template_call(tf, VMS[name], name)
    common, specific = deploymodel.component_env(tf, name)
    variables = {
        "name": name,
        "image": evaluator.local("images")[name],
        "env": {**common, **specific},
        "health_port": evaluator.local("metrics_ports")[name],
        "stop_timeout_seconds": int(call["stop_timeout_seconds"]),
    }
    assert evaluator.local(f"{name}_env") == variables["env"]
    text = evaluator.evaluate(tfeval.to_hcl(tf.resource(VMS[name], name)["metadata"]["user-data"]))
    config = yaml.safe_load(text)
    files = {f["path"]: f for f in config["write_files"]}
    return {
        "name": name,
        "vars": variables,
        "config": config,
        "unit": files[f"/etc/systemd/system/{name}.service"]["content"],
        "collector_unit": files["/etc/systemd/system/otel-collector.service"]["content"],
        "env_file": files[f"/etc/binance-pipeline/{name}.env"]["content"],
        "resource": tf.resource(VMS[name], name),
    }


def _fake_cos_root(base: Path) -> Path:
    """A root with the host's stock units, a docker.service, and stand-ins for the executables
    the unit names (present on COS, not here), so verify checks our unit and nothing else."""
    root = base / "cos"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/lib/systemd/system/docker.service").write_text(
        "[Unit]\nDescription=stand-in for COS's docker\n[Service]\nExecStart=/usr/bin/dockerd\n"
    )
    for executable in ("usr/bin/docker", "usr/bin/dockerd", "usr/bin/docker-credential-gcr", "bin/sh"):
        path = root / executable
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/false\n")
        path.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


@pytest.mark.parametrize("which", ["binary", "collector"])
def test_the_unit_passes_systemd_analyze_verify(rendered, tmp_path, which):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (Debian) to run this check")
    root = _fake_cos_root(tmp_path)
    name = rendered["name"] if which == "binary" else "otel-collector"
    unit = rendered["unit"] if which == "binary" else rendered["collector_unit"]
    (root / f"etc/systemd/system/{name}.service").write_text(unit)
    result = subprocess.run(
        [analyze, "verify", f"--root={root}", "--man=no", f"{name}.service"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    # verify exits 0 on unknown keys and bad values (it only logs them): any output is a finding.
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


def test_verify_catches_a_broken_unit(rendered, tmp_path):
    """The check above can fail: a misspelt key and a bad Restart= value are reported."""
    root = _fake_cos_root(tmp_path)
    name = rendered["name"]
    broken = rendered["unit"].replace("Restart=always", "Restart=sometimes").replace("TimeoutStopSec", "TimeoutStopSek")
    (root / f"etc/systemd/system/{name}.service").write_text(broken)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", f"{name}.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert "TimeoutStopSek" in output and "sometimes" in output, output


def test_the_container_comes_back_after_a_crash_and_a_reboot(rendered):
    unit, config, name = rendered["unit"], rendered["config"], rendered["name"]
    assert deploymodel.unit_value(unit, "Restart") == "always"
    assert int(deploymodel.unit_value(unit, "RestartSec")) <= 10
    assert deploymodel.unit_value(unit, "WantedBy") == "multi-user.target"
    assert f"systemctl enable --now {name}.service" in config["runcmd"]
    # COS re-runs cloud-init at every boot (its /etc is not persistent): the unit must come
    # from metadata, which it does; and docker must be up first.
    assert "docker.service" in deploymodel.unit_value(unit, "Requires")
    assert "network-online.target" in deploymodel.unit_value(unit, "After")


def test_the_unit_runs_the_image_terraform_names_with_its_environment(rendered, tf):
    name, unit = rendered["name"], rendered["unit"]
    (argv,) = deploymodel.unit_exec(unit, "ExecStart")
    assert argv[:3] == ["/usr/bin/docker", "run", "--rm"], argv
    assert f"--name={name}" in argv and "--network=host" in argv
    assert argv[-1] == rendered["vars"]["image"], "the image is the last argument: nothing overrides the ENTRYPOINT"
    repository, image = argv[-1].rsplit("/", 2)[-2:]
    assert (repository, image.split("@")[0]) == (tf.locals["artifact_repository_id"], name)
    assert re.fullmatch(r"[a-z]+@sha256:[0-9a-f]{64}", image), f"the unit runs {image}: not by digest"
    env_file = next(a.split("=", 1)[1] for a in argv if a.startswith("--env-file="))
    assert env_file == f"/etc/binance-pipeline/{name}.env"
    lines = rendered["env_file"].splitlines()
    assert sorted(lines) == sorted(f"{k}={v}" for k, v in rendered["vars"]["env"].items())
    # --network=host: the container's METRICS_ADDR is the VM's port, the one the unit opens.
    metrics_port = rendered["vars"]["env"]["METRICS_ADDR"].rsplit(":", 1)[1]
    assert metrics_port == str(rendered["vars"]["health_port"]) == str(CONTRACT_PORTS[name])
    assert set(re.findall(r"--dport (\d+)", unit)) == {metrics_port}


def test_logs_reach_cloud_logging_as_json(rendered):
    metadata = rendered["resource"]["metadata"]
    # The COS logging agent ships the containers' stdout/stderr (docker's json-file logs).
    assert metadata.get("google-logging-enabled") == "true"
    assert rendered["vars"]["env"].get("LOG_FORMAT") == "json"
    (argv,) = deploymodel.unit_exec(rendered["unit"], "ExecStart")
    assert not any(a.startswith("--log-driver") for a in argv), "keep COS's default log driver, the agent reads it"


def test_stop_sends_sigterm_and_waits_longer_than_the_binarys_flush_deadline(rendered, workspace, binaries):
    name, unit = rendered["name"], rendered["unit"]
    (stop,) = deploymodel.unit_exec(unit, "ExecStop")
    assert stop[:2] == ["/usr/bin/docker", "stop"], stop
    grace = int(next(a.split("=", 1)[1] for a in stop if a.startswith("--time=")))
    assert grace == rendered["vars"]["stop_timeout_seconds"]
    timeout_stop = deploymodel.parse_duration_seconds(deploymodel.unit_value(unit, "TimeoutStopSec"))
    assert timeout_stop > grace, f"systemd would kill docker stop ({grace}s) after {timeout_stop}s"

    cli = binaries.cli(name)
    env_name = SHUTDOWN_ENV[name]
    option = cli.env_vars().get(env_name)
    assert option is not None, f"{name} --help shows no [env: {env_name}] (its flush deadline)"
    deadline = rendered["vars"]["env"].get(env_name, option.default)
    assert deadline, f"{name}: {env_name} has no default and Terraform does not set it"
    seconds = deploymodel.parse_duration_seconds(deadline)
    assert seconds + STOP_MARGIN_SECONDS <= grace, (
        f"{name} flushes for up to {seconds}s after SIGTERM, but docker stop kills it after {grace}s "
        f"(stop_timeout_seconds in compute.tf); keep {STOP_MARGIN_SECONDS}s of margin"
    )
    # The image's STOPSIGNAL is SIGTERM (test_dockerfile) and docker stop sends it.
