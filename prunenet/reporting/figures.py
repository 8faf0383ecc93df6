"""Figures of the paper, drawn from the pipeline's CSV and JSON outputs only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..artifacts import atomic_file
from .frames import accuracy_frame, load_results, summary_frame
from .labels import TABLE2_TASKS


def fig1(inputs: list[str], out: str) -> list[Path]:
    """Paper Figure 1: ECDF of FFN1 singular values, dense vs each pruned checkpoint, one panel per layer.

    Reads the CSV written by :func:`prunenet.reporting.spectra.export_spectra` (one row per
    singular value: checkpoint, layer, sigma), so the figure never loads a model.
    """
    import numpy as np

    spectrum = pd.concat([pd.read_csv(p) for p in inputs], ignore_index=True)
    layers = list(dict.fromkeys(spectrum["layer"]))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 3.8), squeeze=False)
    for ax, l in zip(axes[0], layers):
        for label, g in spectrum[spectrum["layer"] == l].groupby("checkpoint", sort=False):
            x = np.sort(g["sigma"].to_numpy())
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=label)
        ax.set_title(f"layer {l}: ECDF of FFN1 singular values")
        ax.set_xlabel("singular value")
        ax.set_ylabel("ECDF")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: str) -> list[Path]:
    out = Path(out)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=120)
    pyplot().close(fig)
    return [out]


def fig3(inputs: list[str], out: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Figure 3: recovery % of dense (average accuracy) and perplexity vs number of RFT samples."""
    plt = pyplot()
    tasks = tasks or TABLE2_TASKS
    df = summary_frame(accuracy_frame(load_results(inputs), tasks), tasks)
    ppl = next((c for c in df.columns if c.startswith("ppl_") and not c.endswith("_sd")), None)
    pruned = df[df["method"] != "dense"]
    fig, (ax_acc, ax_ppl) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (method, ratio, schedule), g in pruned.groupby(["method", "ratio", "schedule"]):
        g = g.sort_values("rft_samples")
        label = f"{method} r={ratio:g}" + ("" if schedule == "uniform" else f" ({schedule})")
        ax_acc.plot(g["rft_samples"], g["avg_recovery"], marker="o", label=label)
        if ppl:
            ax_ppl.plot(g["rft_samples"], g[ppl], marker="o", label=label)
    dense = df[df["method"] == "dense"]
    if ppl and len(dense):
        ax_ppl.axhline(float(dense[ppl].iloc[0]), color="k", ls="--", lw=1, label="dense")
    ax_acc.axhline(100, color="k", ls="--", lw=1)
    ax_acc.set(xlabel="RFT samples (0 = no RFT)", ylabel="avg. accuracy, % of dense", title="Recovery vs RFT size")
    ax_ppl.set(
        xlabel="RFT samples (0 = no RFT)",
        ylabel=f"{ppl[4:] if ppl else ''} test perplexity",
        title="Perplexity vs RFT size",
        yscale="log",
    )
    limit = df["limit"].dropna().unique()
    fig.suptitle(f"lm-eval limit per task: {', '.join(map(str, limit)) or 'full'}", fontsize=8)
    for ax in (ax_acc, ax_ppl):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)


def fig4(inputs: list[str], out: str) -> list[Path]:
    """Paper Figure 4: RFT train and validation loss per step, one pair of curves per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for path in inputs:
        log = pd.read_csv(path)
        label = "/".join(Path(path).with_suffix("").parts[-3:])
        train, val = log[log["split"] == "train"], log[log["split"] == "val"]
        line = ax.plot(train["step"], train["loss"], lw=1, label=f"{label} train")[0]
        ax.plot(val["step"], val["loss"], marker="o", ls="--", color=line.get_color(), label=f"{label} val")
    ax.set(xlabel="step", ylabel="loss", title="RFT loss curves")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)


def sweep_frame(inputs: list[str]) -> pd.DataFrame:
    """Every sweep point (one per method, seed and ratio) of the sweep JSONs."""
    import json

    points = []
    for path in inputs:
        run = json.loads(Path(path).read_text())
        points += [{"method": run["method"], "seed": run["seed"], "dataset": run["dataset"]} | p for p in run["points"]]
    return pd.DataFrame(points)


def sweep_markdown(df: pd.DataFrame) -> str:
    """The plotted numbers as a table (mean over seeds, min–max, effective sparsity): what the docs quote, so a
    test can compare each quoted number with its cell instead of with a figure."""
    rows = []
    for (method, ratio), g in df.groupby(["method", "ratio"], sort=False):
        rows.append(
            {
                "ratio": f"{ratio:g}",
                "method": method,
                "seeds": g["seed"].nunique(),
                "PPL mean": f"{g['ppl'].mean():.1f}",
                "PPL min–max": f"{g['ppl'].min():.1f}–{g['ppl'].max():.1f}",
                "eff. sparsity %": f"{100 * g['effective_sparsity'].mean():.1f}",
            }
        )
    table = pd.DataFrame(rows).sort_values(["ratio", "method"], key=lambda c: c.map(float) if c.name == "ratio" else c)
    body = table.to_markdown(index=False, disable_numparse=True)  # cells as formatted, not re-parsed
    return f"Perplexity on {df['dataset'].iloc[0]} per method and ratio\n\n{body}\n"


def ppl_vs_ratio(inputs: list[str], out: str) -> list[Path]:
    """Perplexity against compression ratio, one line per method (mean over seeds, min–max band), and the
    same points against the effective sparsity each method reaches (SliceGPT's differs from its ratio); the
    plotted numbers also as ``<out>.md`` (:func:`sweep_markdown`).
    """
    df = sweep_frame(inputs)
    md = Path(out).with_suffix(".md")
    with atomic_file(md) as tmp:
        tmp.write_text(sweep_markdown(df))
    plt = pyplot()
    fig, (ax_r, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
    for method, g in df.groupby("method", sort=False):
        by = g.groupby("ratio")
        mean, lo, hi = by["ppl"].mean(), by["ppl"].min(), by["ppl"].max()
        seeds = g["seed"].nunique()
        line = ax_r.plot(mean.index, mean.values, marker="o", label=f"{method} ({seeds} seed{'s' * (seeds > 1)})")[0]
        ax_r.fill_between(mean.index, lo.values, hi.values, color=line.get_color(), alpha=0.2, lw=0)
        sparsity = 100 * by["effective_sparsity"].mean()
        ax_s.plot(sparsity.values, mean.values, marker="o", color=line.get_color(), label=method)
        ax_s.fill_between(sparsity.values, lo.values, hi.values, color=line.get_color(), alpha=0.2, lw=0)
    ax_r.set(xlabel="compression ratio", ylabel="perplexity", yscale="log", title="Perplexity vs compression ratio")
    ax_s.axvline(0, color="k", lw=0.5)
    ax_s.set(xlabel="effective sparsity, % of dense parameters removed", yscale="log", title="vs effective sparsity")
    ax_r.legend(fontsize=8)
    fig.suptitle(f"{df['dataset'].iloc[0]}; line = mean over seeds, band = min–max", fontsize=8)
    fig.tight_layout()
    return [*save_figure(fig, out), md]
