"""The benchmark catalogue: which lm-eval tasks run, the metric each reports, the built-in YAML each reuses.

Shared by :mod:`.local_tasks` (offline wiring) and :mod:`.harness` (running and reading results).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import PruneNetError

TASKS = ("piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge", "mmlu")
# Metrics reported by the PruneNet paper's code; acc and acc_norm are both kept where present.
PRIMARY_METRIC = {
    "piqa": "acc_norm",
    "hellaswag": "acc_norm",
    "arc_easy": "acc_norm",
    "arc_challenge": "acc_norm",
    "winogrande": "acc",
    "mmlu": "acc",
}
LOCAL_SUFFIX = "_local"

# Built-in YAML (relative to lm_eval/tasks) and the split it evaluates. The local file for that
# split is ``prunenet.data.LOCAL_FILES[task][split]``; MMLU is a group (see local_tasks._write_mmlu).
BUILTIN_YAML: dict[str, tuple[str, str]] = {
    "piqa": ("piqa/piqa.yaml", "validation"),
    "winogrande": ("winogrande/default.yaml", "validation"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation"),
    "arc_easy": ("arc/arc_easy.yaml", "test"),
    "arc_challenge": ("arc/arc_challenge.yaml", "test"),
}
MMLU_CATEGORIES = ("stem", "other", "social_sciences", "humanities")


def check_tasks(tasks: Iterable[str]) -> list[str]:
    """Validate task names early, before any model or data is loaded."""
    tasks = list(tasks)
    if not tasks:
        raise PruneNetError(f"no tasks given: choose from {', '.join(TASKS)}")
    for t in tasks:
        if t not in TASKS:
            raise PruneNetError(f"unknown task {t!r}: known tasks are {', '.join(TASKS)}")
    return list(dict.fromkeys(tasks))


def lm_eval_tasks_dir() -> Path:
    """lm-eval's built-in task folder: offline tasks ``include:`` its YAMLs by absolute path."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent
