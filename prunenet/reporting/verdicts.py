"""What is printed under a comparison table: the paired differences with raw and Holm-adjusted p, the verdict on
the adjusted p, the KS test, the table's resolution (the smallest difference it could detect) and the paired
perplexity ratios (:mod:`ppl_pairs`).

The frames are :mod:`comparisons`'s; this module only words them, so every number here is a CSV cell.
"""

from __future__ import annotations

import pandas as pd

from .comparisons import against_frame, comparisons_frame, group_runs
from .ks import ks_lines
from .multiplicity import POWER, family_note
from .paired import BOOTSTRAP
from .ppl_pairs import ppl_pairs_markdown

COLUMNS = ["model", "ratio", "a", "b", "A − B", "95 % CI (unadjusted)", "p", "p (Holm)", "significant"]


def pair_table(avg: pd.DataFrame) -> str:
    """The pairs as Markdown: difference, unadjusted CI, raw and adjusted p, the verdict on the adjusted p."""
    return avg.assign(
        **{
            "A − B": avg["diff"].map(lambda v: f"{v:+.1f}"),
            "95 % CI (unadjusted)": [f"[{lo:+.1f}, {hi:+.1f}]" for lo, hi in zip(avg["ci_lo"], avg["ci_hi"])],
            "p": avg["p"].map(lambda v: f"{v:.3f}"),
            "p (Holm)": avg["p_holm"].map(lambda v: f"{v:.3f}"),
            "significant": avg["significant"].map({True: "yes", False: "no"}),
        }
    )[COLUMNS].to_markdown(index=False)


def resolution(avg: pd.DataFrame) -> str:
    """The smallest difference of average accuracy detectable at 80 % power (two-sided 5 %, unadjusted), per
    (items, seeds A, seeds B) of the pairs, from each pair's bootstrap standard error: what "not significant"
    can and cannot mean at this table's size."""
    parts = []
    for (items, sa, sb), g in avg.groupby(["items", "seeds_a", "seeds_b"], sort=False):
        lo, hi = g["mde"].min(), g["mde"].max()
        span = f"{lo:.1f}" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}–{hi:.1f}"
        parts.append(f"{span} points with {items} items and {sa} vs {sb} seeds")
    return (
        f"Resolution: the smallest average-accuracy difference detectable at {100 * POWER:.0f} % power "
        f"(two-sided 5 %, unadjusted; 2.80 × the bootstrap SE) is " + "; ".join(parts) + "."
    )


def one_draw_note(results: list[dict]) -> str:
    """Which calibrated rows rest on one calibration draw (``calibration_seeds: first``): their CIs count item
    variance only, while a seeded method's also count its seeds'."""
    single = sorted(
        {
            (k[2], k[3])
            for k, runs in group_runs(results).items()
            if len(runs) == 1 and "calib_dataset" in runs[0].get("meta", {})
        }
    )
    if not single:
        return ""
    return ", ".join(f"{m} ({s})" for m, s in single) + ": one calibration draw: the CI covers items only."


def _said(r) -> str:
    return f"{r['a']} vs {r['b']} at r={r['ratio']:g} ({r['diff']:+.1f})"


def comparison_markdown(results: list[dict], tasks: list[str], iters: int = BOOTSTRAP, seed: int = 0) -> str:
    """Under Table 2: average-accuracy differences with CIs and raw and adjusted p, the KS test, the resolution,
    and what is significant (Holm-adjusted p < 0.05), in words."""
    df = comparisons_frame(results, tasks, iters, seed)
    if df.empty:
        return ""
    avg = df[df["task"] == "avg"]
    lines = [
        "### Paired differences (average accuracy, points)",
        "",
        f"A − B on the same items; 95 % CI (unadjusted) from {iters} paired bootstrap resamples over items × "
        "seeds; two-sided bootstrap p and its Holm adjustment. Per-task lines: `results/tables/pairs.csv`.",
        "",
        pair_table(avg),
        "",
        *ks_lines(results, tasks),
        "",
        family_note(len(avg), iters),
        resolution(avg),
        one_draw_note(results),
    ]
    sig = avg[avg["significant"]]
    lines += [
        "",
        "Significant (Holm-adjusted p < 0.05): " + ("; ".join(_said(r) for _, r in sig.iterrows()) or "none."),
    ]
    not_sig = avg[~avg["significant"]]
    lines += ["Not significant: " + ("; ".join(_said(r) for _, r in not_sig.iterrows()) or "none."), ""]
    lines += [ppl_pairs_markdown(results, avg, iters, seed)]
    return "\n".join(lines)


def against_markdown(
    results: list[dict], tasks: list[str], reference: str, iters: int = BOOTSTRAP, seed: int = 0
) -> str:
    """Every method against ``reference`` (and dense) at each ratio: difference, unadjusted CI, raw and adjusted p,
    the verdict on the adjusted p, the resolution."""
    avg = against_frame(results, tasks, reference, iters, seed)
    if avg.empty:
        return ""
    sig = avg[avg["significant"]]
    return "\n".join(
        [
            f"### Against {reference} and dense (average accuracy, points)",
            "",
            f"A − B on the same items; 95 % CI (unadjusted) from {iters} paired bootstrap resamples over items × "
            "seeds; two-sided bootstrap p and its Holm adjustment.",
            "",
            pair_table(avg),
            "",
            family_note(len(avg), iters),
            resolution(avg),
            one_draw_note(results),
            "",
            "Significant (Holm-adjusted p < 0.05): " + ("; ".join(_said(r) for _, r in sig.iterrows()) or "none."),
            "Everything else is not significant at this item count.",
            "",
            ppl_pairs_markdown(results, avg, iters, seed),
        ]
    )
