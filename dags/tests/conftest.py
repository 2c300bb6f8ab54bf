"""Airflow set-up for the DAG tests: a throw-away AIRFLOW_HOME with SQLite, no examples.

Everything is set before Airflow is imported (it reads its configuration at import time).
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"

_home = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
os.environ.setdefault("NO_GCE_CHECK", "True")


@pytest.fixture(scope="session", autouse=True)
def airflow_db():
    """A migrated SQLite metadata database (what dag.test() needs), made before any test imports
    Airflow in this process (an engine opened on the empty file first does not see the tables)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return _home
