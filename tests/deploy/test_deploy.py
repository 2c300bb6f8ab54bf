"""scripts/deploy holds cloudbuild.yaml and Terraform together: it describes exactly the images
Cloud Build (or scripts/docker-build) pushes, in the repository and region Terraform uses, and
passes every image's digest to the Terraform variable that runs it. Run as a dry run (the
commands it prints) and for real against stand-in `gcloud`, `terraform` and `docker` that record
their arguments, so no cloud is needed."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

import tfeval
from conftest import IMAGES
from test_cloudbuild import substitute

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
PROJECT = "my-project"


def deploy(root, *args, env=None):
    return subprocess.run(
        [str(root / "scripts" / "deploy"), *args], cwd=root, capture_output=True, text=True, timeout=60, env=env
    )


def head(root) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def parse_dry_run(stdout: str) -> tuple[list[list[str]], dict[str, list[str]]]:
    """(commands, captures): plain command lines, and NAME=$(command) lines by NAME."""
    commands, captures = [], {}
    for line in stdout.splitlines():
        found = re.fullmatch(r"([a-z_]+)=\$\((.*)\)", line)
        if found:
            captures[found.group(1)] = shlex.split(found.group(2))
        elif line.strip():
            commands.append(shlex.split(line))
    return commands, captures


def tf_vars(command: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("-var=").split("=", 1) for a in command if a.startswith("-var="))


def described(capture: list[str]) -> str:
    assert capture[:5] == ["gcloud", "artifacts", "docker", "images", "describe"], capture
    assert "--format=value(image_summary.digest)" in capture, capture
    return capture[5]


def cloudbuild_pushes(build: dict, commit: str, given: dict[str, str]) -> list[str]:
    """The image references cloudbuild.yaml pushes with `--substitutions` `given`."""
    values = {"PROJECT_ID": PROJECT, "COMMIT_SHA": commit}
    for key, raw in build["substitutions"].items():
        values[key] = given.get(key, substitute(raw, values))
    return [substitute(image, values) for image in build["images"]]


@pytest.fixture(scope="module")
def build(root):
    return yaml.safe_load((root / "cloudbuild.yaml").read_text())


def test_help_and_strict_mode(root):
    result = deploy(root, "--help")
    assert result.returncode == 0 and "scripts/deploy" in result.stdout and "--dry-run" in result.stdout
    assert "set -euo" not in result.stdout
    assert "\nset -euo pipefail\n" in (root / "scripts" / "deploy").read_text()


@pytest.mark.parametrize("region", ["asia-northeast1", "europe-west1"])
def test_the_dry_run_deploys_what_cloud_build_pushes_by_digest(root, tf, build, region):
    result = deploy(root, "--project", PROJECT, "--region", region, "--dry-run")
    assert result.returncode == 0, result.stderr
    commands, captures = parse_dry_run(result.stdout)
    submit, apply = commands[0], commands[-1]

    # 1. Cloud Build with our config, the commit and the region Terraform gets.
    assert submit[:3] == ["gcloud", "builds", "submit"] and submit[-1] == "."
    assert "--config=cloudbuild.yaml" in submit and f"--project={PROJECT}" in submit
    given = dict(kv.split("=", 1) for a in submit if a.startswith("--substitutions=") for kv in a.split("=", 1)[1].split(","))
    assert given == {"COMMIT_SHA": head(root), "_REGION": region}
    pushed = cloudbuild_pushes(build, given["COMMIT_SHA"], given)
    assert [ref.rsplit("/", 1)[1].split(":")[0] for ref in pushed] == list(IMAGES)

    # 2. The digest of each pushed reference is read back, and only those.
    described_refs = {name: described(c) for name, c in captures.items() if name != "collector_digest"}
    assert sorted(described_refs.values()) == sorted(pushed), "scripts/deploy reads other images than Cloud Build pushes"

    # 3. Terraform gets each one in the variable of that image, with the same project and region.
    assert apply[:3] == ["terraform", "-chdir=terraform", "apply"], apply
    variables = tf_vars(apply)
    assert variables["region"] == region and variables["project_id"] == PROJECT
    assert set(variables) <= set(tf.variables), f"unknown Terraform variables {set(variables) - set(tf.variables)}"
    digest_vars = {n for n in tf.variables if n.endswith("_image_digest")}
    assert digest_vars == {f"{image}_image_digest" for image in IMAGES}
    for ref in pushed:
        image = ref.rsplit("/", 1)[1].split(":")[0]
        (capture_name,) = [n for n, r in described_refs.items() if r == ref]
        assert variables[f"{image}_image_digest"] == f"${capture_name}", (image, variables)

    # 4. Terraform, given those digests, runs exactly the pushed images (repository, names, region).
    fake = {f"{image}_image_digest": "sha256:" + hashlib.sha256(image.encode()).hexdigest() for image in IMAGES}
    evaluator = tfeval.Evaluator(tf, root / "terraform", {"project_id": PROJECT, "region": region, **fake})
    images = evaluator.local("images")
    for ref in pushed:
        image = ref.rsplit("/", 1)[1].split(":")[0]
        assert images[image] == ref.rsplit(":", 1)[0] + "@" + fake[f"{image}_image_digest"]

    # 5. The collector too: Terraform's release, pinned to the digest it has now.
    collector_default = tf.variables["otel_collector_image"]["default"]
    assert described(captures["collector_digest"]) == collector_default
    assert variables["otel_collector_image"] == collector_default.rsplit(":", 1)[0] + "@$collector_digest"


def test_no_image_variable_defaults_to_a_tag(tf, build):
    for name, body in tf.variables.items():
        default = body.get("default")
        if isinstance(default, str):
            assert default != "latest" and not default.endswith(":latest"), f"{name} defaults to latest"
        if name.endswith("_image_digest"):
            assert "default" not in body, f"{name} has a default: the deployment must name its build"
        assert not name.endswith("_image_tag"), f"{name}: images are selected by digest"
    collector = tf.variables["otel_collector_image"]
    assert re.search(r":\d+\.\d+\.\d+$", collector["default"]), "the collector default must be a release, not a moving tag"
    (validation,) = collector["validation"]
    assert "@sha256:" in validation["condition"] and "latest" not in validation["condition"]
    # Cloud Build's repository and region are Terraform's.
    assert build["substitutions"]["_REPOSITORY"] == tf.locals["artifact_repository_id"]
    assert build["substitutions"]["_REGION"] == tf.variables["region"]["default"]
    assert tf.locals["registry_host"] == "${var.region}-docker.pkg.dev"
    assert build["substitutions"]["_IMAGE_BASE"] == "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}"


def test_with_local_docker_it_reads_the_tags_docker_build_pushes(root):
    result = deploy(root, "--project", PROJECT, "--builder", "docker", "--tag", "v7", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands, captures = parse_dry_run(result.stdout)
    (build,) = [c for c in commands if c[0] == "scripts/docker-build"]
    assert "--push" in build and build[build.index("--tag") + 1] == "v7"
    # What docker-build (dry run, same arguments) pushes is what deploy then describes.
    pushes = subprocess.run([str(root / build[0]), *build[1:], "--dry-run"], cwd=root, capture_output=True, text=True)
    assert pushes.returncode == 0, pushes.stderr
    pushed = [shlex.split(l)[2] for l in pushes.stdout.splitlines() if l.startswith("docker push ")]
    described_refs = [described(c) for n, c in captures.items() if n != "collector_digest"]
    assert sorted(pushed) == sorted(described_refs) and len(pushed) == len(IMAGES)


def test_first_deployment_creates_the_repository_before_the_push(root, tf):
    result = deploy(root, "--project", PROJECT, "--bootstrap", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands, _ = parse_dry_run(result.stdout)
    assert commands[0] == ["terraform", "-chdir=terraform", "init", "-input=false"]
    targeted = commands[1]
    targets = [a.split("=", 1)[1] for a in targeted if a.startswith("-target=")]
    assert targets and all(tuple(t.split(".")) in tf.resources for t in targets), targets
    assert ("google_artifact_registry_repository", "images") in [tuple(t.split(".")) for t in targets]
    # Terraform asks for the digests even for a targeted apply: valid ones, though they name no image.
    for name, value in tf_vars(targeted).items():
        if name.endswith("_image_digest"):
            assert DIGEST.match(value), value
    assert commands[2][:3] == ["gcloud", "builds", "submit"], "the push comes after the repository"


def test_roll_producer_gets_the_producer_digest(root):
    result = deploy(root, "--project", PROJECT, "--roll-producer", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands, _ = parse_dry_run(result.stdout)
    roll = commands[-1]
    assert roll[0] == "scripts/roll-producer" and roll[roll.index("--digest") + 1] == "$producer_digest"
    assert tf_vars(commands[-2])["producer_image_digest"] == "$producer_digest"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--region", "us-central1"], "Binance"),
        (["--builder", "kaniko"], "--builder"),
        (["--tag", "v7"], "--tag needs"),
        (["--bogus"], "unknown argument"),
    ],
)
def test_refusals(root, args, message):
    result = deploy(root, "--project", PROJECT, *args, "--dry-run")
    assert result.returncode == 2 and message in result.stderr and result.stdout == "", result.stderr


# ---------------------------------------------------------------------------------------------
# For real, against stand-ins that record their arguments


def _stand_ins(tmp_path: Path, describe_output: str | None = None) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    # gcloud: `artifacts docker images describe REF` prints a digest derived from REF.
    answer = (
        f'echo "{describe_output}"'
        if describe_output is not None
        else 'printf "sha256:%s\\n" "$(printf %s "$5" | sha256sum | cut -c1-64)"'
    )
    (bin_dir / "gcloud").write_text(
        f'#!/bin/bash\nprintf "gcloud %s\\n" "$*" >> {log}\n'
        f'if [[ "$1 $2 $3 $4" == "artifacts docker images describe" ]]; then {answer}; fi\n'
    )
    (bin_dir / "terraform").write_text(f'#!/bin/bash\nprintf "terraform %s\\n" "$*" >> {log}\n')
    for tool in ("gcloud", "terraform"):
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def test_the_digests_it_reads_are_the_digests_it_applies(root, tmp_path):
    env, log = _stand_ins(tmp_path)
    result = deploy(root, "--project", PROJECT, "--allow-dirty", "--auto-approve", env=env)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("gcloud builds submit ")
    (apply,) = [shlex.split(c) for c in calls if c.startswith("terraform ")]
    variables = tf_vars(apply)
    refs = [c.split()[5] for c in calls if " images describe " in c]
    expected = {ref: "sha256:" + hashlib.sha256(ref.encode()).hexdigest() for ref in refs}
    for ref, digest in expected.items():
        image = ref.rsplit("/", 1)[1].split(":")[0]
        if image.startswith("otelcol"):
            assert variables["otel_collector_image"] == ref.rsplit(":", 1)[0] + "@" + digest
        else:
            assert variables[f"{image}_image_digest"] == digest
    assert "-auto-approve" in apply
    assert "scripts/roll-producer --project my-project --region asia-northeast1 --digest sha256:" in result.stderr


@pytest.mark.parametrize("answer", ["", "latest", "sha256:abc"])
def test_it_stops_before_terraform_when_the_registry_gives_no_digest(root, tmp_path, answer):
    env, log = _stand_ins(tmp_path, describe_output=answer)
    result = deploy(root, "--project", PROJECT, "--allow-dirty", "--builder", "none", env=env)
    assert result.returncode == 1 and "not a digest" in result.stderr, result.stderr
    assert not any(c.startswith("terraform ") for c in log.read_text().splitlines())
