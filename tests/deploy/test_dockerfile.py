"""The Dockerfile builds each image's binary in release mode from a crate that has it, and ships
it on a minimal non-root runtime with CA certificates, no shell, the right port and labels."""

from __future__ import annotations

import re

import pytest

import deploymodel
from conftest import CONTRACT_PORTS, IMAGES

MINIMAL_BASES = re.compile(r"^(gcr\.io/distroless/(static|cc|base)-debian\d+|debian:[\w.-]*slim)")


def builder_run(dockerfile) -> str:
    runs = [i.args for i in dockerfile.stage("builder").all("RUN") if "cargo build" in i.args]
    assert len(runs) == 1, "the builder stage must run `cargo build` exactly once"
    return runs[0]


def test_the_builder_compiles_every_image_in_release_mode_with_the_lockfile(dockerfile, workspace):
    run = builder_run(dockerfile)
    assert "--release" in run and "--locked" in run, run
    cargo = re.search(r"cargo build[^&;]*", run).group(0)
    packages = re.findall(r"-p (\S+)", cargo)
    for image in IMAGES:
        owner = workspace.package_of_bin(image)
        assert owner.name in packages, f"`cargo build` does not build package {owner.name} (binary {image})"
        assert f"target/release/{image}" in run, f"the builder does not copy target/release/{image} out"
    for package in packages:
        assert package in workspace.packages, f"`-p {package}`: no such package in the workspace"


def test_the_builder_gets_the_revision_as_a_build_arg(dockerfile):
    builder = dockerfile.stage("builder")
    assert any(i.args.split("=")[0] == "GIT_REVISION" for i in builder.all("ARG"))
    assert any("GIT_REVISION=${GIT_REVISION}" in i.args for i in builder.all("ENV")), "build-info reads it from the env"


def test_the_rust_image_is_new_enough_for_the_workspace(dockerfile, workspace):
    base = dockerfile.resolve_base(dockerfile.stage("builder"))
    found = re.match(r"rust:(\d+)\.(\d+)", base)
    assert found, f"builder base {base!r} is not a versioned rust image"
    root_manifest = deploymodel.tomllib.loads((workspace.root / "Cargo.toml").read_text())
    need = tuple(int(x) for x in root_manifest["workspace"]["package"]["rust-version"].split(".")[:2])
    assert (int(found.group(1)), int(found.group(2))) >= need, f"{base} is older than rust-version {need}"


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_runs_its_binary_as_entrypoint(dockerfile, workspace, image):
    stage = dockerfile.stage(image)
    entrypoint = stage.all("ENTRYPOINT")
    assert len(entrypoint) == 1, f"{image}: one ENTRYPOINT"
    argv = entrypoint[0].exec_form()
    assert argv, f"{image}: ENTRYPOINT must use the exec form (no shell to run the shell form)"
    assert argv == [f"/usr/local/bin/{image}"]
    copies = [i.args for i in stage.all("COPY")]
    assert f"--from=builder /out/{image} /usr/local/bin/{image}" in copies, copies
    workspace.package_of_bin(image)  # the binary exists in exactly one crate


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_is_minimal_non_root_with_ca_certificates_and_no_shell(dockerfile, image):
    chain = dockerfile.chain(image)
    base = dockerfile.resolve_base(chain[-1])
    assert MINIMAL_BASES.match(base), f"{image}: runtime base {base!r} is not distroless or debian-slim"
    assert ":debug" not in base, f"{image}: the distroless :debug variants contain a shell"
    runs = [i for stage in chain for i in stage.all("RUN")]
    if base.startswith("gcr.io/distroless/"):
        # distroless ships CA certificates and no shell: a RUN could not even execute.
        assert base.split("/")[2].startswith(("cc", "base")) or "static" in base
        assert not runs, f"{image}: RUN in a distroless stage (no shell there)"
    else:
        assert any("ca-certificates" in r.args for r in runs), f"{image}: install ca-certificates on {base}"
    users = [i.args for stage in chain for i in stage.all("USER")]
    assert users, f"{image}: no USER: it would run as root"
    user = users[0].split(":")[0]
    assert user not in ("0", "root"), f"{image}: runs as {users[0]}"
    if ":nonroot" not in base:
        assert user.isdigit(), f"{image}: use a numeric uid so Kubernetes-style runAsNonRoot checks can verify it"


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_exposes_the_binarys_metrics_port(dockerfile, workspace, image):
    exposed = [i.args for i in dockerfile.stage(image).all("EXPOSE")]
    assert exposed == [str(CONTRACT_PORTS[image])], f"{image}: EXPOSE {exposed}, contract port {CONTRACT_PORTS[image]}"
    default = deploymodel.source_default(workspace.package_of_bin(image).dir, "METRICS_ADDR")
    assert default is not None, (
        f"{image}: no clap argument with env = \"METRICS_ADDR\" and a default_value in "
        f"{workspace.package_of_bin(image).dir.name}/src (the contract gives it 0.0.0.0:{CONTRACT_PORTS[image]})"
    )
    assert default.rsplit(":", 1)[1] == exposed[0], f"{image}: METRICS_ADDR default {default}, EXPOSE {exposed[0]}"


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_documents_health_stop_signal_and_labels(dockerfile, workspace, image):
    chain = dockerfile.chain(image)
    assert any(stage.all("HEALTHCHECK") for stage in chain), f"{image}: say what HEALTHCHECK is (NONE with a reason)"
    assert [i.args for s in chain for i in s.all("STOPSIGNAL")][:1] == ["SIGTERM"]
    found = deploymodel.labels(chain)
    assert found.get("org.opencontainers.image.title") == image
    assert found.get("org.opencontainers.image.revision") == "${GIT_REVISION}"
    assert found.get("org.opencontainers.image.version") == "${VERSION}"
    assert found.get("org.opencontainers.image.source", "").startswith("https://")
    args = {i.args.split("=")[0]: i.args.partition("=")[2] for s in chain for i in s.all("ARG")}
    assert "GIT_REVISION" in args, f"{image}: the label needs ARG GIT_REVISION in the runtime stage"
    assert args.get("VERSION") == workspace.version, f"ARG VERSION default {args.get('VERSION')} != {workspace.version}"


def test_the_runtime_stages_copy_only_from_the_builder(dockerfile):
    for image in IMAGES:
        for stage in dockerfile.chain(image):
            for copy in stage.all("COPY"):
                assert copy.args.startswith("--from=builder "), f"{image}: {copy.args}"
