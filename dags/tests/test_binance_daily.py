"""The DAG we ship, imported as Composer would and run end to end against the simulator and
bqemulator with the real batch binary (BATCH_LOCAL_BINARY switches only where the steps run).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import DAGS, ROOT

DAG_FILE = DAGS / "binance_daily.py"
STEPS = ["scd", "klines", "reconcile", "check"]
ALL = ["plan", *STEPS]


def load_dag(env: dict[str, str], monkeypatch):
    """Imports dags/binance_daily.py afresh under `env` (the DAG reads env vars at parse time)."""
    for key in ("BATCH_LOCAL_BINARY", "SYMBOLS", "BQ_MARKET_DATASET", "BQ_DWH_DATASET", "BQ_SCD_DATASET"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = f"binance_daily_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(name, DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.dag


def test_the_dags_folder_imports_without_errors():
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert list(bag.dags) == ["binance_daily"]


def test_task_graph_per_symbol_in_the_original_order(monkeypatch):
    dag = load_dag({"SYMBOLS": "BTCUSDT,ARBUSDT"}, monkeypatch)
    assert sorted(dag.task_dict) == sorted(f"symbol.{s}" for s in ALL)
    for upstream, downstream in zip(STEPS, STEPS[1:]):
        assert f"symbol.{downstream}" in dag.task_dict[f"symbol.{upstream}"].downstream_task_ids
        assert dag.task_dict[f"symbol.{downstream}"].upstream_task_ids >= {f"symbol.{upstream}", "symbol.plan"}
    assert dag.task_dict["symbol.scd"].upstream_task_ids == {"symbol.plan"}
    assert dag.catchup is True
    assert dag.max_active_runs == 2
    assert {"binance", "batch"} <= set(dag.tags)
    assert "CloudRunExecuteJobOperator" in dag.doc_md
    check = dag.task_dict["symbol.check"]
    assert check.retries == 1
    klines = dag.task_dict["symbol.klines"]
    assert klines.retries == 3 and klines.retry_exponential_backoff
    assert klines.execution_timeout == timedelta(minutes=25)
    assert dag.task_dict["symbol.scd"].max_active_tis_per_dagrun == 1


def test_in_composer_each_step_is_the_cloud_run_job_with_its_arguments(monkeypatch):
    env = {
        "SYMBOLS": "BTCUSDT,ARBUSDT",
        "BATCH_JOB_NAME": "binance-batch",
        "BATCH_JOB_REGION": "asia-northeast1",
        "GCP_PROJECT": "proj",
        "BQ_DWH_DATASET": "dwh",
    }
    dag = load_dag(env, monkeypatch)
    from airflow.providers.google.cloud.operators.cloud_run import CloudRunExecuteJobOperator

    klines = dag.task_dict["symbol.klines"]
    assert isinstance(klines, CloudRunExecuteJobOperator)
    assert (klines.job_name, klines.region, klines.project_id) == ("binance-batch", "asia-northeast1", "proj")
    module = sys.modules[dag.fileloc and [m for m in sys.modules if m.startswith("binance_daily_")][-1]]
    klines_args = module.step_argument("klines", "BTCUSDT", "2026-01-31")["container_overrides"][0]["args"]
    assert klines_args[:5] == ["klines", "--date", "2026-01-31", "--symbols", "BTCUSDT"]
    assert module.step_argument("scd", "ARBUSDT", "2026-01-31")["container_overrides"][0]["args"][:3] == [
        "symbols",
        "--symbols",
        "ARBUSDT",
    ]


def test_the_dag_reads_no_env_var_composer_does_not_set():
    text = DAG_FILE.read_text()
    required = set(re.findall(r"os\.environ\[\s*['\"](\w+)['\"]\s*\]", text))
    required |= set(re.findall(r"os\.(?:environ\.get|getenv)\(\s*['\"](\w+)['\"]\s*\)", text))
    assert required == set(), "every env read has a default, so a missing one never breaks parsing"


# ---- end to end: dag.test() against the simulator and bqemulator ----

def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"


@pytest.fixture(scope="module")
def stack():
    """The simulator binary on a free port, bqemulator from scripts/test (PIPELINE_* vars)."""
    rest = os.environ.get("PIPELINE_BQ_REST_ENDPOINT")
    grpc = os.environ.get("PIPELINE_BQ_GRPC_ENDPOINT")
    batch = target_dir() / "batch"
    sim_bin = target_dir() / "binance-sim"
    if not (rest and grpc and batch.exists() and sim_bin.exists()):
        pytest.skip("needs PIPELINE_BQ_* endpoints and built batch/binance-sim (run scripts/test-dags)")
    sim = subprocess.Popen(
        [str(sim_bin), "--port", "0", "--history-days", "5", "--rates", "STXUSDT=0.02,ARBUSDT=0.02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = sim.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        assert match, f"simulator did not start: {line!r}"
        yield {"rest": rest, "grpc": grpc, "batch": str(batch), "sim": f"http://{match.group(1)}"}
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def bq(rest: str, sql: str) -> dict:
    body = json.dumps({"query": sql, "useLegacySql": False}).encode()
    request = urllib.request.Request(
        f"{rest}/bigquery/v2/projects/local-project/queries",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def states(run) -> dict[str, str]:
    out = {}
    for ti in run.get_task_instances():
        out.setdefault(ti.task_id, set()).add(str(ti.state).split(".")[-1].lower())
    return out


def test_a_day_runs_end_to_end_then_a_broken_day_fails_at_the_check(stack, airflow_db, monkeypatch):
    suffix = secrets.token_hex(4)
    env = {
        "BATCH_LOCAL_BINARY": stack["batch"],
        "GCP_PROJECT": "local-project",
        "BIGQUERY_ENDPOINT": stack["rest"],
        "BIGQUERY_GRPC_ENDPOINT": stack["grpc"],
        "BINANCE_REST_URL": stack["sim"],
        "SYMBOLS": "STXUSDT,ARBUSDT",
        "BQ_MARKET_DATASET": f"market_{suffix}",
        "BQ_DWH_DATASET": f"dwh_{suffix}",
        "BQ_SCD_DATASET": f"scd_{suffix}",
        "LOG_FORMAT": "text",
        "METRICS_ADDR": "127.0.0.1:0",
    }
    subprocess.run([stack["batch"], "setup"], env={**os.environ, **env}, check=True)
    dag = load_dag(env, monkeypatch)
    for task in dag.tasks:
        task.retries = 0  # a failure must show at once, not after backoff

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    # A run at midnight processes the day that ended (its data interval), as in production.
    day = dag.timetable.infer_manual_data_interval(run_after=today).start
    assert day == today - timedelta(days=1)
    run = dag.test(logical_date=today)
    got = states(run)
    assert got == {f"symbol.{s}": {"success"} for s in ALL}, got

    klines = bq(stack["rest"], f"SELECT COUNT(*) AS n FROM `local-project.dwh_{suffix}.klines_stxusdt`")
    assert klines["rows"][0]["f"][0]["v"] == "1440"
    history = bq(stack["rest"], f"SELECT COUNT(*) AS n FROM `local-project.scd_{suffix}.symbols_history`")
    assert history["rows"][0]["f"][0]["v"] == "2"

    # Break the day before: a trade Binance never had, inside the day, in market.trades.
    broken = dag.timetable.infer_manual_data_interval(run_after=day).start
    assert broken == day - timedelta(days=1)
    at = int((broken + timedelta(hours=3)).timestamp() * 1_000_000)
    inserted = bq(
        stack["rest"],
        f"INSERT INTO `local-project.market_{suffix}.trades_raw` (symbol, trade_id, price, quantity, "
        f"trade_time, event_time, receive_time, buyer_is_maker, source) VALUES ('ARBUSDT', 999999999999, "
        f"1, 1, TIMESTAMP_MICROS({at}), TIMESTAMP_MICROS({at}), TIMESTAMP_MICROS({at}), TRUE, 'stream')",
    )
    assert inserted.get("numDmlAffectedRows") == "1", inserted
    run = dag.test(logical_date=day)
    got = states(run)
    assert got["symbol.klines"] == {"success"} and got["symbol.reconcile"] == {"success"}, got
    assert got["symbol.check"] == {"success", "failed"}, got  # STXUSDT passes, ARBUSDT fails
