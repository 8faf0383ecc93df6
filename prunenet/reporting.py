"""Tables and figures of the paper, computed from the pipeline's JSON outputs only.

Every number in a table comes from an evaluation JSON written by ``prunenet evaluate``
(its path is kept in the ``source`` column); nothing is typed in by hand.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd

from .artifacts import atomic_file
from .errors import PruneNetError

TABLE2_TASKS = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"]
TASK_LABELS = {"piqa": "PIQA", "winogrande": "WinoGrande", "hellaswag": "HellaSwag", "arc_easy": "ARC-e",
               "arc_challenge": "ARC-c", "mmlu": "MMLU"}


def load_results(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        try:
            res = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PruneNetError(f"cannot read evaluation file {p} ({type(exc).__name__}): rerun its evaluate step") from exc
        res["source"] = str(p)
        out.append(res)
    return out


def _write_table(df: pd.DataFrame, out: str, markdown: pd.DataFrame | None = None) -> list[Path]:
    out = Path(out)
    with atomic_file(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")
    md = out.with_suffix(".md")
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
        row = {"model": r.get("model"), "method": r.get("method"), "ratio": float(r.get("ratio") or 0.0),
               "schedule": _schedule(meta.get("ratio_spec")),
               "rft": meta.get("rft_dataset", "none"), "rft_samples": int(meta.get("rft_samples", 0))}
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
    order = {"dense": 0, "prunenet": 1, "slicegpt": 2}
    df = (df.assign(_o=df["method"].map(lambda m: order.get(m, 3)))
          .sort_values(["model", "ratio", "_o", "method", "schedule", "rft", "rft_samples"]).drop(columns="_o"))
    return df.reset_index(drop=True)


def _accuracy_markdown(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    extra = (["schedule"] if (df["schedule"] != "uniform").any() else []) + (["rft", "rft_samples"] if (df["rft"] != "none").any() else [])
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


def table2(inputs: list[str], out: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 2: zero-shot accuracy per (model, ratio, method) with recovery % of dense."""
    tasks = tasks or TABLE2_TASKS
    df = accuracy_frame(load_results(inputs), tasks)
    return _write_table(df, out, _accuracy_markdown(df, tasks))


def table1(inputs: list[str], out: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 1: sparsity, effective sparsity (incl. added matrices), FLOPs/token and average accuracy."""
    tasks = tasks or TABLE2_TASKS
    results = load_results(inputs)
    acc = accuracy_frame(results, tasks).set_index("source")
    rows = []
    for r in results:
        stats = r.get("meta", {}).get("stats", {})
        rows.append({"model": r.get("model"), "method": r.get("method"), "ratio": float(r.get("ratio") or 0.0),
                     "params": stats.get("params"), "effective_sparsity": 100 * stats.get("effective_sparsity", 0.0),
                     "flops_per_token": stats.get("flops_per_token"), "flops_seq_len": stats.get("flops_seq_len"),
                     "avg_acc": acc.loc[r["source"], "avg"], "ppl": r.get("perplexity", {}).get("ppl"), "source": r["source"]})
    df = pd.DataFrame(rows).sort_values(["model", "ratio", "method"]).reset_index(drop=True)
    return _write_table(df, out)


def fig1(inputs: list[str], out: str, layers: list[int] | None = None, state: str = "up") -> list[Path]:
    """Paper Figure 1: ECDF of FFN1 singular values, dense vs each pruned checkpoint, first and last layer."""
    import numpy as np

    from .adapters import get_adapter
    from .models import load_model, read_meta
    from .penalties import spectra

    curves = []
    for path in inputs:
        model, _ = load_model(path, dtype="float32")
        adapter = get_adapter(model)
        mats = [adapter.state_matrix(l, state).detach() for l in adapter.decoder_layers(model)]
        meta = read_meta(path)
        label = "dense" if not meta.get("method") else f"{meta['method']} r={meta['ratio']}"
        curves.append((label, [spectra(m, "svd").numpy() for m in mats]))
    n_layers = len(curves[0][1])
    layers = layers or [0, n_layers - 1]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 3.8), squeeze=False)
    for ax, l in zip(axes[0], layers):
        for label, sv in curves:
            x = np.sort(sv[l])
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=label)
        ax.set_title(f"layer {l}: ECDF of FFN1 singular values")
        ax.set_xlabel("singular value")
        ax.set_ylabel("ECDF")
        ax.legend(fontsize=8)
    fig.tight_layout()
    # The plotted data, exported beside the figure (one row per singular value).
    spectrum = pd.DataFrame(
        [{"checkpoint": label, "layer": l, "sigma": float(v)} for label, sv in curves for l in layers for v in np.sort(sv[l])]
    )
    csv = Path(out).with_suffix(".csv")
    with atomic_file(csv) as tmp:
        spectrum.to_csv(tmp, index=False)
    return _save(fig, out) + [csv]


def table3(inputs: list[str], out: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 3: every pruned model with and without RFT (same tasks, recovery % of dense)."""
    return table2(inputs, out, tasks)


def table8(inputs: list[str], out: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Table 8: the RFT dataset comparison; rows are (ratio, RFT dataset)."""
    return table2(inputs, out, tasks)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str) -> list[Path]:
    out = Path(out)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=120)
    _pyplot().close(fig)
    return [out]


def fig3(inputs: list[str], out: str, tasks: list[str] | None = None) -> list[Path]:
    """Paper Figure 3: recovery % of dense (average accuracy) and perplexity vs number of RFT samples."""
    plt = _pyplot()
    tasks = tasks or TABLE2_TASKS
    df = accuracy_frame(load_results(inputs), tasks)
    pruned = df[df["method"] != "dense"]
    fig, (ax_acc, ax_ppl) = plt.subplots(1, 2, figsize=(10, 3.8))
    for (method, ratio, schedule), g in pruned.groupby(["method", "ratio", "schedule"]):
        g = g.sort_values("rft_samples")
        label = f"{method} r={ratio:g}" + ("" if schedule == "uniform" else f" ({schedule})")
        ax_acc.plot(g["rft_samples"], g["avg_recovery"], marker="o", label=label)
        if "ppl" in g:
            ax_ppl.plot(g["rft_samples"], g["ppl"], marker="o", label=label)
    dense = df[df["method"] == "dense"]
    if "ppl" in dense and len(dense):
        ax_ppl.axhline(float(dense["ppl"].iloc[0]), color="k", ls="--", lw=1, label="dense")
    ax_acc.axhline(100, color="k", ls="--", lw=1)
    ax_acc.set(xlabel="RFT samples (0 = no RFT)", ylabel="avg. accuracy, % of dense", title="Recovery vs RFT size")
    ax_ppl.set(xlabel="RFT samples (0 = no RFT)", ylabel="WikiText-2 test perplexity", title="Perplexity vs RFT size", yscale="log")
    limit = df["limit"].dropna().unique()
    fig.suptitle(f"lm-eval limit per task: {', '.join(map(str, limit)) or 'full'}", fontsize=8)
    for ax in (ax_acc, ax_ppl):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def fig4(inputs: list[str], out: str) -> list[Path]:
    """Paper Figure 4: RFT train and validation loss per step, one pair of curves per run."""
    plt = _pyplot()
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
    return _save(fig, out)


REPORTS: dict[str, Callable[..., list[Path]]] = {
    "table1": table1, "table2": table2, "table3": table3, "table8": table8, "fig1": fig1, "fig3": fig3, "fig4": fig4,
}
