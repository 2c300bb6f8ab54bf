"""Compute: private, shielded, OS Login VMs running our images; consumer autohealed on /livez."""

from __future__ import annotations

import re
from pathlib import Path

import contract
from tfmodel import block, blocks

VM_TYPES = ("google_compute_instance", "google_compute_instance_template")


def _vms(tf):
    for rtype in VM_TYPES:
        for name, body in tf.of_type(rtype).items():
            yield f"{rtype}.{name}", body


def test_vms_have_no_external_ip(tf):
    vms = list(_vms(tf))
    assert vms, "no VM or instance template found"
    for name, body in vms:
        interfaces = blocks(body, "network_interface")
        assert interfaces, f"{name} has no network_interface"
        for nic in interfaces:
            assert "access_config" not in nic, f"{name} has an access_config: an external IP"
            dynamics = [list(d) for d in blocks(nic, "dynamic")]
            assert not any("access_config" in d for d in dynamics), f"{name} has a dynamic access_config"
            assert "ipv6_access_config" not in nic, f"{name} has an external IPv6 address"


def test_vms_are_shielded_with_os_login_and_no_project_ssh_keys(tf):
    for name, body in _vms(tf):
        shielded = block(body, "shielded_instance_config")
        assert shielded, f"{name} is not a Shielded VM"
        assert all(shielded.get(k) is True for k in ("enable_secure_boot", "enable_vtpm", "enable_integrity_monitoring"))
        metadata = body.get("metadata", {})
        assert str(metadata.get("enable-oslogin")).upper() == "TRUE", f"{name} must enable OS Login"
        assert str(metadata.get("block-project-ssh-keys")).lower() == "true", f"{name} must block project SSH keys"
        assert str(metadata.get("serial-port-enable", "false")).lower() != "true"
        assert body.get("can_ip_forward", False) is False


def test_egress_goes_through_cloud_nat(tf):
    nats = tf.of_type("google_compute_router_nat")
    assert nats, "VMs without external IPs need Cloud NAT to reach Binance"
    nat = next(iter(nats.values()))
    assert nat["router"].startswith("${google_compute_router.")
    subnet_refs = [s["name"] for s in blocks(nat, "subnetwork")]
    assert subnet_refs or nat["source_subnetwork_ip_ranges_to_nat"].startswith("ALL_SUBNETWORKS")


def test_images_come_from_the_contract_repository(tf):
    assert tf.locals["artifact_repository_id"] == contract.ARTIFACT_REPOSITORY
    repos = tf.of_type("google_artifact_registry_repository")
    assert [tf.resolve(b["repository_id"]) for b in repos.values()] == [contract.ARTIFACT_REPOSITORY]
    assert next(iter(repos.values()))["format"] == "DOCKER"
    images = tf.locals["images"]
    assert set(images) == contract.IMAGES
    for image, ref in images.items():
        # By digest, never by tag: the image that runs is the build that was pushed.
        assert ref == f"${{local.image_base}}/{image}@${{var.{image}_image_digest}}"
        variable = tf.variables[f"{image}_image_digest"]
        assert "default" not in variable, f"{image}_image_digest must have no default: apply must be told"
        (validation,) = blocks(variable, "validation")
        assert "^sha256:[0-9a-f]{64}$" in validation["condition"]
    assert not any(name.endswith("_image_tag") for name in tf.variables), "image tag variables are gone"
    assert tf.locals["image_base"] == "${local.registry_host}/${var.project_id}/${local.artifact_repository_id}"


def test_digests_the_deployment_runs_are_kept_by_the_registry(tf):
    repo = next(iter(tf.of_type("google_artifact_registry_repository").values()))
    policies = {p["id"]: p for p in blocks(repo, "cleanup_policies")}
    keep = [p for p in policies.values() if p["action"] == "KEEP"]
    assert keep and block(keep[0], "most_recent_versions")["keep_count"] >= 5, (
        "a re-pushed tag leaves the deployed digest untagged: keep recent versions from the untagged cleanup"
    )


def _user_data(body):
    return body["metadata"]["user-data"]


def test_producer_vm_runs_the_producer_image_with_its_port(tf):
    producer = tf.resource("google_compute_instance", "producer")
    user_data = _user_data(producer)
    assert "local.images.producer" in user_data
    assert "env = local.producer_env" in user_data
    assert "health_port = local.metrics_ports.producer" in user_data
    assert block(producer, "service_account")["email"] == "${google_service_account.producer.email}"


def test_the_producer_keeps_its_resume_point_in_the_mounted_state_directory(tf, tf_dir):
    found = re.search(r'PRODUCER_STATE_FILE = "([^"]+)"', tf.locals["producer_env"])
    assert found, tf.locals["producer_env"]
    assert found.group(1).startswith("/var/lib/producer/"), found.group(1)
    template = (tf_dir / "templates" / "container-service.yaml.tftpl").read_text()
    assert "--volume=/var/lib/binance-pipeline/${name}:/var/lib/${name}" in template
    # The Dockerfile is the repository's, also when the structural tests run on a copy.
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "USER 65532:65532" in dockerfile, "the template chowns the state directory to 65532"


def test_consumer_group_autoheals_on_its_livez(tf):
    template = tf.resource("google_compute_instance_template", "consumer")
    assert "local.images.consumer" in _user_data(template)
    assert "health_port = local.metrics_ports.consumer" in _user_data(template)
    mig = tf.resource("google_compute_region_instance_group_manager", "consumer")
    assert block(mig, "version")["instance_template"] == "${google_compute_instance_template.consumer.id}"
    healing = block(mig, "auto_healing_policies")
    assert healing, "the consumer MIG must autoheal"
    ref = re.fullmatch(r"\$\{google_compute_health_check\.(\w+)\.id\}", healing["health_check"])
    check = block(tf.resource("google_compute_health_check", ref.group(1)), "http_health_check")
    # The port itself is held to the binary's in test_metrics.py (evaluated with Terraform).
    assert check["port"] == "${local.metrics_ports.consumer}"
    # /livez: what a new process fixes (a wedged pull); /healthz is also red in a BigQuery outage,
    # which recreating VMs cannot fix.
    assert check["request_path"] == "/livez"
    # Google's health checkers must be let in on that port.
    allowed = [
        p
        for fw in tf.of_type("google_compute_firewall").values()
        if "35.191.0.0/16" in fw.get("source_ranges", [])
        for a in blocks(fw, "allow")
        for p in a.get("ports", [])
    ]
    assert str(contract.METRICS_PORT["consumer"]) in allowed


def test_ssh_is_never_open_to_the_internet(tf):
    for name, fw in tf.of_type("google_compute_firewall").items():
        if "0.0.0.0/0" in fw.get("source_ranges", []):
            ports = [p for a in blocks(fw, "allow") for p in a.get("ports", ["all"])]
            assert "22" not in ports and "all" not in ports, f"firewall {name} opens SSH to the internet"


def test_batch_is_the_contract_cloud_run_job(tf):
    jobs = tf.of_type("google_cloud_run_v2_job")
    assert len(jobs) == 1
    job = next(iter(jobs.values()))
    assert tf.resolve(job["name"]) == contract.BATCH_JOB
    inner = block(block(job, "template"), "template")
    assert inner["service_account"] == "${google_service_account.batch.email}"
    container = block(inner, "containers")
    assert container["image"] == "${local.images.batch}"
