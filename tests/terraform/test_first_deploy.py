"""A gentle first deploy (issue 14): the producer and the batch leave through different NAT
addresses (Binance counts REST weight per IP), and the DAG's start date comes from a required,
validated go_live_date.

Each check is a function returning the problems it finds, so the same check runs on the real
tree (no problem) and on copies with the defect put back (the problem named).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import tfmodel
from tfmodel import block, blocks

REF = re.compile(r"^\$\{(google_[a-z_]+)\.([A-Za-z0-9_]+)\.(?:id|self_link|name)\}$")


def _ref(value) -> tuple[str, str] | None:
    found = REF.match(value) if isinstance(value, str) else None
    return (found.group(1), found.group(2)) if found else None


def _nats_serving(tf, subnet: tuple[str, str]) -> list[str]:
    """Names of the NAT gateways that translate `subnet`'s addresses."""
    out = []
    for name, nat in tf.of_type("google_compute_router_nat").items():
        mode = nat.get("source_subnetwork_ip_ranges_to_nat", "")
        if mode.startswith("ALL_SUBNETWORKS"):
            out.append(name)
        elif any(_ref(s.get("name")) == subnet for s in blocks(nat, "subnetwork")):
            out.append(name)
    return out


def egress_problems(tf) -> list[str]:
    """Why the producer's and the batch job's egress could share a NAT address (empty: they cannot)."""
    problems = []
    producer = tf.resource("google_compute_instance", "producer")
    producer_subnet = _ref(block(producer, "network_interface").get("subnetwork"))
    job = tf.resource("google_cloud_run_v2_job", "batch")
    access = block(block(block(job, "template"), "template"), "vpc_access")
    if not access:
        return ["the batch job has no vpc_access: it would leave from Cloud Run's shared addresses"]
    if access.get("egress") != "ALL_TRAFFIC":
        problems.append(f"batch vpc_access egress is {access.get('egress')!r}: Binance traffic would bypass its NAT")
    batch_subnet = _ref(block(access, "network_interfaces").get("subnetwork"))
    if not producer_subnet or not batch_subnet:
        return problems + [f"unresolved subnetworks: producer {producer_subnet}, batch {batch_subnet}"]
    if producer_subnet == batch_subnet:
        problems.append(f"the producer and the batch job share the subnetwork {producer_subnet[1]}")
    addresses = {}
    for who, subnet in (("producer", producer_subnet), ("batch", batch_subnet)):
        nats = _nats_serving(tf, subnet)
        if len(nats) != 1:
            problems.append(f"the {who} subnetwork {subnet[1]} is served by {len(nats)} NAT gateways {nats}, not one")
            continue
        nat = tf.resource("google_compute_router_nat", nats[0])
        if nat.get("nat_ip_allocate_option") != "MANUAL_ONLY":
            problems.append(f"NAT {nats[0]} ({who}) allocates its addresses automatically, not from static ones")
        refs = {_ref(ip) for ip in nat.get("nat_ips", [])}
        if not refs or None in refs or any(r[0] != "google_compute_address" for r in refs):
            problems.append(f"NAT {nats[0]} ({who}) does not name google_compute_address resources: {nat.get('nat_ips')}")
            continue
        addresses[who] = (nats[0], refs)
    if len(addresses) == 2:
        (pn, pa), (bn, ba) = addresses["producer"], addresses["batch"]
        if pn == bn:
            problems.append(f"the producer and the batch job leave through the same NAT {pn}")
        if pa & ba:
            problems.append(f"the producer and the batch job share NAT addresses {sorted(a[1] for a in pa & ba)}")
        for _, name in pa | ba:
            address = tf.resource("google_compute_address", name)
            if address.get("address_type", "EXTERNAL") != "EXTERNAL" or address.get("region") != "${var.region}":
                problems.append(f"address {name} is not an external address in var.region")
    return problems


def test_the_producer_and_the_batch_job_leave_through_different_static_nat_addresses(tf):
    assert egress_problems(tf) == []


def test_the_batch_subnetwork_is_big_enough_for_direct_vpc_egress_and_flow_logged(tf):
    subnet = tf.resource("google_compute_subnetwork", "batch")
    assert subnet["ip_cidr_range"] == "${var.batch_subnet_cidr}"
    assert int(tf.variables["batch_subnet_cidr"]["default"].split("/")[1]) <= 26
    assert subnet["private_ip_google_access"] is True, "BigQuery must stay off the NAT"
    assert block(subnet, "log_config"), "flow logs, like the VM subnetwork"


def _copy(tf_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "terraform"
    shutil.copytree(tf_dir, target, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"break target {old!r} not found in {path.name}: update this test"
    path.write_text(text.replace(old, new, 1))


# (what, file, old, new, the problem egress_problems must name)
EGRESS_BREAKS = [
    (
        "the batch job back on the producer's subnetwork",
        "compute.tf",
        "subnetwork = google_compute_subnetwork.batch.id",
        "subnetwork = google_compute_subnetwork.pipeline.id",
        "share the subnetwork",
    ),
    (
        "one NAT for every subnetwork",
        "network.tf",
        'source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"',
        'source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"',
        "NAT gateways",
    ),
    (
        "the batch NAT on the producer's address",
        "network.tf",
        "nat_ips                            = [google_compute_address.batch_egress.self_link]",
        "nat_ips                            = [google_compute_address.producer_egress.self_link]",
        "share NAT addresses",
    ),
    (
        "automatic NAT addresses",
        "network.tf",
        'nat_ip_allocate_option             = "MANUAL_ONLY"',
        'nat_ip_allocate_option             = "AUTO_ONLY"',
        "automatically",
    ),
    (
        "the batch's Binance traffic outside the VPC",
        "compute.tf",
        'egress = "ALL_TRAFFIC"',
        'egress = "PRIVATE_RANGES_ONLY"',
        "bypass its NAT",
    ),
]


@pytest.mark.parametrize("what,file,old,new,problem", EGRESS_BREAKS, ids=[b[0] for b in EGRESS_BREAKS])
def test_each_way_of_sharing_the_egress_is_caught(tf_dir, tmp_path, what, file, old, new, problem):
    copy = _copy(tf_dir, tmp_path)
    _edit(copy / file, old, new)
    problems = egress_problems(tfmodel.load(copy))
    assert any(problem in p for p in problems), problems


# ---- go_live_date -> PIPELINE_START_DATE ----

def test_composer_gives_the_dag_its_start_date_from_a_required_go_live_date(tf, tf_dir):
    env = block(block(tf.resource("google_composer_environment", "pipeline"), "config"), "software_config")[
        "env_variables"
    ]
    assert env.get("PIPELINE_START_DATE") == "${var.go_live_date}", env
    variable = tf.variables["go_live_date"]
    assert "default" not in variable, "go_live_date must be chosen, not defaulted"
    # The DAG reads the same name.
    dag = (tf_dir.parent / "dags" / "binance_daily.py").read_text()
    assert 'START_DATE_VAR = "PIPELINE_START_DATE"' in dag


def _validation_holds(tf, value: str, workdir: Path) -> bool:
    """go_live_date's own validation condition, evaluated by `terraform console` for `value`."""
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.fail("terraform is not installed")
    (condition,) = [v["condition"] for v in blocks(tf.variables["go_live_date"], "validation")]
    expression = condition.removeprefix("${").removesuffix("}").replace("var.go_live_date", json.dumps(value))
    result = subprocess.run(
        [terraform, "console"], input=expression, cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "true"


@pytest.mark.parametrize(
    "value,ok",
    [("2026-03-10", True), ("2024-02-29", True), ("2025-02-29", False), ("2026-13-01", False), ("2026-3-10", False), ("", False)],
)
def test_go_live_date_must_be_a_calendar_day(tf, tmp_path, value, ok):
    assert _validation_holds(tf, value, tmp_path) is ok
