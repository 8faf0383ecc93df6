"""Running lm-eval: building the (hub or offline) tasks, evaluating a model object, reading the results.

The model goes to lm-eval as an object (:class:`lm_eval.models.huggingface.HFLM` around a
loaded model), so every checkpoint format :func:`prunenet.models.load_model` reads works,
including pruned ones that plain ``from_pretrained`` cannot build. Results are keyed by the
canonical task names whichever way the tasks were loaded.
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
    tasks: list[str], data_dir: str | os.PathLike | None, work_dir: str | os.PathLike
) -> tuple[Any, dict[str, Any]]:
    """Build lm-eval task objects; returns (task_manager, {canonical name: Task or Group})."""
    from lm_eval.tasks import TaskManager

    tasks = check_tasks(tasks)
    if data_dir is None:
        tm = TaskManager()
        loaded, names = _load_hub(tm, tasks)
    else:
        include = write_local_tasks(tasks, data_dir, work_dir)
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
    model_path: str | tuple,
    tasks: list[str],
    data_dir: str | None,
    limit: int | None,
    device: str,
    dtype: str,
    batch_size: int,
    seed: int,
    num_fewshot: int,
    work_dir: str,
) -> dict:
    """lm-eval's raw output for ``tasks`` (seeded before the tasks and the model are built)."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from ..models import load_model

    seed_everything(seed)
    tm, top = load_lm_tasks(tasks, data_dir, work_dir)
    model, tok = model_path if isinstance(model_path, tuple) else load_model(model_path, device=device, dtype=dtype)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device)
    return simple_evaluate(
        model=lm,
        tasks=[top[t] for t in tasks],
        task_manager=tm,
        num_fewshot=num_fewshot,
        limit=limit,
        bootstrap_iters=1000,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )


def run_lm_eval(
    model_path: str | tuple,
    tasks: list[str],
    data_dir: str | None,
    limit: int | None,
    device: str = "cpu",
    dtype: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    num_fewshot: int = 0,
    work_dir: str | None = None,
) -> dict:
    """Zero/few-shot accuracy of a checkpoint on ``tasks`` with lm-eval (see :mod:`prunenet.evaluation`).

    ``model_path`` is a checkpoint loaded by :func:`prunenet.models.load_model`, or an already
    loaded ``(model, tokenizer)`` pair; either way lm-eval gets the model as an object, so pruned
    checkpoints with per-layer FFN sizes work.
    """
    import lm_eval

    tasks = check_tasks(tasks)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="prunenet-lmeval-")
        work_dir = tmp.name
    try:
        out = _evaluate(model_path, tasks, data_dir, limit, device, dtype, batch_size, seed, num_fewshot, work_dir)
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
        "seed": seed,
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
    )
    return entry
