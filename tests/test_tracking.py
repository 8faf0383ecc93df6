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

# the same, entered by every process at once: each marks that it is ready, waits for all (a barrier), records
# when it starts opening the store and when its run is logged
RACING = """
import pathlib, sys, time
from prunenet import tracking
me, n = sys.argv[1], int(sys.argv[2])
pathlib.Path(f"ready-{me}").touch()
while len(list(pathlib.Path().glob("ready-*"))) < n:
    time.sleep(0.01)
start = time.time()
with tracking.run("exp", f"job {me}", {"job": me}, {"stage": "test"}) as run:
    run.metric("value", float(me))
pathlib.Path(f"span-{me}").write_text(f"{start} {time.time()}")
"""


def test_parallel_jobs_create_one_store(tmp_path):
    """Four processes open the same not-yet-existing database together (snakemake --cores 4 after a fresh
    start): every one logs its run. Creating the schema is serialised by a file lock; without it, two
    alembic migrations race and a job dies."""
    db = tmp_path / "results" / "mlflow.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PRUNENET_MLFLOW": "1"}
    cmd = [sys.executable, "-c", RACING]
    opts = dict(env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert not db.exists()  # a store none of them has created yet
    procs = [subprocess.Popen([*cmd, str(i), "4"], **opts) for i in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-1500:] for e in errors)
    # the race was run: every process started opening the new store before any had finished logging its run
    spans = [tuple(map(float, (tmp_path / f"span-{i}").read_text().split())) for i in range(4)]
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    from mlflow import MlflowClient

    # a client, not mlflow.set_tracking_uri: that also sets MLFLOW_TRACKING_URI in os.environ, which every later
    # subprocess of this test session (the workflow tests) would inherit
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert sorted(r.data.metrics["value"] for r in runs) == [0.0, 1.0, 2.0, 3.0]


DYING = """
import os, signal, sys
from prunenet import tracking
with tracking.run("exp", sys.argv[1], {}, {"stage": "test"}):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
"""


def test_interrupted_runs_do_not_stay_running(tmp_path):
    """SIGTERM inside a run ends it FAILED at once; a SIGKILLed run is marked KILLED by the next run on this host
    (its process is gone). Without either, both stay RUNNING in the store forever."""
    db = tmp_path / "mlflow.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PRUNENET_MLFLOW": "1"}
    opts = dict(env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    for sig in ("SIGTERM", "SIGKILL"):
        assert subprocess.run([sys.executable, "-c", DYING, sig], **opts).returncode != 0
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("exp").experiment_id

    def status() -> dict[str, str]:
        return {r.info.run_name: r.info.status for r in client.search_runs([exp]) if r.info.run_name.startswith("SIG")}

    assert status() == {"SIGTERM": "FAILED", "SIGKILL": "RUNNING"}
    done = subprocess.run([sys.executable, "-c", CHILD, "7"], **opts)
    assert done.returncode == 0, done.stderr[-1500:]
    assert status() == {"SIGTERM": "FAILED", "SIGKILL": "KILLED"}
