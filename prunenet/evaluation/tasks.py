"""The benchmark catalogue: which lm-eval tasks run, the metric each reports, the built-in YAML each reuses.

Shared by :mod:`.local_tasks` (offline wiring) and :mod:`.harness` (running and reading results).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import PruneNetError

# lm-eval's 57 MMLU subjects (tests/test_evaluation.py checks them against its task folder); each runs alone as
# ``mmlu_<subject>`` (paper Table 23 reports ten), or all together as the ``mmlu`` group.
MMLU_SUBJECTS = (
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
)
BENCHMARKS = ("piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge", "mmlu")
TASKS = BENCHMARKS + tuple(f"mmlu_{s}" for s in MMLU_SUBJECTS)
# Metrics reported by the PruneNet paper's code; acc and acc_norm are both kept where present.
PRIMARY_METRIC = {
    "piqa": "acc_norm",
    "hellaswag": "acc_norm",
    "arc_easy": "acc_norm",
    "arc_challenge": "acc_norm",
    "winogrande": "acc",
    "mmlu": "acc",
} | {f"mmlu_{s}": "acc" for s in MMLU_SUBJECTS}
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


class Tasks(tuple):
    """Task names that passed :func:`check_tasks`: known, no MMLU group beside its subjects, each once.

    Why a type: the names are checked where they enter (the CLI, a library call) and the checked value is what
    travels on, so the loaders below do not check them again. Prints as a list (run parameters, messages).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(list(self))


def check_tasks(tasks: Iterable[str]) -> Tasks:
    """Validate task names early, before any model or data is loaded; checked :class:`Tasks` pass as they are."""
    if isinstance(tasks, Tasks):
        return tasks
    tasks = list(tasks)
    if not tasks:
        raise PruneNetError(f"no tasks given: choose from {', '.join(TASKS)}")
    for t in tasks:
        if t not in TASKS:
            raise PruneNetError(
                f"unknown task {t!r}: known tasks are {', '.join(BENCHMARKS)} and mmlu_<subject> (one of "
                f"{', '.join(MMLU_SUBJECTS)})"
            )
    if "mmlu" in tasks and any(t.startswith("mmlu_") for t in tasks):
        raise PruneNetError("give the mmlu group or mmlu_<subject> tasks, not both: lm-eval runs a subject only once")
    return Tasks(dict.fromkeys(tasks))


def lm_eval_tasks_dir() -> Path:
    """lm-eval's built-in task folder: offline tasks ``include:`` its YAMLs by absolute path."""
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent
