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
from .labels import PAPER_TASKS, TASK_LABELS

# name -> function(inputs, out_csv, out_md, **options); the workflow's `table` rule builds each by name
TABLES: Registry = Registry("table")

TABLE2_TASKS = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"]


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


def _write_table(df: pd.DataFrame, out: str, out_md: str, markdown: str | pd.DataFrame | None = None) -> list[Path]:
    """The table as CSV (full precision, every column) and as Markdown (what a reader looks at)."""
    out, md = Path(out), Path(out_md)
    if not isinstance(markdown, str):
        markdown = (markdown if markdown is not None else df).to_markdown(index=False, floatfmt=".2f") + "\n"
    with atomic_file(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_file(md) as tmp:
        tmp.write_text(markdown)
    return [out, md]


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


def _cell(mean: float, sd: float | None, digits: int = 1) -> str:
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None and sd == sd else "")


def _accuracy_markdown(summary: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    extra = (["schedule"] if (summary["schedule"] != "uniform").any() else []) + (
        ["rft", "rft_samples"] if (summary["rft"] != "none").any() else []
    )
    md = summary[["model", "ratio", "method"] + extra].copy()
    for t in tasks + ["avg"]:
        label = TASK_LABELS.get(t, "Avg." if t == "avg" else t)
        md[label] = [
            _cell(v, s) + (f" ({rec:.0f}%)" if rec == rec else "")
            for v, s, rec in zip(summary[t], summary[f"{t}_sd"], summary[f"{t}_recovery"])
        ]
    for col in ppl_columns(summary):
        md[f"PPL {col[4:]}"] = [_cell(v, s, 2) for v, s in zip(summary[col], summary[f"{col}_sd"])]
    md["params (M)"] = summary["params"].map(lambda v: f"{v / 1e6:.1f}")
    md["eff. sparsity %"] = summary["effective_sparsity"].map(lambda v: f"{v:.1f}")
    md["seeds"] = summary["seeds"]
    return md


def _table_note(results: list[dict], recovery: bool = True) -> str:
    """What every number in the table rests on: items per task, perplexity blocks × tokens, seeds."""
    limits = sorted({str(r.get("limit")) for r in results})
    ppl = sorted(
        {f"{name} {res['n_blocks']}×{res['seq_len']} tokens" for r in results for name, res in r["perplexity"].items()}
    )
    ppl_note = f"Perplexity on the test split: {'; '.join(ppl)}. " if ppl else ""
    return (
        f"Items per task: {', '.join(limits)} (None = the full set). {ppl_note}"
        "Cells: mean ± sd over seeds (no sd with one seed)" + ("; (%) = recovery of dense.\n" if recovery else ".\n")
    )


def accuracy_table(
    inputs: list[str],
    out: str,
    out_md: str,
    tasks: list[str] | None,
    comparisons: dict | None = None,
    notes: list[str] | None = None,
) -> list[Path]:
    """Per-seed and mean rows (CSV), the mean ± sd table (Markdown); ``comparisons``: paired statistics under it,
    and on each mean row of the CSV its difference from PruneNet and from dense (:func:`with_versus`)."""
    from .comparisons import comparison_markdown

    tasks = tasks or TABLE2_TASKS
    results = load_results(inputs)
    df = accuracy_frame(results, tasks)
    summary = summary_frame(df, tasks)
    md = _accuracy_markdown(summary, tasks).to_markdown(index=False) + "\n\n" + _table_note(results)
    md += "".join(f"{n}\n" for n in notes or [])
    if comparisons is not None:
        md += "\n" + comparison_markdown(results, tasks, **comparisons)
        summary = with_versus(summary, results, tasks, comparisons["iters"], comparisons["seed"])
    return _write_table(per_seed_and_mean(df, summary), out, out_md, md)


def with_versus(summary: pd.DataFrame, results: list[dict], tasks: list[str], iters: int, seed: int) -> pd.DataFrame:
    """The mean rows with their paired difference of average accuracy from PruneNet at their ratio and from dense
    (``avg_diff_vs_prunenet``, ``avg_ci_lo_vs_…``, ``avg_ci_hi_vs_…``, ``avg_p_vs_…``; uniform rows without RFT)."""
    from .comparisons import versus_columns

    versus = versus_columns(results, tasks, "prunenet", iters, seed)
    if versus is None or versus.empty:
        return summary
    versus = versus.assign(schedule="uniform", rft="none")
    return summary.merge(versus, on=["model", "ratio", "method", "setting", "schedule", "rft"], how="left")


def _compared(name: str, doc: str, default_tasks: list[str] | None = None) -> None:
    """Register an accuracy table with paired comparisons under it (CSV mean rows: their difference from PruneNet
    and from dense); ``default_tasks``: its paper layout's columns when the caller names none."""

    def build(
        inputs: list[str],
        out: str,
        out_md: str,
        tasks: list[str] | None = None,
        bootstrap: int = 2000,
        seed: int = 0,
        notes: list[str] | None = None,  # lines under the table (e.g. a method skipped on a model it refuses)
    ) -> list[Path]:
        tasks = tasks or default_tasks
        return accuracy_table(inputs, out, out_md, tasks, {"iters": bootstrap, "seed": seed}, notes)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    TABLES.register(name, build)


_compared(
    "table2",
    "Paper Table 2: accuracy and perplexity, mean ± sd over seeds; paired comparisons and the KS test under it.",
)
_compared(
    "table20",
    "Paper Table 20: PruneNet's policy on self-attention (whole KV groups removed), without and with RFT.",
)
_compared("table21", "Paper Table 21: PruneNet on every configured model (each model's dense row first), no RFT.")
_compared(
    "table22",
    "Paper Table 22: SliceGPT on every configured model it can slice (the others named under it), no RFT.",
)
_compared(
    "table4",
    "Paper Table 4: PruneNet against the depth pruners (ShortGPT, LaCo) and SliceGPT on PIQA and HellaSwag, every "
    "method on PruneNet's parameter budget; paired comparisons under it.",
    PAPER_TASKS["table4"],
)
_compared(
    "table5",
    "Paper Table 5: PruneNet against SliceGPT and the low-rank methods (SVD-LLM, ASVD) on five tasks.",
    PAPER_TASKS["table5"],
)


@TABLES.decorator("table1")
def table1(inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, **_: object) -> list[Path]:
    """Paper Table 1: sparsity, effective sparsity (incl. added matrices), FLOPs/token, average accuracy (mean ± sd)."""
    tasks = tasks or TABLE2_TASKS
    summary = summary_frame(accuracy_frame(load_results(inputs), tasks), tasks)
    summary = summary[summary["rft"] == "none"]
    cols = ["model", "method", "setting", "ratio", "params", "effective_sparsity", "flops_per_token", "avg", "avg_sd"]
    df = summary[cols + [c for p in ppl_columns(summary) for c in (p, f"{p}_sd")] + ["seeds"]]
    return _write_table(df.reset_index(drop=True), out, out_md)


@TABLES.decorator("table3")
def table3(inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, **_: object) -> list[Path]:
    """Paper Table 3: every pruned model with and without RFT (same tasks, recovery % of dense)."""
    return accuracy_table(inputs, out, out_md, tasks)


@TABLES.decorator("table8")
def table8(inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, **_: object) -> list[Path]:
    """Paper Table 8: the RFT dataset comparison; rows are (ratio, RFT dataset)."""
    return accuracy_table(inputs, out, out_md, tasks)


@TABLES.decorator("table6")
def table6(
    inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, bootstrap: int = 2000, seed: int = 0
) -> list[Path]:
    """Paper Table 6: a policy trained at one ratio applied at others; (same-ratio policy) and the drop's p-value."""
    from .comparisons import transfer_frame, transfer_markdown

    tasks = tasks or TABLE2_TASKS
    df = transfer_frame(load_results(inputs), tasks, bootstrap, seed)
    return _write_table(df, out, out_md, transfer_markdown(df, tasks))


@TABLES.decorator("table23")
def table23(
    inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, bootstrap: int = 2000, seed: int = 0
) -> list[Path]:
    """Paper Table 23: MMLU subjects zero-shot, one column each and their average (kept out of the five-task
    average); paired comparisons under it."""
    if not tasks:
        raise PruneNetError('table23 needs its MMLU subjects: --options \'{"tasks": ["mmlu_<subject>", ...]}\'')
    return accuracy_table(inputs, out, out_md, tasks, {"iters": bootstrap, "seed": seed})


@TABLES.decorator("pairs")
def pairs(
    inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, bootstrap: int = 2000, seed: int = 0
) -> list[Path]:
    """Table 2's paired comparisons in full: every pair of rows at a ratio and vs dense, per task and on average."""
    from .comparisons import comparisons_frame

    tasks = tasks or TABLE2_TASKS
    df = comparisons_frame(load_results(inputs), tasks, bootstrap, seed)
    return _write_table(df, out, out_md)


@TABLES.decorator("baselines")
def baselines(
    inputs: list[str],
    out: str,
    out_md: str,
    tasks: list[str] | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    notes: list[str] | None = None,
) -> list[Path]:
    """Every method at every ratio on one parameter budget: size, accuracy, perplexity, compression time, and the
    paired difference from PruneNet — the one table a user reads to pick a method."""
    from .comparisons import against_markdown

    tasks = tasks or TABLE2_TASKS
    results = load_results(inputs)
    summary = summary_frame(accuracy_frame(results, tasks), tasks)
    summary = summary[summary["rft"] == "none"].reset_index(drop=True)
    summary["total_seconds"] = summary["compress_seconds"] + summary["policy_seconds"].fillna(0.0)
    cols = ["model", "ratio", "method", "setting", "params", "effective_sparsity", "flops_per_token"]
    cols += [c for m in tasks + ["avg"] + ppl_columns(summary) for c in (m, f"{m}_sd")]
    cols += ["compress_seconds", "policy_seconds", "total_seconds", "peak_memory_mb", "seeds", "limit"]
    md = summary[["model", "ratio", "method"]].copy()
    md["params (M)"] = summary["params"].map(lambda v: f"{v / 1e6:.2f}")
    md["eff. sparsity %"] = summary["effective_sparsity"].map(lambda v: f"{v:.1f}")
    for t in tasks + ["avg"]:
        label = TASK_LABELS.get(t, "Avg." if t == "avg" else t)
        md[label] = [_cell(v, sd) for v, sd in zip(summary[t], summary[f"{t}_sd"])]
    for col in ppl_columns(summary):
        md[f"PPL {col[4:]}"] = [_cell(v, sd, 2) for v, sd in zip(summary[col], summary[f"{col}_sd"])]
    md["compress s"] = [_seconds(c, p) for c, p in zip(summary["compress_seconds"], summary["policy_seconds"])]
    md["peak MB"] = summary["peak_memory_mb"].map(lambda v: f"{v:.0f}" if v == v else "–")
    md["seeds"] = summary["seeds"]
    text = md.to_markdown(index=False) + "\n\n" + _table_note(results) + "".join(f"{n}\n" for n in notes or [])
    text += (
        "Compress s: the method's own wall time on the pruning job's device (loading and saving excluded); "
        "for PruneNet + the policy's training (shown after +), which one policy serves every checkpoint at its ratio. "
        "Peak MB: the pruning process's peak memory (resident set on CPU, allocator peak on CUDA), loading included.\n"
    )
    text += "\n" + against_markdown(results, tasks, "prunenet", bootstrap, seed)
    summary = with_versus(summary, results, tasks, bootstrap, seed)
    cols += [c for c in summary.columns if "_vs_" in c]
    return _write_table(summary[cols], out, out_md, text)


def _seconds(compress: float, policy: float) -> str:
    if compress != compress:
        return "–"

    def fmt(v: float) -> str:
        return f"{v:.1f}" if v < 10 else f"{v:.0f}"

    return fmt(compress) + (f" + {fmt(policy)}" if policy == policy else "")
