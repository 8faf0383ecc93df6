"""Evaluation JSONs as data frames: one row per evaluated model and seed, then the mean ± sd rows of a table.

Why a module of its own: every table kind (accuracy tables, ablations, figures, the speed table) starts from
these frames; the table registry in :mod:`.tables` sits above them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import PruneNetError


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
        if not isinstance(res, dict) or "tasks" not in res:
            raise PruneNetError(f"{p} is not an evaluation output (a JSON object with tasks): give `evaluate` outputs")
        res["source"] = str(p)
        out.append(res)
    return out


def _number(value) -> float:
    """A recorded number, or NaN when the record has none."""
    return float("nan") if value is None else float(value)


def _schedule(spec) -> str:
    """How the ratio was spread over layers: uniform, a named schedule, or an explicit per-layer list."""
    if isinstance(spec, str):
        return spec
    return "per-layer" if isinstance(spec, list) else "uniform"


# What identifies one table row before seeds: rows differing only in seed are averaged.
ROW_KEYS = ["model", "ratio", "method", "setting", "train_ratio", "schedule", "rft", "rft_samples"]


def _train_ratio(meta: dict) -> float:
    """The ratio the applied policy was trained at (NaN for methods without a policy)."""
    value = meta.get("policy_trained_at")
    return float(value) if value is not None else float("nan")


def accuracy_frame(results: list[dict], tasks: list[str]) -> pd.DataFrame:
    """One row per evaluated model (one seed): primary metric (×100) per task and its stderr, avg, perplexities."""
    rows = []
    for r in results:
        meta = r.get("meta", {})
        stats = meta.get("stats", {})
        row = {
            "model": r.get("model"),
            "method": r.get("method"),
            "setting": r.get("setting", "default"),
            "train_ratio": _train_ratio(meta),
            "ratio": float(r.get("ratio") or 0.0),
            "seed": r.get("seed"),
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
        for name, res in r.get("perplexity", {}).items():
            row[f"ppl_{name}"] = res["ppl"]
        row["params"] = stats.get("params")
        row["flops_per_token"] = stats.get("flops_per_token")
        row["effective_sparsity"] = 100 * stats.get("effective_sparsity", 0.0)
        # absent = not recorded (NaN); a recorded 0.0 stays 0.0
        row["compress_seconds"] = _number(meta.get("compress_seconds"))
        row["peak_memory_mb"] = _number(meta.get("peak_memory_mb"))
        # policy methods: training the policy is part of the cost
        row["policy_seconds"] = _number(meta.get("policy_train_seconds"))
        row["limit"] = r.get("limit")
        row["source"] = r["source"]
        rows.append(row)
    df = pd.DataFrame(rows)
    order = method_order()
    df = (
        df.assign(_o=df["method"].map(lambda m: order.get(m, len(order))))
        .sort_values(["model", "ratio", "_o", "method", "setting", "schedule", "rft", "rft_samples", "seed"])
        .drop(columns="_o")
    )
    return df.reset_index(drop=True)


def ppl_columns(df: pd.DataFrame) -> list[str]:
    """``ppl_<dataset>`` columns in the order of :data:`prunenet.choices.DATASETS` (WikiText-2 first)."""
    from ..choices import DATASETS

    cols = [c for c in df.columns if c.startswith("ppl_") and not c.endswith("_sd")]
    return sorted(cols, key=lambda c: DATASETS.index(c[4:]) if c[4:] in DATASETS else len(DATASETS))


def metric_columns(df: pd.DataFrame, tasks: list[str]) -> list[str]:
    return tasks + ["avg"] + ppl_columns(df)


def summary_frame(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Mean and sd over seeds of every metric per row identity, with recovery % of dense (of the means)."""
    cols = metric_columns(df, tasks)
    keyed = df.assign(train_ratio=df["train_ratio"].fillna(-1.0))  # NaN keys would drop rows in groupby
    g = keyed.groupby(ROW_KEYS, sort=False)
    cost = ["compress_seconds", "policy_seconds", "peak_memory_mb"]
    out = g[cols + ["params", "effective_sparsity", "flops_per_token"] + cost].mean()
    sd = g[cols].std(ddof=1).add_suffix("_sd")
    out = out.join(sd).join(g.size().rename("seeds")).join(g["limit"].first()).reset_index()
    out["train_ratio"] = out["train_ratio"].where(out["train_ratio"] >= 0)
    dense = out[(out["method"] == "dense") & (out["rft"] == "none")].set_index("model")
    for col in tasks + ["avg"]:
        base = out["model"].map(dense[col]) if not dense.empty else float("nan")
        out[f"{col}_recovery"] = 100 * out[col] / base
    return out


def per_seed_and_mean(df: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The CSV of an accuracy table: every per-seed row (row = "seed") and the mean rows (row = "mean")."""
    return pd.concat([df.assign(row="seed"), summary.assign(row="mean")], ignore_index=True)
