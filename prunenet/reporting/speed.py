"""Paper Table 9 and the speed-up figure, from ``prunenet speed`` outputs only.

Table 9 (a) is what compression costs: each method's wall time from its checkpoint's own record (PruneNet:
policy training + slicing; calibrated methods: calibration and their ratio-independent stage included). (b)
is what it buys: measured prefill and decode tokens/s (median over the repetitions, quartiles beside it) and
the speed-up over dense on the same machine, batch size and protocol, next to the FLOPs-ideal speed-up
(dense FLOPs per token / the model's), so a reader sees how much of the removed compute turns into speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import PruneNetError
from .figures import pyplot, save_figure
from .frames import method_order
from .render import write_table
from .tables import TABLES

KINDS = ("prefill", "decode")


def load_speed(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        try:
            run = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PruneNetError(f"cannot read speed file {p} ({type(exc).__name__}): rerun its speed step") from exc
        if not isinstance(run, dict) or "speed" not in run:
            raise PruneNetError(f"{p} is not a speed output (a JSON object with speed): give `speed` outputs")
        out.append(run | {"source": str(p)})
    return out


def compress_seconds(meta: dict) -> float | None:
    """A checkpoint's compression wall time: the method's own run (prepare stage included) plus, for a learned
    policy, its training (Table 9a counts both for PruneNet). None for dense."""
    if "compress_seconds" not in meta:
        return None
    return float(meta["compress_seconds"]) + float(meta.get("policy_train_seconds") or 0.0)


def speed_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per (checkpoint, batch size) with medians, quartiles and speed-ups over dense."""
    rows = []
    for run in runs:
        sp, meta = run["speed"], run.get("meta", {})
        for cell in sp["cells"].values():
            row = {
                "model": run["model"],
                "method": run["method"],
                "setting": run["setting"],
                "ratio": float(run["ratio"]),
                "batch_size": cell["batch_size"],
                "params": meta.get("params") or meta.get("stats", {}).get("params"),
                "flops_per_token": sp["flops_per_token"],
                "compress_seconds": compress_seconds(meta),
                "peak_memory_mb": sp["peak_memory_mb"],
                "device": sp["device"],
                "threads": sp["threads"],
                "source": run["source"],
            }
            for kind in KINDS:
                s = cell[f"{kind}_tok_s"]
                row |= {f"{kind}_tok_s": s["median"], f"{kind}_q1": s["q1"], f"{kind}_q3": s["q3"]}
            rows.append(row)
    df = pd.DataFrame(rows)
    dense = df[df["method"] == "dense"].set_index(["model", "batch_size"])
    if dense.empty:
        raise PruneNetError("Table 9 needs the dense model's speed (method dense) among the inputs")
    ref = dense.loc[list(zip(df["model"], df["batch_size"]))]
    df["ideal_speedup"] = ref["flops_per_token"].to_numpy() / df["flops_per_token"]
    for kind in KINDS:
        df[f"{kind}_speedup"] = df[f"{kind}_tok_s"] / ref[f"{kind}_tok_s"].to_numpy()
    order = method_order()
    return df.sort_values(["model", "batch_size", "ratio", "method"], key=_sort_key(order)).reset_index(drop=True)


def _sort_key(order: dict[str, int]):
    return lambda col: col.map(order) if col.name == "method" else col


@TABLES.decorator("table9")
def table9(inputs: list[str], out: str, out_md: str, **_: object) -> list[Path]:
    """Paper Table 9: (a) compression time per method and ratio, (b) measured throughput and speed-ups."""
    everything = load_speed(inputs)
    runs = [r for r in everything if r.get("backend") != "llamacpp"]
    df = speed_frame(runs)
    first = runs[0]["speed"]
    st = first["settings"]
    lines = [
        f"Measured on {first['device']} ({first['threads']} thread(s)), {runs[0].get('dtype', '?')}: prompt "
        f"{st['prompt_len']} tokens, {st['gen_len']} generated (greedy, KV cache), {st['warmup']} warm-up + "
        f"{st['repeats']} timed runs; median [quartiles].",
        "",
        "(a) Compression time (s; PruneNet: policy training + slicing)",
        "",
    ]
    a = df[df["method"] != "dense"].drop_duplicates(["model", "method", "setting", "ratio"])
    lines.append(
        a[["model", "method", "ratio", "params", "compress_seconds"]].to_markdown(index=False, floatfmt=".1f") + "\n"
    )
    lines += ["(b) Throughput (tokens/s) and speed-up over dense (ideal: dense FLOPs / FLOPs per token)", ""]
    b = df.copy()
    for kind in KINDS:
        b[f"{kind} tok/s"] = [
            f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in zip(b[f"{kind}_tok_s"], b[f"{kind}_q1"], b[f"{kind}_q3"])
        ]
        b[f"{kind} ×"] = b[f"{kind}_speedup"].map(lambda v: f"{v:.2f}")
    b["ideal ×"] = b["ideal_speedup"].map(lambda v: f"{v:.2f}")
    b["ratio"] = b["ratio"].map(lambda v: f"{v:g}")
    b["peak MB"] = b["peak_memory_mb"].map(lambda v: f"{v:.0f}")
    cols = ["model", "batch_size", "method", "ratio", "prefill tok/s", "prefill ×", "decode tok/s", "decode ×"]
    # strings as written: tabulate would otherwise re-parse "1.17" as a number and round it with one format
    lines.append(b[cols + ["ideal ×", "peak MB"]].to_markdown(index=False, disable_numparse=True) + "\n")
    gguf = [r for r in everything if r.get("backend") == "llamacpp"]
    if gguf:
        df, block = _with_llamacpp(df, gguf)
        lines += block
    return write_table(df, out, out_md, "\n".join(lines))


def _with_llamacpp(df: pd.DataFrame, gguf: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """Table 9's llama.cpp columns (batch 1 rows): decode tokens/s over whole runs of the exported file and the
    speed-up over dense at the same type with its 95 % Welch interval (:mod:`.quantize`), and its Markdown block."""
    from .quantize import ci_cells, speed_rows

    ll = speed_rows(gguf)
    (type_,) = ll["type"].unique()  # Table 9 measures one GGUF type (speed.llamacpp)
    ll = ll.drop(columns="type").rename(columns=lambda c: c if c in ("model", "method", "ratio") else f"llamacpp_{c}")
    ll["batch_size"] = 1
    df = df.merge(ll, on=["model", "method", "ratio", "batch_size"], how="left")
    c = ll.copy()
    c["ratio"] = c["ratio"].map(lambda v: f"{v:g}")
    c["decode tok/s"] = c["llamacpp_decode_tok_s"].map(lambda v: f"{v:.1f}")
    c["decode × [95 % CI]"] = ci_cells(c["llamacpp_speedup"], c["llamacpp_speedup_lo"], c["llamacpp_speedup_hi"])
    c["ideal ×"] = c["llamacpp_ideal_speedup"].map(lambda v: f"{v:.2f}")
    cols = ["model", "method", "ratio", "decode tok/s", "decode × [95 % CI]", "ideal ×"]
    block = [
        f"(c) llama.cpp, {type_}, batch 1, every core: decode tokens/s (geometric mean of "
        f"{int(ll['llamacpp_runs'].min())}+ whole runs), speed-up over dense at {type_} with a 95 % Welch interval "
        "on log tokens/s, ideal = dense weight bytes read per decoded token / the file's",
        "",
        c[cols].to_markdown(index=False, disable_numparse=True) + "\n",
    ]
    return df, block


def speedup(inputs: list[str], out: str) -> list[Path]:
    """Measured speed-up over dense against the FLOPs-ideal speed-up, per method (prefill and decode panels,
    one marker per ratio and batch size); points on the diagonal turn every removed FLOP into speed."""
    df = speed_frame(load_speed(inputs))
    pruned = df[df["method"] != "dense"]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = dict(zip(sorted(df["batch_size"].unique()), "osD^v"))
    for ax, kind in zip(axes, KINDS):
        for method, g in pruned.groupby("method", sort=False):
            color = None
            for bs, gb in g.groupby("batch_size"):
                pts = ax.scatter(
                    gb["ideal_speedup"], gb[f"{kind}_speedup"], marker=markers[bs], color=color, label=f"{method} b{bs}"
                )
                color = pts.get_facecolor()[0]
        values = pruned[["ideal_speedup", f"{kind}_speedup"]].to_numpy()
        lim = [min(0.9, float(values.min()) * 0.95), max(1.1, float(values.max()) * 1.05)]
        ax.plot(lim, lim, "k--", lw=0.8, label="ideal")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set(xlim=lim, xlabel="FLOPs-ideal speed-up", ylabel="measured speed-up", title=f"{kind} tokens/s vs dense")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{df['model'].iloc[0]} on {df['device'].iloc[0]}: median of the timed runs", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out)
