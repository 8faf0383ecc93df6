"""``results/report.md``: every table and figure of a run on one page, with one line on what each shows and
what in it is significant — the page a reader opens first.

It computes nothing new: every number is read from the CSV of the table its line links to (``tests/test_report.py``
checks each against its own cell), and significance is the tables' own: the paired bootstrap's p, Holm-adjusted over
the comparisons the table prints, below 0.05 (the CIs quoted beside it are unadjusted). The headline table is the
``baselines`` table's average accuracy and WikiText-2 perplexity (Table 5's or Table 2's when the run has no
baselines table).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..artifacts import atomic_file
from ..errors import PruneNetError
from .multiplicity import ALPHA, significant

RESULT = "**Result:**"  # what follows it on a line is read from the linked table (the test checks every number)


def doc_text(obj: object, literal: str = "{}") -> str:
    """``obj``'s docstring on one line, Sphinx roles (``:func:`x```) written as ``literal`` formats their text:
    plain here, ````x```` in Snakemake's reStructuredText captions (which know no Sphinx roles)."""
    text = " ".join((obj.__doc__ or "").split())
    return re.sub(r":\w+:`([^`]*)`", lambda m: literal.format(m.group(1)), text)


def _doc(obj: object) -> str:
    """The first sentence of a report's docstring: what the table or figure shows."""
    text = doc_text(obj)
    first = re.split(r"(?<=[\w)])\. (?=[A-Z])", text)[0]  # "(incl. added …)" is no sentence end
    return first.rstrip(".") + "." if text else ""


def _diff(v: float, lo: float, hi: float) -> str:
    return f"{v:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _versus(means: pd.DataFrame, reference: str) -> str:
    """Which rows differ significantly from ``reference`` (PruneNet at its ratio, or dense)."""
    col = f"avg_diff_vs_{reference}"
    if col not in means:
        return ""
    rows = means[means[col].notna()]
    if rows.empty:
        return ""
    lo, hi, adj = f"avg_ci_lo_vs_{reference}", f"avg_ci_hi_vs_{reference}", f"avg_p_holm_vs_{reference}"
    sig = rows[rows[adj].map(significant)]
    said = [
        f"{r['method']} at r = {r['ratio']:g} ({_diff(r[col], r[lo], r[hi])}, Holm p = {r[adj]:.3f})"
        for _, r in sig.iterrows()
    ]
    name = "PruneNet" if reference == "prunenet" else reference
    if not said:
        return f"No row differs significantly from {name} in average accuracy (Holm-adjusted)."
    return (
        f"Significantly different from {name} in average accuracy (Holm-adjusted p; CI unadjusted): "
        f"{'; '.join(said)}; no other row is."
    )


def _ablation(means: pd.DataFrame) -> str:
    rows = means[means["avg_diff"].notna()]
    if rows.empty:
        return "No paired comparison (the reference variant did not run at these ratios)."
    said = [
        f"{r['variant']} − {r['vs']} at r = {r['ratio']:g}: {_diff(r['avg_diff'], r['avg_ci_lo'], r['avg_ci_hi'])}, "
        f"Holm p = {r['avg_p_holm']:.3f}, " + ("significant" if significant(r["avg_p_holm"]) else "not significant")
        for _, r in rows.iterrows()
    ]
    return "Average accuracy, paired (CI unadjusted; significance on the Holm-adjusted p): " + "; ".join(said) + "."


def _transfer(df: pd.DataFrame) -> str:
    sig = df[df["avg_p_holm"].map(significant)]
    said = [
        f"policy from r = {r['policy_ratio']:g} at r = {r['ratio']:g} (Holm p = {r['avg_p_holm']:.3f})"
        for _, r in sig.iterrows()
    ]
    if not said:
        smallest = df["avg_p_holm"].min()
        return (
            "No transferred policy differs significantly from the same-ratio one "
            f"(smallest Holm-adjusted p = {smallest:.3f})."
        )
    return "Transferred policies that differ significantly from the same-ratio one: " + "; ".join(said) + "."


def _pairs(df: pd.DataFrame) -> str:
    avg = df[df["task"] == "avg"]
    sig = avg[avg["p_holm"].map(significant)]
    said = [
        f"{r['a']} − {r['b']} at r = {r['ratio']:g} ({_diff(r['diff'], r['ci_lo'], r['ci_hi'])}, Holm p = "
        f"{r['p_holm']:.3f})"
        for _, r in sig.iterrows()
    ]
    if not said:
        return "No average-accuracy difference is significant (Holm-adjusted p)."
    return (
        "Significant average-accuracy differences (Holm-adjusted p; CI unadjusted): "
        + "; ".join(said)
        + "; no other pair's is."
    )


def _speed(df: pd.DataFrame) -> str:
    b = df["batch_size"].max()
    rows = df[(df["batch_size"] == b) & (df["method"] != "dense")]
    said = [f"{r['method']} {r['decode_speedup']:.2f} (ideal {r['ideal_speedup']:.2f})" for _, r in rows.iterrows()]
    return f"Decode speed-up over dense at batch {b} (timings, no significance test): " + ", ".join(said) + "."


def _quantize(df: pd.DataFrame) -> str:
    rows = df[df["method"] != "dense"]
    said = [
        f"{r['method']} {r['type']} {r['speedup']:.2f} [{r['speedup_lo']:.2f}, {r['speedup_hi']:.2f}] "
        f"(ideal {r['ideal_speedup']:.2f})"
        for _, r in rows.iterrows()
    ]
    return (
        "Decode speed-up over dense in llama.cpp at the same type (95 % Welch interval over whole runs, unadjusted: "
        "timings, no significance test): " + ", ".join(said) + "."
    )


def significance_line(name: str, df: pd.DataFrame) -> str:
    """What in one table is significant, from its CSV's columns."""
    means = df[df["row"] == "mean"] if "row" in df else df
    if name == "pairs":
        return _pairs(df)
    if name == "table6":
        return _transfer(df)
    if name == "table9":
        return _speed(df)
    if name == "quantize":
        return _quantize(df)
    if "avg_diff" in means and "vs" in means:
        return _ablation(means)
    if "avg_diff_vs_prunenet" in means:
        lines = (_versus(means, "prunenet"), _versus(means, "dense"))
        return " ".join(x for x in lines if x)
    return "Descriptive (no paired test in this table)."


def headline(df: pd.DataFrame) -> str:
    """Average accuracy (± sd over seeds) and WikiText-2 perplexity of every method at every ratio."""
    means = df[(df["row"] == "mean") if "row" in df else slice(None)]
    means = means[means["method"] != "dense"] if "method" in means else means
    ppl = "ppl_wikitext2" if "ppl_wikitext2" in means else None
    out = pd.DataFrame({"method": means["method"], "ratio": means["ratio"]})
    out["avg"] = [f"{v:.1f}" + (f" ± {s:.1f}" if s == s else "") for v, s in zip(means["avg"], means["avg_sd"])]
    if ppl:
        out["ppl"] = means[ppl].map(lambda v: f"{v:.1f}")
    wide = out.pivot(index="method", columns="ratio", values="avg")
    wide.columns = [f"avg r = {c:g}" for c in wide.columns]
    if ppl:
        p = out.pivot(index="method", columns="ratio", values="ppl")
        p.columns = [f"PPL r = {c:g}" for c in p.columns]
        wide = wide.join(p)
    order = list(dict.fromkeys(means["method"]))
    return wide.loc[order].reset_index().to_markdown(index=False, disable_numparse=True)


def _link(path: Path, root: Path, suffix: str = ".md") -> Path:
    """A table's Markdown (a figure itself) relative to the report's folder, as the report links it."""
    path = path.with_suffix(suffix)
    return path.relative_to(root) if path.is_relative_to(root) else path


HEADLINES = ("baselines", "table5", "table2")  # the first of these among the inputs heads the report


def summary(inputs: list[str], out: str, headline_table: str | None = None) -> list[Path]:
    """results/report.md: the headline table, then one line per table (what, significance) and per figure."""
    from . import FIGURES, TABLES

    tables = [Path(p) for p in inputs if Path(p).suffix == ".csv"]
    figures = [Path(p) for p in inputs if Path(p).suffix == ".png"]
    unknown = [p for p in inputs if Path(p).suffix not in (".csv", ".png")]
    if unknown:
        raise PruneNetError(f"report summary takes table CSVs and figure PNGs, not {unknown[0]}")
    root = Path(out).parent
    frames = {}
    for path in tables:
        if path.stem not in TABLES:
            raise PruneNetError(f"{path} is not a registered table ({', '.join(TABLES.names())})")
        frames[path.stem] = (path, pd.read_csv(path))
    lines = ["# PruneNet run report", ""]
    lines += [
        "Every number below is read from the table its line links to; significance is that table's paired "
        f"bootstrap over items and seeds: a p-value that stays below {ALPHA:g} after Holm's adjustment over the "
        "comparisons the table prints (the confidence intervals quoted are unadjusted), differences in accuracy "
        "points.",
        "",
    ]
    headline_table = headline_table or next((t for t in HEADLINES if t in frames), None)
    if headline_table in frames:
        path, df = frames[headline_table]
        title = f"## Headline: average accuracy and perplexity ([{headline_table}]({_link(path, root)}))"
        lines += [title, "", headline(df), ""]
    lines += ["## Tables", ""]
    for name, (path, df) in frames.items():
        rel = _link(path, root)
        lines.append(f"- [{name}]({rel}): {_doc(TABLES.get(name))} {RESULT} {significance_line(name, df)}")
    if figures:
        lines += ["", "## Figures", ""]
        for fig in figures:
            kind = next((k for k in FIGURES if fig.stem == k or fig.stem.startswith(f"{k}_")), None)
            rel = _link(fig, root, suffix=".png")
            what = _doc(FIGURES[kind]) if kind else ""
            lines.append(f"- [{fig.name}]({rel}): {what}")
    with atomic_file(Path(out)) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return [Path(out)]
