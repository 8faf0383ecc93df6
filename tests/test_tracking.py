"""MLflow tracking under parallel jobs: a new sqlite store opened by several processes at once."""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = """
import sys
from prunenet import tracking
with tracking.run("exp", f"job {sys.argv[1]}", {"job": sys.argv[1]}, {"stage": "test"}) as run:
    run.metric("value", float(sys.argv[1]))
"""


def test_parallel_jobs_create_one_store(tmp_path):
    """Four processes open the same not-yet-existing database together (snakemake --cores 4 after a fresh
    start): every one logs its run. Creating the schema is serialised by a file lock; without it, two
    alembic migrations race and a job dies."""
    db = tmp_path / "results" / "mlflow.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PRUNENET_MLFLOW": "1"}
    cmd = [sys.executable, "-c", CHILD]
    opts = dict(env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    procs = [subprocess.Popen([*cmd, str(i)], **opts) for i in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-1500:] for e in errors)
    from mlflow import MlflowClient

    # a client, not mlflow.set_tracking_uri: that also sets MLFLOW_TRACKING_URI in os.environ, which every later
    # subprocess of this test session (the workflow tests) would inherit
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert sorted(r.data.metrics["value"] for r in runs) == [0.0, 1.0, 2.0, 3.0]
