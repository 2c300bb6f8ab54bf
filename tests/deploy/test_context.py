"""The Docker build context (.dockerignore) holds everything `cargo build` reads, and leaves out
.git (the revision is a build arg), target/ and the virtualenvs."""

from __future__ import annotations

import re

import pytest

import deploymodel


@pytest.fixture(scope="session")
def rules(root):
    return deploymodel.dockerignore_rules((root / ".dockerignore").read_text())


@pytest.mark.parametrize(
    "path,want",
    [
        ("target", True),
        ("target/release/producer", True),
        (".git/HEAD", True),
        ("terraform/main.tf", True),
        ("terraform/schemas/trades_raw.json", False),
        ("sim/__pycache__/x.pyc", True),
        ("producer/src/main.rs", False),
        ("Cargo.lock", False),
    ],
)
def test_the_matcher_reads_our_dockerignore_like_docker(rules, path, want):
    assert deploymodel.excluded(rules, path) is want


def test_every_workspace_member_is_in_the_context(root, workspace, rules):
    for path in ("Cargo.toml", "Cargo.lock"):
        assert not deploymodel.excluded(rules, path), path
    for member in workspace.members:
        for path in sorted((root / member).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and path.suffix in (".rs", ".toml", ".proto") and "/target/" not in rel:
                assert not deploymodel.excluded(rules, rel), f"{rel} is left out of the Docker build context"


def test_files_read_at_compile_time_are_in_the_context(root, workspace, rules):
    checked = 0
    for member in workspace.members:
        for source in (root / member).rglob("*.rs"):
            for target in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', source.read_text()):
                path = (source.parent / target).resolve()
                assert path.is_file(), f"{source.relative_to(root)} includes {target}, which does not exist"
                rel = path.relative_to(root).as_posix()
                assert not deploymodel.excluded(rules, rel), f"{rel} (included by {source.relative_to(root)}) is not in the context"
                checked += 1
    assert checked > 0, "found no include_str!/include_bytes! at all: the scan is broken"


def test_git_and_build_outputs_stay_out(rules):
    for path in (".git/config", "target/debug/producer", ".venv/deploy/bin/python"):
        assert deploymodel.excluded(rules, path), path
