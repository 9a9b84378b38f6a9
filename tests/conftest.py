"""Test-wide environment: a private AIRFLOW_HOME and TUNEOPS_HOME per session, offline hubs.

Set before anything imports Airflow, so no test touches a developer's real metadata DB,
artifact store or MLflow database.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Import-safe: a second import of this module (e.g. as tests.conftest) must not move the session.
_SESSION = Path(os.environ.get("TUNEOPS_TEST_SESSION") or tempfile.mkdtemp(prefix="tuneops-tests-"))
os.environ["TUNEOPS_TEST_SESSION"] = str(_SESSION)

os.environ.update(
    {
        "AIRFLOW_HOME": str(_SESSION / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "TUNEOPS_HOME": str(_SESSION / "tuneops"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{_SESSION / 'tuneops' / 'mlflow.db'}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "TOKENIZERS_PARALLELISM": "false",
        # The test recipes (tests/data, and those tests write to RECIPE_DIR) may be named by DAG
        # Params, as a deployment's recipe folders may.
        "TUNEOPS_RECIPE_DIRS": f"{REPO / 'tests' / 'data'},{_SESSION / 'recipes'}",
        # The tests' projects: support_tickets on the short recipe, registering tuneops-test-triage,
        # then those a test writes to PROJECT_DIR.
        "TUNEOPS_PROJECT_DIRS": f"{REPO / 'tests' / 'data' / 'projects'},{_SESSION / 'projects'}",
    }
)
os.environ.pop("MLFLOW_REGISTRY_URI", None)
os.environ.pop("TUNEOPS_ARTIFACT_ROOT", None)
(_SESSION / "tuneops").mkdir(parents=True, exist_ok=True)
#: Where a test writes a recipe that it names in a DAG Param (a folder in TUNEOPS_RECIPE_DIRS).
RECIPE_DIR = _SESSION / "recipes"
RECIPE_DIR.mkdir(exist_ok=True)
#: The tests' support-ticket dataset config: the shipped one on the tiny model's tokenizer and triage_v1.
TEST_DATASET = REPO / "tests" / "data" / "datasets" / "support_tickets.yaml"
#: Where a test writes a project that events and Params may name (a folder in TUNEOPS_PROJECT_DIRS).
PROJECT_DIR = _SESSION / "projects"
PROJECT_DIR.mkdir(exist_ok=True)
sys.path.insert(0, str(REPO))


@pytest.fixture
def restored_environ():
    """os.environ, put back as it was after the test, whatever the test or the code under test
    added to it (the connections a test defines as ``AIRFLOW_CONN_*``; the MLflow login that
    ``tuneops.core.tracking.configure_mlflow`` hands MLflow there)."""
    saved = dict(os.environ)
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)
