"""Every name and setting the binaries and the DAG expect (the shared contract) is created."""

from __future__ import annotations

import re

import pytest

import contract
from tfmodel import block

# Names Cloud Composer sets itself and forbids in env_variables.
COMPOSER_RESERVED = {"GCP_PROJECT", "PROJECT_ID", "PORT", "GCS_BUCKET", "COMPOSER_LOCATION", "DAGS_FOLDER", "PATH"}


def test_binary_env_names_resolve_to_the_created_resources(tf):
    env = tf.locals["common_env"]
    for key, expected in contract.BINARY_ENV.items():
        assert tf.resolve(env.get(key)) == expected, f"{key} must be {expected!r}, got {env.get(key)!r}"
    missing = contract.BINARY_ENV_PRESENT - set(env) - {"METRICS_ADDR"}
    assert not missing, f"common_env lacks {missing}"
    assert env["GCP_PROJECT"] == "${var.project_id}"
    assert env["SYMBOLS"] == '${join(",", var.symbols)}'
    assert env["BINANCE_WS_URL"] == "${var.binance_ws_url}"
    assert env["BINANCE_REST_URL"] == "${var.binance_rest_url}"
    assert env["LOG_FORMAT"] in ("json", "text")
    # The defaults of the URL variables are the contract's defaults.
    assert tf.variables["binance_ws_url"]["default"] == "wss://data-stream.binance.vision"
    assert tf.variables["binance_rest_url"]["default"] == "https://api.binance.com"


@pytest.mark.parametrize("component", sorted(contract.METRICS_PORT))
def test_each_binary_gets_its_metrics_port(tf, component):
    env = tf.locals[f"{component}_env"]
    port = contract.METRICS_PORT[component]
    # common_env plus METRICS_ADDR first, then settings of that binary alone (PRODUCER_*, ...).
    assert re.fullmatch(
        rf'\$\{{merge\(local\.common_env, \{{METRICS_ADDR = "0\.0\.0\.0:{port}"(, {component.upper()}_\w+ = "[^"]*")*\}}\)\}}',
        env,
    ), f"local.{component}_env must be common_env plus METRICS_ADDR 0.0.0.0:{port}: {env}"


def test_batch_job_gets_the_batch_env(tf):
    inner = block(block(tf.resource("google_cloud_run_v2_job", "batch"), "template"), "template")
    dynamic = block(block(inner, "containers"), "dynamic")
    assert dynamic and dynamic["env"]["for_each"] == "${local.batch_env}"


def test_all_contract_resources_are_created(tf):
    names = {
        "google_pubsub_topic": contract.TOPICS,
        "google_pubsub_subscription": contract.SUBSCRIPTIONS,
        "google_bigquery_dataset": contract.DATASETS,
        "google_cloud_run_v2_job": {contract.BATCH_JOB},
        "google_artifact_registry_repository": {contract.ARTIFACT_REPOSITORY},
    }
    for rtype, expected in names.items():
        key = {"google_bigquery_dataset": "dataset_id", "google_artifact_registry_repository": "repository_id"}.get(
            rtype, "name"
        )
        created = {tf.resolve(b[key]) for b in tf.of_type(rtype).values()}
        assert expected <= created, f"{rtype}: missing {expected - created}"


def test_composer_passes_job_and_dataset_names(tf):
    env = tf.resource("google_composer_environment", "pipeline")
    software = block(block(env, "config"), "software_config")
    variables = software["env_variables"]
    assert variables["BATCH_JOB_NAME"] == "${google_cloud_run_v2_job.batch.name}"
    assert variables["BATCH_JOB_REGION"] == "${google_cloud_run_v2_job.batch.location}"
    for key, dataset in (("BQ_MARKET_DATASET", "market"), ("BQ_DWH_DATASET", "dwh"), ("BQ_SCD_DATASET", "scd")):
        assert variables[key] == f"${{google_bigquery_dataset.{dataset}.dataset_id}}"
    assert not set(variables) & COMPOSER_RESERVED, "Composer rejects reserved env variable names"
    assert software["image_version"] == "${var.composer_image_version}"
    assert tf.variables["composer_image_version"]["default"].startswith("composer-3-")
    node = block(block(env, "config"), "node_config")
    assert node["service_account"] == "${google_service_account.composer.email}"


def test_dags_are_uploaded_from_the_dags_folder(tf):
    assert tf.locals["dag_files"] == '${fileset("${path.module}/../dags", "*.py")}'
    upload = tf.resource("google_storage_bucket_object", "dags")
    assert upload["for_each"] == "${local.dag_files}"
    assert upload["name"] == "dags/${each.value}"
    assert upload["content"] == '${file("${path.module}/../dags/${each.value}")}'


def test_dag_reads_only_env_vars_that_composer_sets(tf, root):
    dag = root / "dags" / "binance_daily.py"
    if not dag.exists():
        pytest.skip("dags/binance_daily.py is not written yet")
    text = dag.read_text()
    required = set(re.findall(r"os\.environ\[\s*['\"](\w+)['\"]\s*\]", text))
    required |= set(re.findall(r"os\.(?:environ\.get|getenv)\(\s*['\"](\w+)['\"]\s*\)", text))
    software = block(block(tf.resource("google_composer_environment", "pipeline"), "config"), "software_config")
    provided = set(software["env_variables"]) | COMPOSER_RESERVED
    assert not required - provided, f"the DAG reads env vars Composer does not set: {required - provided}"
