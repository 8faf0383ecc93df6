"""Paired perplexity under the comparison tables: the ratio of two methods' perplexities on the same test blocks,
with its bootstrap CI and Holm-adjusted p.

Every model of one family is scored on the same token blocks (``block_nll`` in the evaluation JSON, one mean
next-token NLL per block), so two methods are compared block by block, as accuracy is item by item: the same
paired bootstrap (:func:`~.paired.paired_bootstrap`, blocks × seeds) on the per-block NLL gives the difference of
log-perplexities, whose exponential is the ratio of (seed-geometric-mean) perplexities. The perplexity
comparisons under a table are one Holm family of their own, apart from the accuracy family: two endpoints, and
one family of both would put every p out of reach of the bootstrap's resolution (2/(B+1) · m ≥ 0.05).
Evaluations written before ``block_nll`` was recorded still build their tables; the section then says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .comparisons import group_runs
from .multiplicity import significant, with_holm
from .paired import BOOTSTRAP, paired_bootstrap

NO_BLOCKS = "Paired perplexity: no per-block data in these evaluations (written before `block_nll` was recorded)."


def block_matrix(runs: list[dict], dataset: str) -> tuple[list, np.ndarray] | None:
    """(block ids, seeds × blocks NLL) of one dataset across a method's seeds; None without per-block data."""
    rows = [r.get("perplexity", {}).get(dataset, {}).get("block_nll") for r in runs]
    if not rows or any(row is None for row in rows) or len({len(row) for row in rows}) != 1:
        return None
    return list(range(len(rows[0]))), np.asarray(rows, dtype=float)


def _blocks_match(a: list[dict], b: list[dict], dataset: str) -> bool:
    """Same blocks: the same number of blocks of the same length (the tokenizer and text fix the rest)."""
    shape = {(r["perplexity"][dataset].get("n_blocks"), r["perplexity"][dataset].get("seq_len")) for r in a + b}
    return len(shape) == 1


def ppl_pairs_frame(results: list[dict], pairs: pd.DataFrame, iters: int = BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """Per printed pair (``pairs``: rows with model, ratio, a, b and the methods' and settings' keys) and per
    perplexity dataset both sides have: A/B perplexity ratio, its 95 % CI (unadjusted), raw and Holm-adjusted p.
    Empty when no pair has per-block data on both sides."""
    groups = group_runs(results)
    rows = []
    for _, r in pairs.iterrows():
        ka = (r["model"], 0.0 if r["a_method"] == "dense" else r["ratio"], r["a_method"], r["a_setting"])
        kb = (r["model"], 0.0 if r["b_method"] == "dense" else r["ratio"], r["b_method"], r["b_setting"])
        if ka not in groups or kb not in groups:
            continue
        ra, rb = groups[ka], groups[kb]
        for dataset in sorted(set(ra[0].get("perplexity", {})) & set(rb[0].get("perplexity", {}))):
            ma, mb = block_matrix(ra, dataset), block_matrix(rb, dataset)
            if ma is None or mb is None or not _blocks_match(ra, rb, dataset):
                continue
            c = paired_bootstrap({dataset: ma}, {dataset: mb}, iters, seed)
            rows.append(
                {"model": r["model"], "ratio": r["ratio"], "a": r["a"], "b": r["b"], "dataset": dataset}
                | {"ppl_ratio": np.exp(c.diff / 100), "ci_lo": np.exp(c.lo / 100), "ci_hi": np.exp(c.hi / 100)}
                | {"p": c.p, "blocks": c.items, "seeds_a": len(ra), "seeds_b": len(rb)}
            )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df = with_holm(df)
    return df.assign(significant=df["p_holm"].map(significant))


def ppl_pairs_markdown(results: list[dict], pairs: pd.DataFrame, iters: int = BOOTSTRAP, seed: int = 0) -> str:
    """The section under a table: the ratios with CIs and raw and adjusted p, or why there is none."""
    if pairs.empty:
        return ""
    df = ppl_pairs_frame(results, pairs, iters, seed)
    if df.empty:
        return NO_BLOCKS + "\n"
    table = df.assign(
        **{
            "PPL A / B": df["ppl_ratio"].map(lambda v: f"{v:.3f}"),
            "95 % CI (unadjusted)": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(df["ci_lo"], df["ci_hi"])],
            "p": df["p"].map(lambda v: f"{v:.3f}"),
            "p (Holm)": df["p_holm"].map(lambda v: f"{v:.3f}"),
            "significant": df["significant"].map({True: "yes", False: "no"}),
        }
    )[["model", "ratio", "a", "b", "dataset", "PPL A / B", "95 % CI (unadjusted)", "p", "p (Holm)", "significant"]]
    return "\n".join(
        [
            "### Paired perplexity (ratio A / B on the same test blocks)",
            "",
            f"exp of the mean per-block log-perplexity difference (blocks × seeds; the ratio of seed-geometric-mean "
            f"perplexities); 95 % CI (unadjusted) from {iters} paired bootstrap resamples over blocks × seeds; "
            f"significant: Holm-adjusted p < 0.05 over these {len(df)} perplexity comparisons (a family apart from "
            "accuracy's).",
            "",
            table.to_markdown(index=False),
            "",
        ]
    )
