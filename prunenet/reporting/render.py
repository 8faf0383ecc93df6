"""Writing a table: its CSV and Markdown twins (atomically) and the Markdown cells and notes every table shares."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..artifacts import atomic_file
from .frames import ppl_columns
from .labels import TASK_LABELS


def write_table(df: pd.DataFrame, out: str, out_md: str, markdown: str | pd.DataFrame | None = None) -> list[Path]:
    """The table as CSV (full precision, every column) and as Markdown (what a reader looks at)."""
    out, md = Path(out), Path(out_md)
    if not isinstance(markdown, str):
        markdown = (markdown if markdown is not None else df).to_markdown(index=False, floatfmt=".2f") + "\n"
    with atomic_file(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_file(md) as tmp:
        tmp.write_text(markdown)
    return [out, md]


def cell(mean: float, sd: float | None, digits: int = 1) -> str:
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None and sd == sd else "")


def accuracy_markdown(summary: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    extra = (["schedule"] if (summary["schedule"] != "uniform").any() else []) + (
        ["rft", "rft_samples"] if (summary["rft"] != "none").any() else []
    )
    md = summary[["model", "ratio", "method"] + extra].copy()
    for t in tasks + ["avg"]:
        label = TASK_LABELS.get(t, "Avg." if t == "avg" else t)
        md[label] = [
            cell(v, s) + (f" ({rec:.0f}%)" if rec == rec else "")
            for v, s, rec in zip(summary[t], summary[f"{t}_sd"], summary[f"{t}_recovery"])
        ]
    for col in ppl_columns(summary):
        md[f"PPL {col[4:]}"] = [cell(v, s, 2) for v, s in zip(summary[col], summary[f"{col}_sd"])]
    md["params (M)"] = summary["params"].map(lambda v: f"{v / 1e6:.1f}")
    md["eff. sparsity %"] = summary["effective_sparsity"].map(lambda v: f"{v:.1f}")
    md["seeds"] = summary["seeds"]
    return md


def table_note(results: list[dict], recovery: bool = True) -> str:
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
