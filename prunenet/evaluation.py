"""Zero-shot accuracy (lm-eval-harness) and perplexity.

Accuracy uses lm-eval 0.4.x's *built-in* task definitions. With ``data_dir=None`` they
run as shipped (datasets from the hub). With a ``data_dir`` (a copy laid out like
``../shared/data``) the same definitions are re-pointed at local files: at run time
:func:`write_local_tasks` writes, into a work directory, one YAML per task that
``include:``\\s the built-in YAML by absolute path (so its prompts, targets, choices,
metrics and ``!function`` hooks are reused unchanged) and overrides only
``task``/``tag``/``dataset_*``/splits. Local files that are not in the hub's field layout
(ARC in AI2 format, HellaSwag with a joined ``ctx``, MMLU as hendrycks CSV) are first
converted to hub-layout JSONL (:func:`arc_to_hub`, :func:`hellaswag_to_hub`,
:func:`mmlu_row_to_hub`). Offline tasks are named ``<task>_local``; results use the
canonical names.

Known offline difference: HellaSwag's local copy only has ``ctx = ctx_a + " " + ctx_b``,
so the built-in ``ctx_b.capitalize()`` cannot be applied (the first letter of ctx_b stays
lower-case), and the built-in ``preprocess`` runs a second time on already-preprocessed
text (a no-op apart from rare leftover double spaces). Label offline HellaSwag numbers as such. Offline there are no train splits,
so few-shot examples (``num_fewshot > 0``) come from the evaluation split itself for every
task except MMLU (which has its dev split).
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from .data import split_note, load_texts, token_blocks
from .errors import PruneNetError

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

# Local files (relative to data_dir); MMLU is a folder with test/<s>_test.csv and dev/<s>_dev.csv.
LOCAL_FILES: dict[str, str] = {
    "piqa": "piqa/validation.jsonl",
    "winogrande": "winogrande/dev.jsonl",
    "hellaswag": "hellaswag/hellaswag_val_preprocessed.jsonl",
    "arc_easy": "arc/ARC-Easy-Test.jsonl",
    "arc_challenge": "arc/ARC-Challenge-Test.jsonl",
    "mmlu": "mmlu",
}
# Built-in YAML (relative to lm_eval/tasks) and the split it evaluates.
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
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


# ---------------------------------------------------------------- local -> hub field layout


def arc_to_hub(rec: dict) -> dict:
    """AI2 ARC record -> ``allenai/ai2_arc`` layout (question, choices{text,label}, answerKey)."""
    choices = rec["question"]["choices"]
    return {
        "id": rec["id"],
        "question": rec["question"]["stem"],
        "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
        "answerKey": rec["answerKey"],
    }


def hellaswag_to_hub(rec: dict) -> dict:
    """Joined-ctx HellaSwag record -> ``Rowan/hellaswag`` layout.

    The whole ``ctx`` goes into ``ctx_a`` and ``ctx_b`` is empty: the built-in prompt
    ``preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`` then equals the
    hub's except that ctx_b's first letter is not re-capitalised (its split point is lost).
    """
    return {
        "ind": rec.get("idx"),
        "activity_label": rec["activity_label"],
        "ctx_a": rec["ctx"],
        "ctx_b": "",
        "ctx": rec["ctx"],
        "endings": list(rec["endings"]),
        "source_id": "",
        "split": "val",
        "split_type": "",
        "label": str(rec["label"]),
    }


def mmlu_row_to_hub(row: list[str], subject: str) -> dict:
    """Hendrycks CSV row (question, A, B, C, D, letter) -> ``cais/mmlu`` layout."""
    if len(row) != 6 or row[5].strip() not in ("A", "B", "C", "D"):
        raise PruneNetError(f"malformed MMLU row for {subject}: expected question,A,B,C,D,letter, got {row[:2]}...")
    return {"question": row[0], "subject": subject, "choices": row[1:5], "answer": "ABCD".index(row[5].strip())}


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open() if line.strip()]


def _require(path: Path) -> Path:
    if not path.is_file():
        raise PruneNetError(f"missing data file {path}: point data_dir at a copy of the benchmark data (e.g. ../shared/data)")
    return path


def mmlu_subjects() -> dict[str, str]:
    """subject -> category (stem/other/...), read from lm-eval's built-in per-subject YAMLs."""
    out = {}
    for f in sorted((lm_eval_tasks_dir() / "mmlu" / "default").glob("mmlu_*.yaml")):
        cfg = yaml.safe_load(f.read_text())
        out[cfg["dataset_name"]] = cfg["tag"].removeprefix("mmlu_").removesuffix("_tasks")
    return out


# ---------------------------------------------------------------- task YAML generation


def _dump(path: Path, cfg: dict) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def _local_cfg(builtin: Path, name: str, data_files: dict[str, str], eval_split: str, cache: Path) -> dict:
    """Override only the dataset wiring of a built-in task; everything else is inherited."""
    return {
        "include": str(builtin),
        "task": name,
        "tag": "prunenet_local",
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files, "cache_dir": str(cache)},
        "training_split": None,
        "validation_split": eval_split if eval_split == "validation" else None,
        "test_split": eval_split if eval_split == "test" else None,
    }


def write_local_tasks(tasks: Iterable[str], data_dir: str | os.PathLike, work_dir: str | os.PathLike) -> Path:
    """Write offline task YAMLs (+ converted hub-layout JSONL) into ``work_dir/lm_tasks``.

    Returns the folder to pass to ``TaskManager(include_path=...)``. All paths written
    are absolute (lm-eval resolves a relative ``data_files`` against the CWD).
    """
    tasks = check_tasks(tasks)
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        raise PruneNetError(f"data_dir {data_dir} does not exist: set data_dir to a local copy of the benchmarks (e.g. ../shared/data)")
    out = Path(work_dir).expanduser().resolve() / "lm_tasks"
    conv = out / "data"
    out.mkdir(parents=True, exist_ok=True)
    builtin_dir = lm_eval_tasks_dir()
    for task in tasks:
        src = data_dir / LOCAL_FILES[task]
        name = task + LOCAL_SUFFIX
        if task == "mmlu":
            _write_mmlu(src, out, builtin_dir)
            continue
        _require(src)
        rel, split = BUILTIN_YAML[task]
        if task.startswith("arc_"):
            target = conv / f"{task}_{split}.jsonl"
            _write_jsonl(target, (arc_to_hub(r) for r in _read_jsonl(src)))
        elif task == "hellaswag":
            target = conv / f"{task}_{split}.jsonl"
            _write_jsonl(target, (hellaswag_to_hub(r) for r in _read_jsonl(src)))
        else:  # piqa, winogrande: already in hub field layout
            target = src
        _dump(out / f"{name}.yaml", _local_cfg(builtin_dir / rel, name, {split: str(target)}, split, out / "hf_cache"))
    return out


def _write_mmlu(src: Path, out: Path, builtin_dir: Path) -> None:
    """57 per-subject tasks (built-in prompts, test + dev for few-shot) and the mmlu group tree."""
    mdir = builtin_dir / "mmlu" / "default"
    sub = out / "mmlu"
    sub.mkdir(parents=True, exist_ok=True)
    for subject, category in mmlu_subjects().items():
        files = {}
        for split in ("test", "dev"):
            csv_path = _require(src / split / f"{subject}_{split}.csv")
            with csv_path.open(newline="", encoding="utf-8") as f:
                rows = [mmlu_row_to_hub(r, subject) for r in csv.reader(f)]
            target = sub / "data" / f"{subject}_{split}.jsonl"
            _write_jsonl(target, rows)
            files[split] = str(target)
        _dump(sub / f"mmlu_{subject}{LOCAL_SUFFIX}.yaml", {
            "include": str(mdir / f"mmlu_{subject}.yaml"),
            "task": f"mmlu_{subject}{LOCAL_SUFFIX}",
            "tag": f"mmlu{LOCAL_SUFFIX}_{category}_tasks",
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": files, "cache_dir": str(out / "hf_cache")},
        })
    for category in MMLU_CATEGORIES:
        _dump(sub / f"_mmlu{LOCAL_SUFFIX}_{category}.yaml", {
            "include": str(mdir / f"_mmlu_{category}.yaml"),
            "group": f"mmlu{LOCAL_SUFFIX}_{category}",
            "task": [f"mmlu{LOCAL_SUFFIX}_{category}_tasks"],
        })
    _dump(sub / f"_mmlu{LOCAL_SUFFIX}.yaml", {
        "include": str(mdir / "_mmlu.yaml"),
        "group": f"mmlu{LOCAL_SUFFIX}",
        "task": [f"mmlu{LOCAL_SUFFIX}_{c}" for c in MMLU_CATEGORIES],
    })


# ---------------------------------------------------------------- running lm-eval


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_lm_tasks(tasks: list[str], data_dir: str | os.PathLike | None, work_dir: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """Build lm-eval task objects; returns (task_manager, {canonical name: Task or Group})."""
    from lm_eval.tasks import TaskManager

    tasks = check_tasks(tasks)
    if data_dir is None:
        tm = TaskManager()
        names = {t: t for t in tasks}
        try:
            loaded = tm.load(list(names.values()))
        except Exception as exc:  # datasets/hub raise many exception types when offline
            raise PruneNetError(
                f"cannot load lm-eval tasks {', '.join(tasks)} from the hub ({_first_line(exc)}): "
                f"set data_dir to a local copy of the benchmarks, e.g. ../shared/data"
            ) from exc
    else:
        include = write_local_tasks(tasks, data_dir, work_dir)
        tm = TaskManager(include_path=str(include), include_defaults=False)
        names = {t: t + LOCAL_SUFFIX for t in tasks}
        try:
            loaded = tm.load(list(names.values()))
        except PruneNetError:
            raise
        except Exception as exc:
            raise PruneNetError(f"cannot load local lm-eval tasks from {data_dir} ({_first_line(exc)}): check the data files") from exc
    top = {}
    for canonical, name in names.items():
        obj = loaded["groups"].get(name) or loaded["tasks"].get(name)
        if obj is None:
            raise PruneNetError(f"lm-eval built no task or group named {name!r}: is lm-eval {_pinned()} installed?")
        top[canonical] = obj
    return tm, top


def _pinned() -> str:
    return "0.4.13"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


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
    """Zero/few-shot accuracy of a checkpoint on ``tasks`` with lm-eval (see module doc).

    ``model_path`` is a checkpoint loaded by :func:`prunenet.models.load_model`, or an already
    loaded ``(model, tokenizer)`` pair; either way lm-eval gets the model as an object, so pruned
    checkpoints with per-layer FFN sizes work.
    """
    import lm_eval
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from .models import load_model

    tasks = check_tasks(tasks)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="prunenet-lmeval-")
        work_dir = tmp.name
    try:
        seed_everything(seed)
        tm, top = load_lm_tasks(tasks, data_dir, work_dir)
        model, tok = model_path if isinstance(model_path, tuple) else load_model(model_path, device=device, dtype=dtype)
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device)
        out = simple_evaluate(
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
    res = out["results"][name]
    entry: dict[str, Any] = {}
    for metric in ("acc", "acc_norm"):
        if f"{metric},none" in res:
            entry[metric] = _num(res[f"{metric},none"])
            entry[f"{metric}_stderr"] = _num(res.get(f"{metric}_stderr,none"))
    primary = PRIMARY_METRIC[task]
    entry.update(primary_metric=primary, primary=entry.get(primary), primary_stderr=entry.get(f"{primary}_stderr"), n=_n_items(out, name))
    return entry


# ---------------------------------------------------------------- perplexity


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    tokenizer,
    texts: list[str],
    seq_len: int = 512,
    max_blocks: int | None = None,
    batch_size: int = 4,
    add_bos: bool = False,
    desc: str = "perplexity",
) -> dict:
    """exp(mean next-token NLL) over non-overlapping ``seq_len`` blocks (GPTQ/SliceGPT protocol)."""
    blocks = token_blocks(tokenizer, texts, seq_len, max_blocks=max_blocks, add_bos=add_bos)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in tqdm(range(0, len(blocks), batch_size), desc=desc, unit="batch"):
            ids = blocks[i : i + batch_size].to(device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = ids[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="sum").item()
            count += target.numel()
    finally:
        model.train(was_training)
    nll = total / count
    return {"ppl": math.exp(nll), "nll": nll, "n_tokens": count, "n_blocks": len(blocks), "seq_len": seq_len}


def perplexity_on(
    model: str | tuple[torch.nn.Module, Any],
    dataset: str = "wikitext2",
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    seq_len: int = 512,
    max_blocks: int | None = None,
    batch_size: int = 4,
    add_bos: bool = False,
    device: str = "cpu",
    dtype: str = "auto",
) -> dict:
    """:func:`perplexity` of a checkpoint path (or ``(model, tokenizer)``) on a corpus split, labelled with its source."""
    if isinstance(model, (str, os.PathLike)):
        from .models import load_model

        model, tok = load_model(str(model), device=device, dtype=dtype)
    else:
        model, tok = model
    texts = load_texts(dataset, split, data_dir)
    result = perplexity(model, tok, texts, seq_len=seq_len, max_blocks=max_blocks, batch_size=batch_size, add_bos=add_bos,
                        desc=f"ppl {dataset}/{split}")
    result["dataset"] = split_note(dataset, split, data_dir)
    return result
