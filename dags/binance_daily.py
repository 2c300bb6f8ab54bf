"""binance_daily: the daily batch of the Binance pipeline, one UTC day per run.

For each symbol (dynamic task mapping over ``SYMBOLS``), in the original assessment's order,
plus reconciliation:

1. ``scd``        ``batch symbols``: exchangeInfo into ``dwh.symbols`` and the type-2 history in
                  ``scd.symbols_history`` (a change closes one version and opens one; no change
                  writes nothing). One at a time across runs: they MERGE into the same table.
2. ``klines``     ``batch klines --date D``: the day's 1-minute klines into
                  ``dwh.klines_<symbol>``, replacing that day (a rerun changes nothing).
3. ``reconcile``  ``batch reconcile --date D``: trade ids missing from ``market.trades`` fetched
                  over REST and appended with ``source = batch``.
4. ``check``      ``batch check --date D``: 1440 contiguous, sane klines and exactly the day's
                  trade ids in ``market.trades``; fails the run, naming symbol, date and problem.

Runs after each UTC midnight for the day that ended (``data_interval_start``), from
``PIPELINE_START_DATE`` on: the first day the DAG loads (the go-live day, Terraform's
``go_live_date``), ``YYYY-MM-DD``, required (a missing or malformed value fails the DAG's import
with a message naming the variable). ``catchup=True`` is bounded by that start date: a deploy
queues one run per day from the start date to yesterday and none before it, and days missed
while the scheduler was down are run when it comes back (``catchup=False`` would skip them
silently). So a first deploy on the go-live day queues nothing. Days before the start date are
never scheduled; load them explicitly with ``batch backfill --from D1 --to D2 [--trades]``,
which is bounded (``--max-days``) and has a REST weight budget of its own
(``--max-weight-per-minute``). Every step is idempotent, so a retry or a rerun of any day is safe.

At most two runs at a time (``max_active_runs=2``), and the SCD step runs one task instance at a
time across all runs and symbols (``max_active_tis_per_dag=1``): every ``scd`` MERGEs into the
same ``scd.symbols_history`` table.

Where the steps run: in Cloud Composer, as the ``batch`` Cloud Run job
(``CloudRunExecuteJobOperator`` with per-task argument overrides). Locally and in tests, the very
same DAG runs the ``batch`` binary directly when ``BATCH_LOCAL_BINARY`` names it (the binary then
reads ``GCP_PROJECT``, ``BIGQUERY_ENDPOINT``, ``BINANCE_REST_URL``... from the environment).

Environment (set by Composer, see terraform/composer.tf): ``PIPELINE_START_DATE`` (required),
``BATCH_JOB_NAME``, ``BATCH_JOB_REGION``, ``BQ_MARKET_DATASET``, ``BQ_DWH_DATASET``,
``BQ_SCD_DATASET``, ``SYMBOLS``; ``GCP_PROJECT`` is set by Composer itself. Valid on Airflow 2
(Composer 3's default) and Airflow 3.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import datetime, timedelta, timezone

try:  # Airflow 3
    from airflow.sdk import DAG, task, task_group
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task, task_group

try:  # Airflow 3 (and Airflow 2 with the standard provider)
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

from airflow.timetables.interval import CronDataIntervalTimetable

DAG_ID = "binance_daily"
DEFAULT_SYMBOLS = "BTCUSDT,AAVEUSDT,STXUSDT,ARBUSDT"

SYMBOLS = [s.strip().upper() for s in os.environ.get("SYMBOLS", DEFAULT_SYMBOLS).split(",") if s.strip()]
# Local switch: the path of a `batch` binary; unset (as in Composer) = run the Cloud Run job.
LOCAL_BINARY = os.environ.get("BATCH_LOCAL_BINARY", "")
GCP_PROJECT = os.environ.get("GCP_PROJECT", "")
BATCH_JOB_NAME = os.environ.get("BATCH_JOB_NAME", "binance-batch")
BATCH_JOB_REGION = os.environ.get("BATCH_JOB_REGION", "asia-northeast1")
DATASETS = {
    "BQ_MARKET_DATASET": os.environ.get("BQ_MARKET_DATASET", "market"),
    "BQ_DWH_DATASET": os.environ.get("BQ_DWH_DATASET", "dwh"),
    "BQ_SCD_DATASET": os.environ.get("BQ_SCD_DATASET", "scd"),
}

# The first UTC day the DAG loads. Required: a default would be a date someone forgot to change,
# and a start date long before go-live makes the first deploy queue one heavy run per day since.
START_DATE_VAR = "PIPELINE_START_DATE"


def start_date_from(environ) -> datetime:
    """The DAG's start_date from ``environ[PIPELINE_START_DATE]`` (``YYYY-MM-DD``, a UTC midnight);
    raises ValueError naming the variable when it is missing or not a calendar day."""
    raw = (environ.get(START_DATE_VAR) or "").strip()
    if not raw:
        raise ValueError(
            f"{START_DATE_VAR} is not set: it must name the first UTC day the DAG loads, as YYYY-MM-DD "
            "(Terraform sets it in Composer from var.go_live_date; earlier days: `batch backfill`)"
        )
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise ValueError(f"{START_DATE_VAR}={raw!r} is not a day written YYYY-MM-DD (e.g. 2026-03-10)")
    try:
        day = datetime.strptime(raw, "%Y-%m-%d")
    except ValueError as e:
        raise ValueError(f"{START_DATE_VAR}={raw!r} is not a calendar day: {e}") from None
    return day.replace(tzinfo=timezone.utc)


START_DATE = start_date_from(os.environ)

# The UTC day that ended: the data interval is [D 00:00, D+1 00:00) on both Airflow 2 and 3
# (an explicit CronDataIntervalTimetable: Airflow 3's default cron timetable has no interval).
# The `plan` task writes it into each step's arguments at run time: values reaching an operator
# through task mapping are not rendered as Jinja templates.
DAY = "{day}"

# Per step: the batch arguments and how long one attempt may take. Timeouts are generous for a
# day of four symbols (klines: two REST pages per symbol; reconcile: up to ~3M ids for BTCUSDT
# at 1000 per request and Binance's weight budget).
STEPS = {
    "scd": (["symbols"], timedelta(minutes=10)),
    "klines": (["klines", "--date", DAY], timedelta(minutes=20)),
    "reconcile": (["reconcile", "--date", DAY], timedelta(hours=2)),
    "check": (["check", "--date", DAY], timedelta(minutes=20)),
}


def batch_args(step: str, symbol: str, day: str) -> list[str]:
    """The batch command line of one step for one symbol and day (datasets travel as flags)."""
    args, _ = STEPS[step]
    return [
        *(a.format(day=day) for a in args),
        "--symbols",
        symbol,
        "--market-dataset",
        DATASETS["BQ_MARKET_DATASET"],
        "--dwh-dataset",
        DATASETS["BQ_DWH_DATASET"],
        "--scd-dataset",
        DATASETS["BQ_SCD_DATASET"],
    ]


def step_argument(step: str, symbol: str, day: str):
    """What a step's operator receives: a shell command locally, Cloud Run overrides in GCP."""
    args = batch_args(step, symbol, day)
    if LOCAL_BINARY:
        return " ".join(shlex.quote(a) for a in [LOCAL_BINARY, *args])
    return {
        "container_overrides": [{"args": args}],
        "task_count": 1,
        "timeout": f"{int(STEPS[step][1].total_seconds())}s",
    }


def make_step(step: str, argument, **extra):
    """One step's operator (inside the mapped per-symbol group)."""
    timeout = STEPS[step][1]
    if LOCAL_BINARY:
        return BashOperator(
            task_id=step,
            bash_command=argument,
            append_env=True,
            execution_timeout=timeout,
            **extra,
        )
    from airflow.providers.google.cloud.operators.cloud_run import CloudRunExecuteJobOperator

    return CloudRunExecuteJobOperator(
        task_id=step,
        project_id=GCP_PROJECT,
        region=BATCH_JOB_REGION,
        job_name=BATCH_JOB_NAME,
        overrides=argument,
        # The operator waits for the execution; a little more than the job's own timeout.
        execution_timeout=timeout + timedelta(minutes=5),
        **extra,
    )


default_args = {
    "owner": "data-platform",
    "depends_on_past": False,
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
}

with DAG(
    dag_id=DAG_ID,
    description="Daily Binance batch: symbol SCD, 1m klines, trade reconciliation, checks",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # Bounded catchup: runs from START_DATE to yesterday, none before it (see the docstring).
    start_date=START_DATE,
    catchup=True,
    max_active_runs=2,
    dagrun_timeout=timedelta(hours=4),
    default_args=default_args,
    tags=["binance", "batch", "bigquery", "scd"],
) as dag:

    @task(multiple_outputs=True, retries=0)
    def plan(symbol: str, data_interval_start=None) -> dict:
        """Every step's arguments for this symbol and the day that ended."""
        day = data_interval_start.strftime("%Y-%m-%d")
        return {step: step_argument(step, symbol, day) for step in STEPS}

    @task_group(group_id="symbol")
    def per_symbol(symbol):
        """plan -> scd -> klines -> reconcile -> check for one symbol."""
        p = plan(symbol)
        # One at a time across every run and symbol: each MERGEs into scd.symbols_history, and
        # max_active_tis_per_dagrun would let two runs (max_active_runs=2) MERGE at once.
        s = make_step("scd", p["scd"], max_active_tis_per_dag=1)
        k = make_step("klines", p["klines"])
        r = make_step("reconcile", p["reconcile"])
        # A failed check is a data problem, not a transient one: one retry only.
        c = make_step("check", p["check"], retries=1)
        s >> k >> r >> c

    per_symbol.expand(symbol=SYMBOLS)
