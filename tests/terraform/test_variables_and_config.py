"""Variables are documented and validated; checkov skips carry reasons; outputs exist."""

from __future__ import annotations

import re
from pathlib import Path

import tfmodel


def test_every_variable_has_description_type_and_the_important_ones_validation(tf):
    assert tf.variables
    for name, body in tf.variables.items():
        assert body.get("description", "").strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
    unvalidated = {n for n, b in tf.variables.items() if "validation" not in b and b.get("type") not in ("bool", "${bool}")}
    assert not unvalidated, f"variables without validation: {unvalidated}"


def test_region_defaults_outside_the_us_and_says_why(tf):
    region = tf.variables["region"]
    assert region["default"] == "asia-northeast1"
    assert "451" in region["description"]
    conditions = " ".join(v["condition"] for v in tfmodel.blocks(region, "validation"))
    assert '"us-"' in conditions, "region validation must reject us-* regions"
    assert not tf.variables["zone"]["default"].startswith("us-")
    assert not tf.variables["bigquery_location"]["default"].upper().startswith("US")


def test_outputs_are_described(tf):
    for wanted in ("artifact_registry_repository", "trades_view", "batch_job", "airflow_uri", "trade_topic"):
        assert wanted in tf.outputs, f"missing output {wanted}"
    for name, body in tf.outputs.items():
        assert body.get("description", "").strip(), f"output {name} has no description"


def test_every_checkov_skip_has_a_reason(tf_dir: Path):
    lines = (tf_dir / ".checkov.yaml").read_text().splitlines()
    skips = 0
    in_skip = False
    for i, line in enumerate(lines):
        if re.match(r"^skip-check:\s*$", line):
            in_skip = True
            continue
        if in_skip and re.match(r"^\S", line):
            in_skip = False
        item = re.match(r"^\s+-\s+(CKV\w+)", line) if in_skip else None
        if item:
            skips += 1
            above = lines[i - 1].strip()
            assert above.startswith("# reason:") and len(above) > 40, f"skip of {item.group(1)} has no reason above it"
    assert skips, "expected the skip-check list in terraform/.checkov.yaml"
    for name, text in tfmodel.load(tf_dir).texts.items():
        for match in re.finditer(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?", text):
            assert match.group(2) and len(match.group(2).strip()) > 20, f"{name}: inline skip {match.group(1)} has no reason"


def test_readme_documents_every_variable(tf_dir: Path, tf):
    readme = (tf_dir / "README.md").read_text()
    for name in tf.variables:
        assert f"`{name}`" in readme, f"terraform/README.md does not document variable {name}"
    assert "terraform apply" in readme
    assert re.search(r"cost", readme, re.I)
