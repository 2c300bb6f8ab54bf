"""scripts/roll-producer: its readiness test on real-looking /metrics text, and the order of its
steps on the VM (start the new one, wait, stop the old one, swap the unit, wait, stop the bridge),
run in dry-run mode against a rendered-looking unit file."""

from __future__ import annotations

import shlex
import subprocess

import pytest

SYMBOLS = "BTCUSDT,AAVEUSDT,STXUSDT,ARBUSDT"
OLD_DIGEST = "sha256:" + "a" * 64
NEW_DIGEST = "sha256:" + "b" * 64
OLD = f"asia-northeast1-docker.pkg.dev/p/binance-pipeline/producer@{OLD_DIGEST}"
NEW = f"asia-northeast1-docker.pkg.dev/p/binance-pipeline/producer@{NEW_DIGEST}"


def metrics(counts: dict[str, int], backfill: dict[str, int] | None = None) -> str:
    lines = [
        "# HELP producer_trades_published Trades acknowledged by Pub/Sub, by symbol and source",
        "# TYPE producer_trades_published counter",
    ]
    for symbol, n in counts.items():
        lines.append(f'producer_trades_published_total{{symbol="{symbol}",source="stream"}} {n}')
    for symbol, n in (backfill or {}).items():
        lines.append(f'producer_trades_published_total{{symbol="{symbol}",source="backfill"}} {n}')
    lines.append('producer_trades_received_total{symbol="STXUSDT",source="stream"} 9')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def caught_up(root, text: str, symbols: str = SYMBOLS):
    return subprocess.run(
        [str(root / "scripts" / "roll-producer"), "caught-up", symbols], input=text, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "counts,backfill,missing",
    [
        ({"BTCUSDT": 120, "AAVEUSDT": 3, "STXUSDT": 1, "ARBUSDT": 7}, None, None),
        ({"BTCUSDT": 120, "AAVEUSDT": 3, "STXUSDT": 0, "ARBUSDT": 7}, None, "STXUSDT"),
        ({"BTCUSDT": 120, "AAVEUSDT": 3, "STXUSDT": 0, "ARBUSDT": 7}, {"STXUSDT": 2}, None),
        ({"BTCUSDT": 120, "AAVEUSDT": 3, "ARBUSDT": 7}, None, "STXUSDT"),
        ({}, None, "BTCUSDT AAVEUSDT STXUSDT ARBUSDT"),
    ],
    ids=["all", "one-at-zero", "backfill-counts", "one-absent", "fresh-process"],
)
def test_caught_up_needs_every_symbol_published(root, counts, backfill, missing):
    result = caught_up(root, metrics(counts, backfill))
    if missing is None:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode == 1
        assert result.stdout.strip() == f"not yet published: {missing}"


def test_the_received_counter_does_not_count_as_published(root):
    text = metrics({"BTCUSDT": 1, "AAVEUSDT": 1, "ARBUSDT": 1})  # STXUSDT only received
    assert caught_up(root, text).returncode == 1


def test_on_vm_starts_the_new_one_before_stopping_the_old_one(root, tmp_path, binaries):
    unit = tmp_path / "producer.service"
    unit.write_text(
        "[Service]\nExecStart=/usr/bin/docker run --rm --name=producer --network=host "
        f"--env-file=/etc/binance-pipeline/producer.env {OLD}\nRestart=always\n"
    )
    result = subprocess.run(
        [str(root / "scripts" / "roll-producer"), "on-vm", "--image", NEW, "--unit-file", str(unit), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.strip()]
    index = {}
    for i, line in enumerate(steps):
        for key, marker in {
            "start-bridge": "docker run -d --name=producer-bridge",
            "wait-bridge": "# wait until http://127.0.0.1:9110/",
            "stop-old": "systemctl stop producer",
            "swap": "sed -i",
            "start-new": "systemctl start producer",
            "wait-new": "# wait until http://127.0.0.1:9100/",
            "stop-bridge": "docker stop --time=30 producer-bridge",
        }.items():
            if marker in line:
                index.setdefault(key, i)
    order = ["start-bridge", "wait-bridge", "stop-old", "swap", "start-new", "wait-new", "stop-bridge"]
    assert [k for k in order if k in index] == order, steps
    assert sorted(index, key=index.get) == order, steps
    bridge = shlex.split(steps[index["start-bridge"]])
    assert NEW in bridge and "--env-file=/etc/binance-pipeline/producer.env" in bridge
    # Two writers of one state file would corrupt the resume point: the bridge keeps none.
    assert "--state-file=" in bridge[bridge.index(NEW) + 1 :], bridge
    # What follows the image goes to the producer: flags it must accept.
    flags = [a.split("=", 1)[0] for a in bridge[bridge.index(NEW) + 1 :] if a.startswith("--")]
    accepted = binaries.cli("producer").options
    for flag in flags:
        assert flag in accepted, f"the bridge passes {flag}, which `producer --help` does not list"
    assert shlex.split(steps[index["swap"]])[-2:] == [f"s#{OLD}#{NEW}#g", str(unit)]


def test_on_vm_does_nothing_when_the_unit_already_runs_the_image(root, tmp_path):
    unit = tmp_path / "producer.service"
    unit.write_text(f"[Service]\nExecStart=/usr/bin/docker run --rm --name=producer {NEW}\n")
    result = subprocess.run(
        [str(root / "scripts" / "roll-producer"), "on-vm", "--image", NEW, "--unit-file", str(unit), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and result.stdout == "" and "nothing to do" in result.stderr


def test_the_stop_grace_matches_terraform(root, tf):
    from deploymodel import template_call

    script = (root / "scripts" / "roll-producer").read_text()
    assert f"STOP_SECONDS={template_call(tf, 'google_compute_instance', 'producer')['stop_timeout_seconds']}" in script


def test_from_the_workstation_it_ssh_es_through_iap_and_runs_itself_as_root(root):
    result = subprocess.run(
        [str(root / "scripts" / "roll-producer"), "--digest", NEW_DIGEST, "--project", "p", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[:4] == ["gcloud", "compute", "ssh", "binance-producer"]
    assert "--tunnel-through-iap" in argv
    remote = argv[argv.index("--command") + 1]
    assert remote.startswith("sudo bash -s -- on-vm --image " + NEW)


@pytest.mark.parametrize("argv", [["--tag", "bbbbbbbbbbbb"], ["--digest", "bbbbbbbbbbbb"], ["--digest", "sha256:" + "B" * 64]])
def test_from_the_workstation_it_needs_the_digest_terraform_runs(root, argv):
    result = subprocess.run(
        [str(root / "scripts" / "roll-producer"), *argv, "--project", "p", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
