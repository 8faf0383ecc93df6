"""Tables of the paper, computed from the pipeline's evaluation JSONs only.

Every number in a table comes from an evaluation JSON written by ``prunenet evaluate``
(its path is kept in the ``source`` column); nothing is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import PruneNetError
from ..registry import Registry
from .frames import accuracy_frame, load_results, per_seed_and_mean, ppl_columns, summary_frame
from .labels import PAPER_TASKS, TABLE2_TASKS, TASK_LABELS
from .paired import BOOTSTRAP
from .render import accuracy_markdown, cell, table_note, write_table

# name -> function(inputs, out_csv, out_md, **options); the workflow's `table` rule builds each by name
TABLES: Registry = Registry("table")


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
    from .verdicts import comparison_markdown

    tasks = tasks or TABLE2_TASKS
    results = load_results(inputs)
    df = accuracy_frame(results, tasks)
    summary = summary_frame(df, tasks)
    md = accuracy_markdown(summary, tasks).to_markdown(index=False) + "\n\n" + table_note(results)
    md += "".join(f"{n}\n" for n in notes or [])
    if comparisons is not None:
        md += "\n" + comparison_markdown(results, tasks, **comparisons)
        summary = with_versus(summary, results, tasks, comparisons["iters"], comparisons["seed"], printed=False)
    return write_table(per_seed_and_mean(df, summary), out, out_md, md)


def with_versus(
    summary: pd.DataFrame, results: list[dict], tasks: list[str], iters: int, seed: int, printed: bool = True
) -> pd.DataFrame:
    """The mean rows with their paired difference of average accuracy from PruneNet at their ratio and from dense
    (``avg_diff_vs_prunenet``, ``avg_ci_lo_vs_…``, ``avg_ci_hi_vs_…``, ``avg_p_vs_…``, ``avg_p_holm_vs_…``,
    ``avg_mde_vs_…``; uniform rows without RFT). ``printed``: Holm's family is these differences (the baselines
    table prints them), else every pair printed under the table (:func:`~.verdicts.comparison_markdown`)."""
    from .comparisons import versus_columns

    versus = versus_columns(results, tasks, "prunenet", iters, seed, printed)
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
        bootstrap: int = BOOTSTRAP,
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
    "method at its configured budget (PruneNet's size or its own ratio; settings.md); paired comparisons under it.",
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
    return write_table(df.reset_index(drop=True), out, out_md)


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
    inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, bootstrap: int = BOOTSTRAP, seed: int = 0
) -> list[Path]:
    """Paper Table 6: a policy trained at one ratio applied at others; (same-ratio policy) and the drop's p-value."""
    from .comparisons import transfer_frame, transfer_markdown

    tasks = tasks or TABLE2_TASKS
    df = transfer_frame(load_results(inputs), tasks, bootstrap, seed)
    return write_table(df, out, out_md, transfer_markdown(df, tasks))


@TABLES.decorator("table23")
def table23(
    inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, bootstrap: int = BOOTSTRAP, seed: int = 0
) -> list[Path]:
    """Paper Table 23: MMLU subjects zero-shot, one column each and their average (kept out of the five-task
    average); paired comparisons under it."""
    if not tasks:
        raise PruneNetError('table23 needs its MMLU subjects: --options \'{"tasks": ["mmlu_<subject>", ...]}\'')
    return accuracy_table(inputs, out, out_md, tasks, {"iters": bootstrap, "seed": seed})


@TABLES.decorator("pairs")
def pairs(
    inputs: list[str], out: str, out_md: str, tasks: list[str] | None = None, bootstrap: int = BOOTSTRAP, seed: int = 0
) -> list[Path]:
    """Table 2's paired comparisons in full: every pair of rows at a ratio and vs dense, per task and on average."""
    from .comparisons import comparisons_frame

    tasks = tasks or TABLE2_TASKS
    df = comparisons_frame(load_results(inputs), tasks, bootstrap, seed)
    return write_table(df, out, out_md)


@TABLES.decorator("baselines")
def baselines(
    inputs: list[str],
    out: str,
    out_md: str,
    tasks: list[str] | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
    notes: list[str] | None = None,
) -> list[Path]:
    """Every method at every ratio on one parameter budget: size, accuracy, perplexity, compression time, and the
    paired difference from PruneNet — the one table a user reads to pick a method."""
    from .verdicts import against_markdown

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
        md[label] = [cell(v, sd) for v, sd in zip(summary[t], summary[f"{t}_sd"])]
    for col in ppl_columns(summary):
        md[f"PPL {col[4:]}"] = [cell(v, sd, 2) for v, sd in zip(summary[col], summary[f"{col}_sd"])]
    md["compress s"] = [_seconds(c, p) for c, p in zip(summary["compress_seconds"], summary["policy_seconds"])]
    md["peak MB"] = summary["peak_memory_mb"].map(lambda v: f"{v:.0f}" if v == v else "–")
    md["seeds"] = summary["seeds"]
    text = md.to_markdown(index=False) + "\n\n" + table_note(results) + "".join(f"{n}\n" for n in notes or [])
    text += (
        "Compress s: the method's own wall time on the pruning job's device (loading and saving excluded); "
        "for PruneNet + the policy's training (shown after +), which one policy serves every checkpoint at its ratio. "
        "Peak MB: the pruning process's peak memory (resident set on CPU, allocator peak on CUDA), loading included.\n"
    )
    text += "\n" + against_markdown(results, tasks, "prunenet", bootstrap, seed)
    summary = with_versus(summary, results, tasks, bootstrap, seed)
    cols += [c for c in summary.columns if "_vs_" in c]
    return write_table(summary[cols], out, out_md, text)


def _seconds(compress: float, policy: float) -> str:
    if compress != compress:
        return "–"

    def fmt(v: float) -> str:
        return f"{v:.1f}" if v < 10 else f"{v:.0f}"

    return fmt(compress) + (f" + {fmt(policy)}" if policy == policy else "")
