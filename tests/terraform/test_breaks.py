"""Deliberate breaks: each mutation of a copy of terraform/ must make the check that guards it fail.

Each case copies terraform/, proto/ and dags/ to a temporary tree, applies one break, and runs the
named structural test (in a child pytest with TF_ROOT pointing at the copy), checkov, or
`terraform fmt -check` against it. A control run proves the unbroken copy passes, so a failure
can only come from the break.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO_ROOT = HERE.parents[1]


def _checkov_bin() -> str:
    path = os.environ.get("CHECKOV_BIN") or str(REPO_ROOT / ".venv" / "checkov" / "bin" / "checkov")
    if not Path(path).exists():
        pytest.fail(f"checkov not found at {path}: run scripts/check-terraform (it creates .venv/checkov)")
    return path


@pytest.fixture
def copy(tmp_path: Path, root: Path) -> Path:
    for part in ("terraform", "proto/proto", "dags"):
        source = root / part
        if source.exists():
            shutil.copytree(source, tmp_path / part, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    (tmp_path / "dags").mkdir(exist_ok=True)
    return tmp_path


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"break target {old!r} not found in {path.name}: update this test"
    path.write_text(text.replace(old, new, count))


def _run_tests(copy: Path, *node_ids: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_ROOT=str(copy))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", "-rf", *node_ids],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_fails(result: subprocess.CompletedProcess, test_name: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, f"expected {test_name} to fail on the broken copy:\n{output}"
    assert re.search(rf"FAILED \S*{re.escape(test_name)}", output), output


def test_unbroken_copy_passes_every_structural_test(copy):
    modules = [p.name for p in HERE.glob("test_*.py") if p.name != Path(__file__).name]
    result = _run_tests(copy, *sorted(modules))
    assert result.returncode == 0, result.stdout + result.stderr


# (description, file, old, new, test that must fail)
BREAKS = [
    (
        "renamed column",
        "schemas/trades_raw.json",
        '"name": "trade_id"',
        '"name": "trade_ident"',
        "test_bigquery.py::test_table_schema_matches_proto",
    ),
    (
        "column type drifts from the proto",
        "schemas/gaps.json",
        '"type": "INT64"',
        '"type": "FLOAT64"',
        "test_bigquery.py::test_table_schema_matches_proto",
    ),
    (
        "primitive role on the project",
        "iam.tf",
        "# --- Artifact Registry",
        'resource "google_project_iam_member" "oops" {\n  project = var.project_id\n  role    = "roles/editor"\n'
        '  member  = "serviceAccount:${google_service_account.batch.email}"\n}\n\n# --- Artifact Registry',
        "test_iam.py::test_no_primitive_roles",
    ),
    (
        "a latest default on an image",
        "variables.tf",
        'variable "producer_image_digest" {\n',
        'variable "producer_image_digest" {\n  default     = "latest"\n',
        "test_compute.py::test_images_come_from_the_contract_repository",
    ),
    (
        "an image by tag",
        "main.tf",
        '"${local.image_base}/producer@${var.producer_image_digest}"',
        '"${local.image_base}/producer:latest"',
        "test_compute.py::test_images_come_from_the_contract_repository",
    ),
    (
        "primitive role on a dataset",
        "iam.tf",
        'role       = "roles/bigquery.dataEditor"',
        'role       = "roles/owner"',
        "test_iam.py::test_no_primitive_roles",
    ),
    (
        "external IP on the producer",
        "compute.tf",
        "    subnetwork = google_compute_subnetwork.pipeline.id\n  }",
        "    subnetwork = google_compute_subnetwork.pipeline.id\n    access_config {}\n  }",
        "test_compute.py::test_vms_have_no_external_ip",
    ),
    (
        "dead-letter policy back on the trade subscription",
        "pubsub.tf",
        "  # No dead_letter_policy, on purpose:",
        "  dead_letter_policy {\n    dead_letter_topic     = google_pubsub_topic.dead_letter.id\n"
        "    max_delivery_attempts = 10\n  }\n\n  # No dead_letter_policy, on purpose:",
        "test_pubsub.py::test_consumer_subscriptions_keep_good_trades_until_bigquery_takes_them",
    ),
    (
        "schema from a copied proto",
        "pubsub.tf",
        'file("${path.module}/../proto/proto/trade.proto")',
        'file("${path.module}/trade.proto")',
        "test_pubsub.py::test_schemas_read_the_proto_files_in_place",
    ),
    (
        "unused service account",
        "iam.tf",
        "# --- Logs and metrics",
        'resource "google_service_account" "spare" {\n  account_id = "binance-spare"\n}\n\n# --- Logs and metrics',
        "test_iam.py::test_every_service_account_is_used_by_a_workload_and_granted_something",
    ),
    (
        "service account key",
        "iam.tf",
        "# --- Logs and metrics",
        'resource "google_service_account_key" "k" {\n  service_account_id = google_service_account.batch.name\n}\n\n'
        "# --- Logs and metrics",
        "test_iam.py::test_no_service_account_keys_and_no_authoritative_project_policy",
    ),
    (
        "renamed topic",
        "main.tf",
        '"binance-trades"',
        '"binance-trade"',
        "test_contract.py::test_all_contract_resources_are_created",
    ),
    (
        "consumer on the wrong metrics port",
        "compute.tf",
        '"0.0.0.0:9101"',
        '"0.0.0.0:9109"',
        "test_contract.py::test_each_binary_gets_its_metrics_port",
    ),
    (
        "view no longer deduplicates",
        "bigquery.tf",
        "PARTITION BY symbol, trade_id ORDER BY receive_time",
        "PARTITION BY symbol, trade_id, source ORDER BY receive_time",
        "test_bigquery.py::test_trades_view_is_the_contract_dedup_query",
    ),
    (
        "checkov skip without a reason",
        ".checkov.yaml",
        "  - CKV_GCP_83",
        "  - CKV_GCP_83\n  - CKV_GCP_26",
        "test_variables_and_config.py::test_every_checkov_skip_has_a_reason",
    ),
]


@pytest.mark.parametrize("what,file,old,new,test", BREAKS, ids=[b[0] for b in BREAKS])
def test_break_fails_its_check(copy, what, file, old, new, test):
    _edit(copy / "terraform" / file, old, new)
    _assert_fails(_run_tests(copy, test), test.split("::")[1])


def test_proto_field_added_without_column_fails(copy):
    # The proto gains a field (as the evolution rule allows) but the table schema does not.
    _edit(copy / "proto" / "proto" / "trade.proto", "  required string source = 9;", "  required string source = 9;\n  optional string venue = 10;")
    _assert_fails(_run_tests(copy, "test_bigquery.py::test_table_schema_matches_proto"), "test_table_schema_matches_proto")


def _checkov(copy: Path) -> subprocess.CompletedProcess:
    tf_dir = copy / "terraform"
    return subprocess.run(
        [_checkov_bin(), "-d", str(tf_dir), "--config-file", str(tf_dir / ".checkov.yaml"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_checkov_catches_an_external_ip(copy):
    control = _checkov(copy)
    assert control.returncode == 0, control.stdout + control.stderr
    _edit(
        copy / "terraform" / "compute.tf",
        "    subnetwork = google_compute_subnetwork.pipeline.id\n  }",
        "    subnetwork = google_compute_subnetwork.pipeline.id\n    access_config {}\n  }",
    )
    broken = _checkov(copy)
    assert broken.returncode == 1, broken.stdout
    assert "CKV_GCP_40" in broken.stdout


def test_terraform_fmt_catches_misformatting(copy):
    if not shutil.which("terraform"):
        pytest.fail("terraform is not installed")
    command = ["terraform", "fmt", "-check", "-recursive", str(copy / "terraform")]
    assert subprocess.run(command, capture_output=True).returncode == 0
    _edit(copy / "terraform" / "network.tf", "  auto_create_subnetworks = false", "  auto_create_subnetworks    =   false")
    assert subprocess.run(command, capture_output=True).returncode != 0
