"""Shared fixtures: the example module, the generated Trade class and the emulator's address."""

import os
import sys
from pathlib import Path

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLE_DIR))

import trade_subscriber  # noqa: E402


@pytest.fixture(scope="session")
def Trade():
    return trade_subscriber.load_trade_class()


@pytest.fixture(scope="session")
def emulator_host():
    """host:port of the Pub/Sub emulator, as PUBSUB_EMULATOR_HOST wants it."""
    endpoint = os.environ.get("PIPELINE_PUBSUB_ENDPOINT") or os.environ.get("PUBSUB_EMULATOR_HOST")
    if not endpoint:
        pytest.skip("no Pub/Sub emulator: set PIPELINE_PUBSUB_ENDPOINT (scripts/test-python-subscriber starts one)")
    return endpoint.removeprefix("http://")
