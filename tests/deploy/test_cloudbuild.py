"""cloudbuild.yaml pushes the three images Terraform runs, to Terraform's repository, tagged with
the 12-digit revision it also compiles in. Its shell steps are run here, with Cloud Build's
substitutions applied and a stand-in `docker` that records its arguments."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import IMAGES

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROJECT = "my-project"


@pytest.fixture(scope="module")
def build(root):
    return yaml.safe_load((root / "cloudbuild.yaml").read_text())


def substitute(text: str, values: dict[str, str]) -> str:
    """Cloud Build's substitution with dynamicSubstitutions: $VAR, ${VAR}, ${VAR:off:len}; $$ is $."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        braced, sliced, bare = match.groups()
        value = values.get(braced or bare, "")
        if sliced:
            offset, _, length = sliced.partition(":")
            value = value[int(offset) : int(offset) + int(length)] if length else value[int(offset) :]
        return value

    return re.sub(r"\$\$|\$\{(\w+)(?::([0-9:]+))?\}|\$(\w+)", one, text)


def substitutions(build, commit: str) -> dict[str, str]:
    values = {"PROJECT_ID": PROJECT, "COMMIT_SHA": commit}
    for key, raw in build["substitutions"].items():  # in order: later ones may use earlier ones
        values[key] = substitute(raw, values)
    return values


def run_step(root: Path, build, step_id: str, commit: str, tmp_path: Path) -> tuple[int, list[list[str]], str]:
    step = next(s for s in build["steps"] if s["id"] == step_id)
    assert step.get("entrypoint") == "bash" and step["args"][0] == "-c", step_id
    script = substitute(step["args"][1], substitutions(build, commit))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "docker.log"
    fake = bin_dir / "docker"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" >> {log}\nprintf "\\n" >> {log}\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    calls = []
    if log.exists():
        calls = [line.split("\0")[:-1] for line in log.read_text().split("\n") if line]
    return result.returncode, calls, result.stderr


def test_the_images_are_terraforms_repository_and_names_tagged_with_the_revision(build, tf):
    values = substitutions(build, COMMIT)
    region = tf.variables["region"]["default"]
    assert values["_REGION"] == region, "the default region must be Terraform's var.region default"
    assert values["_REPOSITORY"] == tf.locals["artifact_repository_id"]
    base = tf.resolve(tf.locals["image_base"]).replace("${var.project_id}", PROJECT)
    want = [f"{base}/{image}:{COMMIT[:12]}" for image in IMAGES]
    assert [substitute(i, values) for i in build["images"]] == want
    images = {name: tf.resolve(ref) for name, ref in tf.locals["images"].items()}
    assert set(images) == set(IMAGES), "Terraform's local.images and cloudbuild.yaml name different images"
    assert build["options"]["dynamicSubstitutions"] is True, "${COMMIT_SHA:0:12} needs dynamicSubstitutions"


def test_the_build_step_builds_each_target_with_the_revision_and_version(root, build, dockerfile, workspace, tmp_path):
    code, calls, stderr = run_step(root, build, "build", COMMIT, tmp_path)
    assert code == 0, stderr
    values = substitutions(build, COMMIT)
    want_tags = [substitute(i, values) for i in build["images"]]
    assert len(calls) == len(IMAGES)
    for call, image, tag in zip(calls, IMAGES, want_tags):
        assert call[0] == "build" and call[-1] == ".", call
        assert f"--target={image}" in call
        dockerfile.stage(image)
        assert f"--tag={tag}" in call
        assert f"--build-arg=GIT_REVISION={COMMIT[:12]}" in call
        assert f"--build-arg=VERSION={workspace.version}" in call


@pytest.mark.parametrize("commit,ok", [(COMMIT, True), ("", False), ("not-a-commit-sha", False)])
def test_a_build_without_a_commit_stops_before_building(root, build, tmp_path, commit, ok):
    code, _, stderr = run_step(root, build, "check-revision", commit, tmp_path)
    assert (code == 0) is ok, stderr
    if not ok:
        assert "COMMIT_SHA" in stderr


def test_every_step_waits_for_the_revision_check(build):
    for step in build["steps"][1:]:
        assert "check-revision" in step.get("waitFor", []), step["id"]
