"""What the images and Terraform tell the binaries (environment, ports, subcommands) is what the
built binaries accept, read from their own `--help`; and each prints its version and revision."""

from __future__ import annotations

import re

import pytest

import deploymodel
from conftest import CONTRACT_PORTS, IMAGES

# Endpoints for emulators only: Terraform must NOT set them (the binaries would skip Google Cloud).
EMULATOR_ONLY = {"PUBSUB_ENDPOINT", "BIGQUERY_ENDPOINT", "BIGQUERY_GRPC_ENDPOINT"}
# The contract's environment names (contract-names): when a binary accepts one, Terraform sets it.
CONTRACT_ENV = {
    "GCP_PROJECT", "TRADE_TOPIC", "GAP_TOPIC", "TRADE_SUBSCRIPTION", "GAP_SUBSCRIPTION", "DEAD_LETTER_TOPIC",
    "SYMBOLS", "BINANCE_WS_URL", "BINANCE_REST_URL", "METRICS_ADDR", "LOG_FORMAT",
    "BQ_MARKET_DATASET", "BQ_DWH_DATASET", "BQ_SCD_DATASET",
}  # fmt: skip
REVISION = r"(?:[0-9a-f]{12,}(?:-dirty)?|unknown|[0-9A-Za-z._-]{1,64})"


@pytest.mark.parametrize("image", IMAGES)
def test_version_prints_the_package_version_and_the_revision(binaries, workspace, image):
    text = binaries.cli(image).version_text
    assert re.fullmatch(rf"{image} {re.escape(workspace.version)} \(rev {REVISION}\)", text), (
        f"`{image} --version` printed {text!r}; want '{image} {workspace.version} (rev <revision>)': "
        f"use #[command(version = build_info::VERSION)]"
    )


@pytest.mark.parametrize("image", IMAGES)
def test_the_metrics_port_is_the_same_everywhere(binaries, workspace, dockerfile, tf, image):
    cli = binaries.cli(image)
    option = cli.env_vars().get("METRICS_ADDR")
    assert option is not None, f"{image} --help shows no [env: METRICS_ADDR], but Terraform sets it"
    port = str(CONTRACT_PORTS[image])
    assert option.default == f"0.0.0.0:{port}", f"{image}: METRICS_ADDR default {option.default}"
    assert option.default == deploymodel.source_default(workspace.package_of_bin(image).dir, "METRICS_ADDR")
    assert [i.args for i in dockerfile.stage(image).all("EXPOSE")] == [port]
    _, specific = deploymodel.component_env(tf, image)
    assert specific.get("METRICS_ADDR") == f"0.0.0.0:{port}", f"Terraform's {image}_env METRICS_ADDR"


@pytest.mark.parametrize("image", IMAGES)
def test_the_binary_accepts_what_terraform_sets_for_it(binaries, tf, image):
    accepted = binaries.cli(image).env_vars()
    _, specific = deploymodel.component_env(tf, image)
    for name in specific:
        assert name in accepted, f"Terraform sets {name} for {image} only, but `{image} --help` has no [env: {name}]"


def test_every_shared_variable_is_read_by_some_binary(binaries, tf):
    common, _ = deploymodel.component_env(tf, "producer")
    readers = {name: [i for i in IMAGES if name in binaries.cli(i).env_vars()] for name in common}
    unread = [name for name, who in readers.items() if not who]
    assert not unread, f"Terraform's common_env sets {unread}, which no binary reads (a typo?)"
    assert not EMULATOR_ONLY & set(common), "Terraform must not point the binaries at emulators"


@pytest.mark.parametrize("image", IMAGES)
def test_terraform_sets_every_contract_variable_the_binary_reads(binaries, tf, image):
    common, specific = deploymodel.component_env(tf, image)
    given = {**common, **specific}
    for name, option in binaries.cli(image).env_vars().items():
        if name in CONTRACT_ENV:
            assert name in given, f"{image} reads {name} (contract), Terraform does not set it"
            if option.default and name not in ("SYMBOLS", "METRICS_ADDR"):
                # Terraform fixes these names in main.tf; a drift from the binary default would
                # mean the local stack and the cloud use different resources.
                assert given[name] == option.default, f"{image}: Terraform {name}={given[name]}, default {option.default}"


def test_the_batch_job_and_the_dag_use_existing_subcommands(binaries, tf):
    subcommands = binaries.cli("batch").subcommands
    for needed in ("symbols", "klines", "check", "reconcile"):
        assert needed in subcommands, f"`batch --help` lists no `{needed}` (contract: batch subcommands)"
    job = tf.resource("google_cloud_run_v2_job", "batch")
    containers = job["template"][0]["template"][0]["containers"][0]
    assert containers["args"][0] in subcommands, containers["args"]
    assert "command" not in containers, "the job must not override the image's ENTRYPOINT"
