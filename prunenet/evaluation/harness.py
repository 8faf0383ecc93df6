"""Running lm-eval: building the (hub or offline) tasks, evaluating a model object, reading the results.

The model goes to lm-eval as an object (an lm-eval ``HFLM`` around a loaded model), so every
checkpoint format :func:`prunenet.models.load_model` reads works, including pruned ones that
plain ``from_pretrained`` cannot build. By default that ``HFLM`` is :class:`.cached_lm.CachedHFLM`
(same log-likelihoods, each shared context encoded once); ``lm="stock"`` picks lm-eval's own.
Results are keyed by the canonical task names whichever way the tasks were loaded, and carry
per-item correctness (``items``) for paired statistics.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PruneNetError
from .local_tasks import write_local_tasks
from .tasks import LOCAL_SUFFIX, PRIMARY_METRIC, check_tasks

LM_EVAL_PIN = "0.4.13"
LM_KINDS = ("cached", "stock")
ITEM_METRICS = ("acc", "acc_norm")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: lm-eval and the model may draw from any of them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _load_hub(tm, tasks: list[str]) -> tuple[dict, dict[str, str]]:
    """The built-in tasks as shipped; the hub being unreachable is a one-line error that says what to do."""
    names = {t: t for t in tasks}
    try:
        return tm.load(list(names.values())), names
    except Exception as exc:  # datasets/hub raise many exception types when offline
        raise PruneNetError(
            f"cannot load lm-eval tasks {', '.join(tasks)} from the hub ({_first_line(exc)}): "
            f"set data_dir to a local copy of the benchmarks, e.g. ../shared/data"
        ) from exc


def _load_local(tm, tasks: list[str], data_dir: str | os.PathLike) -> tuple[dict, dict[str, str]]:
    """The ``<task>_local`` tasks written by :func:`write_local_tasks`."""
    names = {t: t + LOCAL_SUFFIX for t in tasks}
    try:
        return tm.load(list(names.values())), names
    except PruneNetError:
        raise
    except Exception as exc:
        raise PruneNetError(
            f"cannot load local lm-eval tasks from {data_dir} ({_first_line(exc)}): check the data files"
        ) from exc


def load_lm_tasks(
    tasks: list[str], data_dir: str | os.PathLike | None, work_dir: str | os.PathLike, first: int | None = None
) -> tuple[Any, dict[str, Any]]:
    """Build lm-eval task objects; returns (task_manager, {canonical name: Task or Group}). ``first``: local
    tasks hold only their first ``first`` documents (what an integer ``limit`` evaluates zero-shot)."""
    from lm_eval.tasks import TaskManager

    tasks = check_tasks(tasks)
    if data_dir is None:
        from .. import hub

        hub.require("lm-eval's hub tasks", "set data_dir to a local copy of the benchmarks, e.g. ../shared/data")
        tm = TaskManager()
        loaded, names = _load_hub(tm, tasks)
    else:
        include = write_local_tasks(tasks, data_dir, work_dir, first)
        tm = TaskManager(include_path=str(include), include_defaults=False)
        loaded, names = _load_local(tm, tasks, data_dir)
    top = {}
    for canonical, name in names.items():
        obj = loaded["groups"].get(name) or loaded["tasks"].get(name)
        if obj is None:
            raise PruneNetError(f"lm-eval built no task or group named {name!r}: is lm-eval {LM_EVAL_PIN} installed?")
        top[canonical] = obj
    return tm, top


def _evaluate(
    checkpoint: str | tuple[Any, Any],
    tasks: list[str],
    data_dir: str | None,
    limit: int | None,
    device: str,
    dtype: str,
    batch_size: int,
    seed: int,
    num_fewshot: int,
    work_dir: str,
    lm: str = "cached",
) -> dict:
    """lm-eval's raw output for ``tasks`` (seeded before the tasks and the model are built), with samples."""
    from lm_eval.api.registry import get_model
    from lm_eval.evaluator import simple_evaluate

    from ..models import load_model
    from . import cached_lm  # importing it registers cached_lm.NAME

    seed_everything(seed)
    # zero-shot, an integer limit reads only the first `limit` documents; few-shot examples come from the split
    first = limit if isinstance(limit, int) and num_fewshot == 0 else None
    tm, top = load_lm_tasks(tasks, data_dir, work_dir, first)
    model, tok = checkpoint if isinstance(checkpoint, tuple) else load_model(checkpoint, device=device, dtype=dtype)
    lm_class = get_model(cached_lm.NAME if lm == "cached" else "hf")
    return simple_evaluate(
        model=lm_class(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device),
        tasks=[top[t] for t in tasks],
        task_manager=tm,
        num_fewshot=num_fewshot,
        limit=limit,
        bootstrap_iters=1000,
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )


def run_lm_eval(
    checkpoint: str | tuple[Any, Any],
    tasks: list[str],
    data_dir: str | None,
    limit: int | None,
    device: str = "cpu",
    dtype: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    num_fewshot: int = 0,
    work_dir: str | None = None,
    lm: str = "cached",
) -> dict:
    """Zero/few-shot accuracy of a checkpoint on ``tasks`` with lm-eval (see :mod:`prunenet.evaluation`).

    ``checkpoint`` is a checkpoint directory (loaded by :func:`prunenet.models.load_model`) or an
    already loaded ``(model, tokenizer)`` pair; either way lm-eval gets the model as an object, so pruned
    checkpoints with per-layer FFN sizes work. ``lm`` picks the lm-eval model class: ``"cached"``
    (:class:`.cached_lm.CachedHFLM`, each shared context encoded once) or ``"stock"`` (lm-eval's
    ``HFLM``); both give the same log-likelihoods. Each task's entry has ``items``: per-item
    correctness (see :func:`_items`).
    """
    import lm_eval

    if lm not in LM_KINDS:
        raise PruneNetError(f"unknown lm {lm!r}: choose one of {', '.join(LM_KINDS)}")
    tasks = check_tasks(tasks)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="prunenet-lmeval-")
        work_dir = tmp.name
    try:
        out = _evaluate(
            checkpoint, tasks, data_dir, limit, device, dtype, batch_size, seed, num_fewshot, work_dir, lm=lm
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
    names = {t: t if data_dir is None else t + LOCAL_SUFFIX for t in tasks}
    return {
        "tasks": {t: _task_result(out, t, names[t]) for t in tasks},
        "lm_eval_version": getattr(lm_eval, "__version__", "unknown"),
        "data_source": "hub" if data_dir is None else f"local:{Path(data_dir).expanduser().resolve()}",
        "limit": limit,
        "num_fewshot": num_fewshot,
        # lm-eval's own seed (sampling, few-shot order); not "seed", which names the pruned model's draw in a result
        "lm_eval_seed": seed,
    }


# ---------------------------------------------------------------- results


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" when a stderr is undefined
    return x if math.isfinite(x) else None


def _n_items(out: dict, name: str) -> int:
    """Items evaluated: a leaf's effective count, or the sum over a group's leaves."""
    ns = out.get("n-samples", {})
    if name in ns:
        return int(ns[name]["effective"])
    children = out.get("group_subtasks", {}).get(name, [])
    return sum(_n_items(out, c) for c in children)


def _task_result(out: dict, task: str, name: str) -> dict:
    """acc / acc_norm (+ stderr) where present, the task's primary metric and the item count."""
    res = out["results"][name]
    entry: dict[str, Any] = {}
    for metric in ("acc", "acc_norm"):
        if f"{metric},none" in res:
            entry[metric] = _num(res[f"{metric},none"])
            entry[f"{metric}_stderr"] = _num(res.get(f"{metric}_stderr,none"))
    primary = PRIMARY_METRIC[task]
    entry.update(
        primary_metric=primary,
        primary=entry.get(primary),
        primary_stderr=entry.get(f"{primary}_stderr"),
        n=_n_items(out, name),
        items=_items(out, name),
    )
    return entry


def _leaves(out: dict, name: str) -> list[str]:
    """The leaf tasks under ``name`` (itself if it is a leaf), in lm-eval's order."""
    children = out.get("group_subtasks", {}).get(name)
    if not children:
        return [name]
    return [leaf for child in children for leaf in _leaves(out, child)]


def _items(out: dict, name: str) -> dict[str, list]:
    """Per-item correctness, for paired statistics between models evaluated on the same items.

    ``{"doc_id": [...], "acc": [...], "acc_norm": [...]}`` (the metrics the task reports, as 0/1
    floats), sorted by doc id. A leaf task's ids are lm-eval's ``doc_id``; a group (MMLU)
    concatenates its leaves with ids ``"<leaf>:<doc_id>"`` (leaf names without the offline
    suffix), so the mean of a metric's items is the group's size-weighted accuracy.
    """
    leaves = _leaves(out, name)
    rows = []
    for leaf in leaves:
        label = leaf.removesuffix(LOCAL_SUFFIX)
        for s in out.get("samples", {}).get(leaf, []):
            if s.get("filter", "none") == "none":
                rows.append((label, s["doc_id"], s))
    rows.sort(key=lambda r: (r[0], r[1]))
    metrics = [m for m in ITEM_METRICS if rows and all(m in s for _, _, s in rows)]
    group = leaves != [name]
    items: dict[str, list] = {"doc_id": [f"{label}:{doc}" if group else doc for label, doc, _ in rows]}
    items.update({m: [float(s[m]) for _, _, s in rows] for m in metrics})
    return items
