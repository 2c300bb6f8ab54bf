"""The DAG we ship, imported as Composer would and run end to end against the simulator and
bqemulator with the real batch binary (BATCH_LOCAL_BINARY switches only where the steps run).
"""

from __future__ import annotations

import importlib.util
import inspect
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
COMPOSER_TF = ROOT / "terraform" / "composer.tf"
STEPS = ["scd", "klines", "reconcile", "check"]
ALL = ["plan", *STEPS]
# Any fixed go-live day for the tests that do not care which.
START = "2026-03-10"


def load_dag(env: dict[str, str], monkeypatch, start: str | None = START):
    """Imports dags/binance_daily.py afresh under `env` (the DAG reads env vars at parse time);
    PIPELINE_START_DATE is `start` unless `env` names it."""
    for key in ("BATCH_LOCAL_BINARY", "SYMBOLS", "BQ_MARKET_DATASET", "BQ_DWH_DATASET", "BQ_SCD_DATASET", "PIPELINE_START_DATE"):
        monkeypatch.delenv(key, raising=False)
    if start is not None:
        monkeypatch.setenv("PIPELINE_START_DATE", start)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = f"binance_daily_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(name, DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.dag


def test_the_dags_folder_imports_without_errors(monkeypatch):
    from airflow.models import DagBag

    monkeypatch.setenv("PIPELINE_START_DATE", START)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert list(bag.dags) == ["binance_daily"]


@pytest.mark.parametrize(
    "value,why",
    [(None, "is not set"), ("", "is not set"), ("2026-3-1", "YYYY-MM-DD"), ("2026-02-30", "not a calendar day")],
)
def test_a_missing_or_malformed_start_date_fails_the_import_naming_the_variable(monkeypatch, value, why):
    from airflow.models import DagBag

    monkeypatch.delenv("PIPELINE_START_DATE", raising=False)
    if value is not None:
        monkeypatch.setenv("PIPELINE_START_DATE", value)
    bag = DagBag(dag_folder=str(DAGS))
    assert list(bag.dags) == []
    errors = list(bag.import_errors.values())
    assert len(errors) == 1, bag.import_errors
    assert "PIPELINE_START_DATE" in errors[0] and why in errors[0], errors[0]


# ---- what the scheduler creates: Airflow's own next_dagrun_info on the serialized DAG ----

def serialized(dag):
    """The DAG as the scheduler sees it (it schedules from the serialized form, not the file)."""
    try:  # Airflow 3
        from airflow.serialization.serialized_objects import DagSerialization

        return DagSerialization.from_dict(DagSerialization.to_dict(dag))
    except ImportError:  # Airflow 2
        from airflow.serialization.serialized_objects import SerializedDAG

        return SerializedDAG.from_dict(SerializedDAG.to_dict(dag))


def scheduled_until(dag, now: datetime) -> list[datetime]:
    """The data-interval starts of every run the scheduler creates by `now` on a fresh deploy:
    the scheduler's own loop, the next run computed from the last automated one (Airflow 3
    passes the DagRunInfo, Airflow 2 the data interval), created once its run_after has passed."""
    s = serialized(dag)
    starts, last = [], None
    while True:
        if "last_automated_run_info" in inspect.signature(s.next_dagrun_info).parameters:
            info = s.next_dagrun_info(last_automated_run_info=last)  # Airflow 3
            last = info
        else:
            info = s.next_dagrun_info(last.data_interval if last else None)  # Airflow 2
            last = info
        if info is None or info.run_after > now:
            return starts
        starts.append(info.data_interval.start)
        assert len(starts) < 1000, "runaway schedule"


def midnight(days_ago: int) -> datetime:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def test_a_first_deploy_on_the_go_live_day_queues_no_run_and_the_first_run_is_that_day(monkeypatch):
    today = midnight(0)
    dag = load_dag({}, monkeypatch, start=today.strftime("%Y-%m-%d"))
    now = datetime.now(timezone.utc)
    assert scheduled_until(dag, now) == []
    # The next run, after tonight's midnight, loads the go-live day itself.
    assert scheduled_until(dag, today + timedelta(days=1, minutes=1)) == [today]


def test_no_run_is_ever_scheduled_before_the_start_date_and_missed_days_are_caught_up(monkeypatch):
    start = midnight(3)
    dag = load_dag({}, monkeypatch, start=start.strftime("%Y-%m-%d"))
    runs = scheduled_until(dag, datetime.now(timezone.utc))
    # Catchup bounded by the start date: the three days since it, each once, none before it
    # (catchup=False would give only the last one; the old fixed 2026-01-01 gave ~335).
    assert runs == [start, start + timedelta(days=1), start + timedelta(days=2)], runs
    assert dag.catchup is True


def test_the_scd_step_runs_one_task_instance_at_a_time_across_runs(monkeypatch):
    dag = load_dag({"SYMBOLS": "BTCUSDT,ARBUSDT"}, monkeypatch)
    for d in (dag, serialized(dag)):  # what the file says and what the scheduler reads
        scd = d.task_dict["symbol.scd"]
        assert scd.max_active_tis_per_dag == 1
        assert scd.max_active_tis_per_dagrun is None
    assert dag.max_active_runs == 2


def test_composer_sets_the_start_date_from_terraform_go_live_date():
    env = re.search(r"env_variables\s*=\s*\{(.*?)\n\s*\}", COMPOSER_TF.read_text(), re.S)
    assert env, "no env_variables in terraform/composer.tf"
    assert re.search(r"^\s*PIPELINE_START_DATE\s*=\s*var\.go_live_date\s*$", env.group(1), re.M), env.group(1)


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
    assert dag.task_dict["symbol.scd"].max_active_tis_per_dag == 1


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
    # ... except the start date, which must be given; Composer gets it from Terraform.
    assert re.search(r'START_DATE_VAR = "PIPELINE_START_DATE"', text)
    assert "PIPELINE_START_DATE" in COMPOSER_TF.read_text()


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
        # The two days run here are after the go-live day (a run before it is never scheduled).
        "PIPELINE_START_DATE": midnight(10).strftime("%Y-%m-%d"),
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
