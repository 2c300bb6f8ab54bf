"""Shared fixtures: which tree the structural tests look at, and its parsed Terraform.

TF_ROOT (default: the repository root) lets tests/terraform/test_breaks.py run the very same
tests against a deliberately broken copy of terraform/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tfmodel  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> Path:
    return Path(os.environ.get("TF_ROOT", REPO_ROOT)).resolve()


@pytest.fixture(scope="session")
def tf_dir(root: Path) -> Path:
    return root / "terraform"


@pytest.fixture(scope="session")
def tf(tf_dir: Path) -> tfmodel.Terraform:
    return tfmodel.load(tf_dir)
