"""Fixtures of the deployment checks: the workspace's crates and binaries, their `--help`, the
Dockerfile, Terraform (parsed with tests/terraform/tfmodel.py) and the rendered cloud-init.

The binaries are the debug builds under ${CARGO_TARGET_DIR:-target}/debug/ (scripts/test builds
the workspace first). A missing binary fails the tests that need it, saying how to build it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO_ROOT / "tests" / "terraform"))

import deploymodel  # noqa: E402
import tfmodel  # noqa: E402

# The images and the binary each runs: contract-names (Artifact Registry images `producer`,
# `consumer`, `batch`) and the crates' [[bin]] names.
IMAGES = ("producer", "consumer", "batch")
# The /metrics port of each binary, from the shared contract (METRICS_ADDR defaults).
CONTRACT_PORTS = {"producer": 9100, "consumer": 9101, "batch": 9102}


@pytest.fixture(scope="session")
def root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def workspace(root) -> deploymodel.Workspace:
    return deploymodel.load_workspace(root)


@pytest.fixture(scope="session")
def dockerfile(root) -> deploymodel.Dockerfile:
    return deploymodel.parse_dockerfile((root / "Dockerfile").read_text())


@pytest.fixture(scope="session")
def tf(root) -> tfmodel.Terraform:
    return tfmodel.load(root / "terraform")


@pytest.fixture(scope="session")
def target_dir(root) -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", root / "target")).resolve()


class Binaries:
    """`--help` of the built debug binaries, fetched once each."""

    def __init__(self, target_dir: Path):
        self.target_dir = target_dir
        self._cli: dict[str, deploymodel.Cli] = {}

    def path(self, name: str) -> Path:
        path = self.target_dir / "debug" / name
        if not path.is_file():
            pytest.fail(
                f"{path} is not built: run `cargo build -p {name}` (with the same CARGO_TARGET_DIR) "
                "first; scripts/test builds the workspace before scripts/check-deploy"
            )
        return path

    def cli(self, name: str) -> deploymodel.Cli:
        if name not in self._cli:
            self._cli[name] = deploymodel.read_cli(self.path(name))
        return self._cli[name]


@pytest.fixture(scope="session")
def binaries(target_dir) -> Binaries:
    return Binaries(target_dir)
