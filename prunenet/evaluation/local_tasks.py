"""Offline lm-eval tasks: local benchmark files converted to the hub's field layout, and task YAMLs for them.

Each generated YAML ``include:``\\s the built-in one by absolute path and overrides only the
dataset wiring (see :mod:`prunenet.evaluation`), so prompts and metrics stay lm-eval's own.
Where the local files are is :data:`prunenet.data.LOCAL_FILES` (the one map of the local layout).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from ..artifacts import atomic_file
from ..data import LOCAL_FILES
from ..errors import PruneNetError
from .tasks import BUILTIN_YAML, LOCAL_SUFFIX, MMLU_CATEGORIES, check_tasks, lm_eval_tasks_dir

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
    with atomic_file(path) as tmp, tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open() if line.strip()]


def _require(path: Path) -> Path:
    if not path.is_file():
        raise PruneNetError(
            f"missing data file {path}: point data_dir at a copy of the benchmark data (e.g. ../shared/data)"
        )
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
    with atomic_file(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


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


def _hub_rows(task: str, src: Path) -> Iterable[dict]:
    """The eval split's records in hub field layout (ARC and HellaSwag converted, PIQA and WinoGrande as they are)."""
    rows = _read_jsonl(src)
    if task.startswith("arc_"):
        return (arc_to_hub(r) for r in rows)
    if task == "hellaswag":
        return (hellaswag_to_hub(r) for r in rows)
    return rows


def _hub_file(task: str, src: Path, conv: Path, split: str, first: int | None) -> Path:
    """The eval split in hub field layout, written into ``conv``; PIQA and WinoGrande whole: the local file as is.

    ``first``: keep only the first ``first`` records. lm-eval's integer ``--limit`` evaluates exactly the
    first ``limit`` documents, so with zero-shot prompts the evaluation is the same while lm-eval no longer
    converts and preprocesses the whole split (HellaSwag: 10k documents) in every job.
    """
    if first is None and not (task.startswith("arc_") or task == "hellaswag"):
        return src
    target = conv / f"{task}_{split}.jsonl"
    rows = _hub_rows(task, src)
    _write_jsonl(target, rows if first is None else itertools.islice(rows, first))
    return target


def write_local_tasks(
    tasks: Iterable[str], data_dir: str | os.PathLike, work_dir: str | os.PathLike, first: int | None = None
) -> Path:
    """Write offline task YAMLs (+ converted hub-layout JSONL) into ``work_dir/lm_tasks``.

    Returns the folder to pass to ``TaskManager(include_path=...)``. All paths written
    are absolute (lm-eval resolves a relative ``data_files`` against the CWD). ``first``: only the first
    ``first`` records of each eval split (see :func:`_hub_file`; never the few-shot source), or all.
    """
    tasks = check_tasks(tasks)
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        raise PruneNetError(
            f"data_dir {data_dir} does not exist: set data_dir to a local copy of the benchmarks (e.g. ../shared/data)"
        )
    out = Path(work_dir).expanduser().resolve() / "lm_tasks"
    out.mkdir(parents=True, exist_ok=True)
    builtin_dir = lm_eval_tasks_dir()
    if any(t == "mmlu" or t.startswith("mmlu_") for t in tasks):  # the group and every subject task at once
        _write_mmlu(data_dir, out, builtin_dir, first)
    for task in tasks:
        if task == "mmlu" or task.startswith("mmlu_"):
            continue
        rel, split = BUILTIN_YAML[task]
        src = _require(data_dir / LOCAL_FILES[task][split])
        target = _hub_file(task, src, out / "data", split, first)
        name = task + LOCAL_SUFFIX
        _dump(out / f"{name}.yaml", _local_cfg(builtin_dir / rel, name, {split: str(target)}, split, out / "hf_cache"))
    return out


def _mmlu_subject_files(data_dir: Path, sub: Path, subject: str, first: int | None) -> dict[str, str]:
    """One subject's test and dev CSVs as hub-layout JSONL (dev gives the few-shot examples; ``first`` cuts
    only the test split)."""
    files = {}
    for split in ("test", "dev"):
        csv_path = _require(data_dir / LOCAL_FILES["mmlu"][split] / f"{subject}_{split}.csv")
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = [mmlu_row_to_hub(r, subject) for r in csv.reader(f)]
        rows = rows[:first] if split == "test" and first is not None else rows
        target = sub / "data" / f"{subject}_{split}.jsonl"
        _write_jsonl(target, rows)
        files[split] = str(target)
    return files


def _write_mmlu(data_dir: Path, out: Path, builtin_dir: Path, first: int | None) -> None:
    """57 per-subject tasks (built-in prompts, test + dev for few-shot) and the mmlu group tree."""
    mdir = builtin_dir / "mmlu" / "default"
    sub = out / "mmlu"
    sub.mkdir(parents=True, exist_ok=True)
    for subject, category in mmlu_subjects().items():
        _dump(
            sub / f"mmlu_{subject}{LOCAL_SUFFIX}.yaml",
            {
                "include": str(mdir / f"mmlu_{subject}.yaml"),
                "task": f"mmlu_{subject}{LOCAL_SUFFIX}",
                "tag": f"mmlu{LOCAL_SUFFIX}_{category}_tasks",
                "dataset_path": "json",
                "dataset_name": None,
                "dataset_kwargs": {
                    "data_files": _mmlu_subject_files(data_dir, sub, subject, first),
                    "cache_dir": str(out / "hf_cache"),
                },
            },
        )
    for category in MMLU_CATEGORIES:
        _dump(
            sub / f"_mmlu{LOCAL_SUFFIX}_{category}.yaml",
            {
                "include": str(mdir / f"_mmlu_{category}.yaml"),
                "group": f"mmlu{LOCAL_SUFFIX}_{category}",
                "task": [f"mmlu{LOCAL_SUFFIX}_{category}_tasks"],
            },
        )
    _dump(
        sub / f"_mmlu{LOCAL_SUFFIX}.yaml",
        {
            "include": str(mdir / "_mmlu.yaml"),
            "group": f"mmlu{LOCAL_SUFFIX}",
            "task": [f"mmlu{LOCAL_SUFFIX}_{c}" for c in MMLU_CATEGORIES],
        },
    )
