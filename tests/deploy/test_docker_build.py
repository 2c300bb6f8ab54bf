"""scripts/docker-build (dry run) builds every Dockerfile target with the revision, and tags the
images exactly as Terraform's local.images expects them."""

from __future__ import annotations

import shlex
import subprocess

from conftest import IMAGES


def run(root, *args):
    return subprocess.run(
        [str(root / "scripts" / "docker-build"), *args], cwd=root, capture_output=True, text=True, timeout=60
    )


def git_revision(root) -> str:
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"GIT_OPTIONAL_LOCKS": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    ).stdout.strip()
    return rev + ("-dirty" if dirty else "")


def test_dry_run_builds_and_pushes_terraforms_image_names(root, tf, dockerfile, workspace):
    result = run(root, "--project", "my-project", "--tag", "v7", "--push", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    builds = [c for c in commands if c[:2] == ["docker", "build"]]
    pushes = [c for c in commands if c[:2] == ["docker", "push"]]
    base = tf.resolve(tf.locals["image_base"]).replace("${var.project_id}", "my-project")
    want = [f"{base}/{image}:v7" for image in IMAGES]
    assert [c[c.index("--tag") + 1] for c in builds] == want
    assert [c[2] for c in pushes] == want
    revision = git_revision(root)
    for command, image in zip(builds, IMAGES):
        target = command[command.index("--target") + 1]
        assert target == image
        dockerfile.stage(target)
        assert f"GIT_REVISION={revision}" in command
        assert f"VERSION={workspace.version}" in command
        assert command[-1] == "."
    # Terraform takes digests: the next step is scripts/deploy reading them for these tags.
    assert "scripts/deploy --project my-project --region asia-northeast1 --builder none --tag v7" in result.stderr


def test_the_default_tag_is_the_revision_and_one_image_can_be_built(root):
    result = run(root, "--project", "p", "--dry-run", "producer")
    assert result.returncode == 0, result.stderr
    (build,) = [shlex.split(line) for line in result.stdout.splitlines()]
    assert build[build.index("--tag") + 1].endswith(f"/producer:{git_revision(root)}")


def test_us_regions_and_unknown_arguments_are_refused(root):
    result = run(root, "--project", "p", "--region", "us-central1", "--dry-run")
    assert result.returncode == 2 and "Binance" in result.stderr
    result = run(root, "--project", "p", "--dry-run", "tap")
    assert result.returncode == 2 and "unknown argument 'tap'" in result.stderr
