"""Tables of the paper, computed from the pipeline's evaluation JSONs only.

Every number in a table comes from an evaluation JSON written by ``prunenet evaluate``
(its path is kept in the ``source`` column); nothing is typed in by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..artifacts import atomic_file
from ..errors import PruneNetError
from ..registry import Registry

# name -> function(inputs, out_csv, out_md, **options); the workflow's `table` rule builds each by name
TABLES: Registry = Registry("table")

TABLE2_TASKS = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"]
TASK_LABELS = {
    "piqa": "PIQA",
    "winogrande": "WinoGrande",
    "hellaswag": "HellaSwag",
    "arc_easy": "ARC-e",
    "arc_challenge": "ARC-c",
    "mmlu": "MMLU",
}


def method_order() -> dict[str, int]:
    """Row order: dense first, then the methods in registry order."""
    from ..methods import METHODS

    return {"dense": 0} | {name: i + 1 for i, name in enumerate(METHODS.names())}


def load_results(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        try:
            res = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PruneNetError(
                f"cannot read evaluation file {p} ({type(exc).__name__}): rerun its evaluate step"
            ) from exc
        res["source"] = str(p)
        out.append(res)
    return out


def _write_table(df: pd.DataFrame, out: str, out_md: str, markdown: pd.DataFrame | None = None) -> list[Path]:
    """The table as CSV (full precision, every column) and as Markdown (what a reader looks at)."""
    out, md = Path(out), Path(out_md)
    with atomic_file(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_file(md) as tmp:
        tmp.write_text((markdown if markdown is not None else df).to_markdown(index=False, floatfmt=".2f") + "\n")
    return [out, md]


def _schedule(spec) -> str:
    """How the ratio was spread over layers: uniform, a named schedule, or an explicit per-layer list."""
    if isinstance(spec, str):
        return spec
    return "per-layer" if isinstance(spec, list) else "uniform"


def accuracy_frame(results: list[dict], tasks: list[str]) -> pd.DataFrame:
    """One row per evaluated model: primary metric (×100) and its stderr per task, avg, recovery % of dense."""
    rows = []
    for r in results:
        meta = r.get("meta", {})
        row = {
            "model": r.get("model"),
            "method": r.get("method"),
            "ratio": float(r.get("ratio") or 0.0),
            "schedule": _schedule(meta.get("ratio_spec")),
            "rft": meta.get("rft_dataset", "none"),
            "rft_samples": int(meta.get("rft_samples", 0)),
        }
        for t in tasks:
            res = r.get("tasks", {}).get(t)
            if res is None:
                raise PruneNetError(f"{r['source']} has no result for task {t!r}: re-run evaluate with it")
            row[t] = 100 * res["primary"]
            row[f"{t}_stderr"] = 100 * res["primary_stderr"] if res.get("primary_stderr") is not None else float("nan")
        row["avg"] = sum(row[t] for t in tasks) / len(tasks)
        if "perplexity" in r:
            row["ppl"] = r["perplexity"]["ppl"]
        row["limit"] = r.get("limit")
        row["source"] = r["source"]
        rows.append(row)
    df = pd.DataFrame(rows)
    dense = df[(df["method"] == "dense") & (df["rft"] == "none")].set_index("model")
    for col in tasks + ["avg"]:
        base = df["model"].map(dense[col]) if not dense.empty else float("nan")
        df[f"{col}_recovery"] = 100 * df[col] / base
    order = method_order()
    df = (
        df.assign(_o=df["method"].map(lambda m: order.get(m, len(order))))
        .sort_values(["model", "ratio", "_o", "method", "schedule", "rft", "rft_samples"])
        .drop(columns="_o")
    )
    return df.reset_index(drop=True)


def _accuracy_markdown(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    extra = (["schedule"] if (df["schedule"] != "uniform").any() else []) + (
        ["rft", "rft_samples"] if (df["rft"] != "none").any() else []
    )
    md = df[["model", "ratio", "method"] + extra].copy()
    for t in tasks + ["avg"]:
        label = TASK_LABELS.get(t, "Avg." if t == "avg" else t)
        se = df.get(f"{t}_stderr")
        md[label] = [
            f"{v:.1f}" + (f" ± {s:.1f}" if se is not None and s == s else "") + (f" ({rec:.0f}%)" if rec == rec else "")
            for v, s, rec in zip(df[t], se if se is not None else [float("nan")] * len(df), df[f"{t}_recovery"])
        ]
    if "ppl" in df:
        md["PPL"] = df["ppl"].map(lambda v: f"{v:.2f}")
    return md


@TABLES.decorator("table2")
def table2(inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 2: zero-shot accuracy per (model, ratio, method) with recovery % of dense."""
    tasks = tasks or TABLE2_TASKS
    df = accuracy_frame(load_results(inputs), tasks)
    return _write_table(df, out, out_md, _accuracy_markdown(df, tasks))


@TABLES.decorator("table1")
def table1(inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 1: sparsity, effective sparsity (incl. added matrices), FLOPs/token and average accuracy."""
    tasks = tasks or TABLE2_TASKS
    results = load_results(inputs)
    acc = accuracy_frame(results, tasks).set_index("source")
    rows = []
    for r in results:
        stats = r.get("meta", {}).get("stats", {})
        rows.append(
            {
                "model": r.get("model"),
                "method": r.get("method"),
                "ratio": float(r.get("ratio") or 0.0),
                "params": stats.get("params"),
                "effective_sparsity": 100 * stats.get("effective_sparsity", 0.0),
                "flops_per_token": stats.get("flops_per_token"),
                "flops_seq_len": stats.get("flops_seq_len"),
                "avg_acc": acc.loc[r["source"], "avg"],
                "ppl": r.get("perplexity", {}).get("ppl"),
                "source": r["source"],
            }
        )
    df = pd.DataFrame(rows).sort_values(["model", "ratio", "method"]).reset_index(drop=True)
    return _write_table(df, out, out_md)


@TABLES.decorator("table3")
def table3(inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 3: every pruned model with and without RFT (same tasks, recovery % of dense)."""
    return table2(inputs, out, out_md, tasks)


@TABLES.decorator("table8")
def table8(inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 8: the RFT dataset comparison; rows are (ratio, RFT dataset)."""
    return table2(inputs, out, out_md, tasks)
