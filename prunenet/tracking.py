"""MLflow tracking: one experiment per model, one run per pipeline step.

Default backend is a local sqlite file (MLflow 3 refuses a plain ./mlruns folder store);
``MLFLOW_TRACKING_URI`` overrides it. ``PRUNENET_MLFLOW=0`` turns tracking off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///results/mlflow.db"
HOST_TAG, PID_TAG = "prunenet.host", "prunenet.pid"


def enabled() -> bool:
    return os.environ.get("PRUNENET_MLFLOW", "1") not in ("0", "false", "no")


class Run:
    """Thin handle so callers log without caring whether tracking is on."""

    def __init__(self, mlflow_module=None):
        self._m = mlflow_module

    def metric(self, key: str, value: float, step: int | None = None) -> None:
        if self._m is not None and value is not None:
            self._m.log_metric(key.replace("@", "_"), float(value), step=step)

    def metrics(self, values: dict[str, Any], step: int | None = None) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.metric(k, v, step)

    @property
    def id(self) -> str | None:
        """The MLflow run id (None when tracking is off): results record it to point back at their run."""
        if self._m is None:
            return None
        active = self._m.active_run()
        return active.info.run_id if active else None

    def artifact(self, path: str | os.PathLike) -> None:
        if self._m is not None and Path(path).is_file():
            self._m.log_artifact(str(path))


@contextlib.contextmanager
def run(experiment: str, name: str, params: dict[str, Any], tags: dict[str, str] | None = None) -> Iterator[Run]:
    """Open an MLflow run (or a no-op) with flattened params and searchable tags."""
    if not enabled():
        yield Run()
        return
    import mlflow
    from filelock import FileLock

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        # artifacts next to the database (results/mlartifacts), not in ./mlruns of the working directory
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        # Parallel jobs (snakemake --cores N) may open a new database at the same moment: creating its schema
        # (alembic migrations) is not safe to race, so one process at a time creates it and the experiment.
        with FileLock(f"{db}.lock"):
            if mlflow.get_experiment_by_name(experiment) is None:
                location = (db.parent / "mlartifacts").resolve().as_uri()
                mlflow.create_experiment(experiment, artifact_location=location)
    exp = mlflow.set_experiment(experiment)
    close_orphans(exp.experiment_id)
    owner = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    with _sigterm_raises(), mlflow.start_run(run_name=name, tags=(tags or {}) | owner):
        flat = {
            k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
            for k, v in params.items()
            if v is not None
        }
        mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})
        yield Run(mlflow)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM (Snakemake stopping its jobs, a cluster's time limit) becomes an exception, so the open run is
    ended FAILED instead of being left RUNNING by an exit that skips every ``finally``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def close_orphans(experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs this host started from processes that no longer exist (``kill -9``, a
    crash): without it they stay RUNNING in the UI forever. Returns their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    host = socket.gethostname()
    query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    closed = []
    for r in client.search_runs([experiment_id], filter_string=query, max_results=1000):
        pid = r.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            client.set_terminated(r.info.run_id, status="KILLED")
            closed.append(r.info.run_id)
    return closed
