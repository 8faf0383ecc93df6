"""Zero-shot accuracy (lm-eval-harness) and perplexity.

Accuracy uses lm-eval 0.4.x's *built-in* task definitions. With ``data_dir=None`` they
run as shipped (datasets from the hub). With a ``data_dir`` (a copy laid out like
``../shared/data``, as :data:`prunenet.data.LOCAL_FILES` describes) the same definitions
are re-pointed at local files: at run time :func:`write_local_tasks` writes, into a work
directory, one YAML per task that ``include:``\\s the built-in YAML by absolute path (so its
prompts, targets, choices, metrics and ``!function`` hooks are reused unchanged) and
overrides only ``task``/``tag``/``dataset_*``/splits. Local files that are not in the hub's
field layout (ARC in AI2 format, HellaSwag with a joined ``ctx``, MMLU as hendrycks CSV) are
first converted to hub-layout JSONL (:func:`arc_to_hub`, :func:`hellaswag_to_hub`,
:func:`mmlu_row_to_hub`). Offline tasks are named ``<task>_local``; results use the
canonical names.

Known offline difference: HellaSwag's local copy only has ``ctx = ctx_a + " " + ctx_b``,
so the built-in ``ctx_b.capitalize()`` cannot be applied (the first letter of ctx_b stays
lower-case), and the built-in ``preprocess`` runs a second time on already-preprocessed
text (a no-op apart from rare leftover double spaces). Label offline HellaSwag numbers as
such. Offline there are no train splits, so few-shot examples (``num_fewshot > 0``) come
from the evaluation split itself for every task except MMLU (which has its dev split).

Modules: :mod:`.tasks` (the task catalogue), :mod:`.local_tasks` (offline conversion and
YAMLs), :mod:`.harness` (loading tasks, :func:`run_lm_eval`, reading results),
:mod:`.perplexity`.
"""

from __future__ import annotations

from .tasks import (
    BENCHMARKS,
    BUILTIN_YAML,
    LOCAL_SUFFIX,
    MMLU_CATEGORIES,
    MMLU_SUBJECTS,
    PRIMARY_METRIC,
    TASKS,
    Tasks,
    check_tasks,
    lm_eval_tasks_dir,
)

# The torch-importing parts load on first use (PEP 562): the task names above are all that reports and the CLI's
# checks need, and every `prunenet report` job would otherwise pay torch's import for nothing.
_LAZY = {
    "harness": ("load_lm_tasks", "run_lm_eval", "seed_everything"),
    "local_tasks": ("arc_to_hub", "hellaswag_to_hub", "mmlu_row_to_hub", "mmlu_subjects", "write_local_tasks"),
    "ppl": ("perplexity", "perplexity_on"),
}


def __getattr__(name: str):
    import importlib

    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUILTIN_YAML",
    "LOCAL_SUFFIX",
    "MMLU_CATEGORIES",
    "PRIMARY_METRIC",
    "BENCHMARKS",
    "MMLU_SUBJECTS",
    "TASKS",
    "Tasks",
    "arc_to_hub",
    "check_tasks",
    "hellaswag_to_hub",
    "lm_eval_tasks_dir",
    "load_lm_tasks",
    "mmlu_row_to_hub",
    "mmlu_subjects",
    "perplexity",
    "perplexity_on",
    "run_lm_eval",
    "seed_everything",
    "write_local_tasks",
]
