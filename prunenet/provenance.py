"""Where a result came from, recorded in every evaluation and speed output and in its MLflow run (issue 13).

Why: a number read months later must say which code, library versions and configuration produced it. The git
commit is read from the repository the package runs from (``+dirty`` when it has uncommitted changes); the
config hash is the workflow's effective configuration (``PRUNENET_CONFIG_HASH``, exported by
``workflow/rules/common.smk`` to every job) -- None when the command runs outside the workflow.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

CONFIG_HASH_ENV = "PRUNENET_CONFIG_HASH"
PACKAGES = ("prunenet", "torch", "transformers", "lm_eval", "peft", "mlflow")


def _version(name: str) -> str | None:
    try:
        return version(name.replace("_", "-"))
    except PackageNotFoundError:
        return None


def git_commit(path: str | os.PathLike = Path(__file__).parent) -> str | None:
    """The commit checked out where ``path`` lives, with ``+dirty`` for uncommitted changes; None outside git."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", str(path), *a], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def provenance() -> dict:
    """Versions, commit, configuration hash and interpreter of this process."""
    return {
        "versions": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "config_hash": os.environ.get(CONFIG_HASH_ENV),
    }


def as_params(prov: dict, prefix: str = "prov") -> dict[str, str]:
    """The record flattened into MLflow params (``prov.torch``, ``prov.git_commit``, ...)."""
    flat = {f"{prefix}.{k}": v for k, v in prov.items() if not isinstance(v, dict)}
    for sub in prov.values():
        if isinstance(sub, dict):
            flat |= {f"{prefix}.{k}": v for k, v in sub.items()}
    return {k: str(v) for k, v in flat.items() if v is not None}
