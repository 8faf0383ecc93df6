"""The prune × quantize table: what a pruned model weighs and does in llama.cpp at each GGUF type.

Read from ``prunenet evaluate --backend llamacpp`` files (perplexity computed by llama.cpp, file size) and
``prunenet speed --backend llamacpp`` files (one whole run each, batch 1). A row per (model, method, ratio, type):
file size, perplexity per corpus, decode tokens/s, and the decode speed-up over dense at the same type. The
speed-up is the ratio of the geometric means over runs, with a 95 % Welch t interval on the log tokens/s: runs
are whole processes, so the interval covers the between-run noise, and runs are not paired (Snakemake does not
alternate them). Beside it the memory-bound ideal: dense weight bytes read per decoded token / the model's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..choices import GGUF_TYPES
from ..errors import PruneNetError
from .frames import method_order
from .render import write_table
from .tables import TABLES

KEYS = ["model", "method", "ratio", "type"]


def _read(path: str) -> dict:
    try:
        run = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PruneNetError(f"cannot read {path} ({type(exc).__name__}): rerun its step") from exc
    if not isinstance(run, dict) or run.get("backend") != "llamacpp":
        raise PruneNetError(f"{path} is not a llama.cpp result: give evaluate_gguf and speed_gguf outputs")
    return run


def ratio_ci(pruned: list[float], dense: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of geometric means of two independent samples of tokens/s, with a Welch t interval on the logs."""
    a, b = np.log(pruned), np.log(dense)
    diff = a.mean() - b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return math.exp(diff), math.exp(diff), math.exp(diff)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return math.exp(diff), math.exp(diff - half), math.exp(diff + half)


def ci_cells(up, lo, hi) -> list[str]:
    """``1.07 [1.04, 1.10]`` per row: a speed-up with its interval, as both llama.cpp tables print it."""
    return [f"{u:.2f} [{a:.2f}, {b:.2f}]" for u, a, b in zip(up, lo, hi)]


def speed_rows(runs: list[dict]) -> pd.DataFrame:
    """Per (model, method, ratio, type) of llama.cpp speed runs: decode tokens/s (geometric mean over runs), the
    speed-up over dense at the same type with its interval, and the weight-bytes ideal."""
    by_key: dict[tuple, list[tuple[float, int]]] = {}
    for run in runs:
        cell = run["speed"]["cells"]["b1"]
        key = (run["model"], run["method"], float(run["ratio"]), run["dtype"])
        by_key.setdefault(key, []).append((cell["decode_tok_s"]["median"], cell["weight_bytes_per_token"]))
    rows = []
    for key, measured in by_key.items():
        dense = by_key.get((key[0], "dense", 0.0, key[3]))
        if dense is None:
            raise PruneNetError(f"no dense {key[3]} file for {key[0]}: the speed-up needs it")
        tok_s = [t for t, _ in measured]
        up, lo, hi = ratio_ci(tok_s, [t for t, _ in dense])
        rows.append(
            dict(zip(KEYS, key))
            | {"decode_tok_s": float(np.exp(np.mean(np.log(tok_s)))), "runs": len(tok_s)}
            | {"speedup": up, "speedup_lo": lo, "speedup_hi": hi, "ideal_speedup": dense[0][1] / measured[0][1]}
        )
    return pd.DataFrame(
        rows, columns=[*KEYS, "decode_tok_s", "runs", "speedup", "speedup_lo", "speedup_hi", "ideal_speedup"]
    )


def quantize_frame(paths: list[str]) -> pd.DataFrame:
    """One row per (model, method, ratio, type): size, perplexities, decode tokens/s over runs, speed-up vs dense."""
    quality, speed = {}, []
    for p in paths:
        run = _read(p)
        if "perplexity" in run:
            key = (run["model"], run["method"], float(run["ratio"]), run["dtype"])
            quality[key] = {f"ppl {name}": r["ppl"] for name, r in run["perplexity"].items()}
            quality[key]["file_mb"] = run["file_bytes"] / 1e6
        else:
            speed.append(run)
    timed = speed_rows(speed)
    keys = set(map(tuple, timed[KEYS].itertuples(index=False)))
    if set(quality) != keys:
        raise PruneNetError(f"perplexity and speed files name different models: {sorted(set(quality) ^ keys)}")
    df = timed.merge(pd.DataFrame([dict(zip(KEYS, k)) | q for k, q in quality.items()]), on=KEYS)
    order, types = method_order(), {t: i for i, t in enumerate(GGUF_TYPES)}
    ranks = {"method": order, "type": types}
    df = df.sort_values(KEYS, key=lambda c: c.map(ranks[c.name]) if c.name in ranks else c)
    return df.reset_index(drop=True)


@TABLES.decorator("quantize")
def quantize(inputs: list[str], out: str, out_md: str, **_: object) -> list[Path]:
    """Prune × quantize in llama.cpp: file size, perplexity, decode tokens/s and speed-up per GGUF type."""
    df = quantize_frame(inputs)
    show = df.copy()
    show["ratio"] = show["ratio"].map(lambda v: f"{v:g}")
    show["file MB"] = show["file_mb"].map(lambda v: f"{v:.1f}")
    ppl_cols = [c for c in df.columns if c.startswith("ppl ")]
    for c in ppl_cols:
        show[c] = show[c].map(lambda v: f"{v:.2f}")
    show["decode tok/s"] = show["decode_tok_s"].map(lambda v: f"{v:.1f}")
    show["decode × [95 % CI]"] = ci_cells(df["speedup"], df["speedup_lo"], df["speedup_hi"])
    show["ideal ×"] = show["ideal_speedup"].map(lambda v: f"{v:.2f}")
    cols = ["model", "method", "ratio", "type", "file MB", *ppl_cols, "decode tok/s", "decode × [95 % CI]", "ideal ×"]
    text = (
        f"llama.cpp, batch 1, every core; decode tokens/s: geometric mean of {int(df['runs'].min())}+ whole runs; "
        "speed-up over dense at the same type, 95 % Welch t interval on log tokens/s (runs unpaired); ideal: dense "
        "weight bytes read per decoded token / the model's. Perplexity computed by llama.cpp (f16 KV cache) on the "
        "evaluation's blocks.\n\n" + show[cols].to_markdown(index=False, disable_numparse=True) + "\n"
    )
    return write_table(df, out, out_md, text)
