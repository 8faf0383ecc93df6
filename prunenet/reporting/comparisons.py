"""Paired comparisons under the accuracy tables: every method against dense and against each other at a
ratio (bootstrap CIs over items × seeds), the paper's one-sided KS test, and Table 6's transfer drops.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np
import pandas as pd

from ..evaluation.tasks import PRIMARY_METRIC
from .labels import TASK_LABELS
from .multiplicity import holm, mde, significant, with_holm
from .paired import BOOTSTRAP, Comparison, item_matrix, paired_bootstrap

Key = tuple  # (model, ratio, method, setting)


def _uniform(r: dict) -> bool:
    meta = r.get("meta", {})
    return "rft_dataset" not in meta and not isinstance(meta.get("ratio_spec"), (str, list))


def group_runs(results: list[dict]) -> dict[Key, list[dict]]:
    """Per-seed results of each (model, ratio, method, setting); uniform ratios without RFT only."""
    groups: dict[Key, list[dict]] = defaultdict(list)
    for r in results:
        if _uniform(r):
            key = (r["model"], float(r.get("ratio") or 0.0), r["method"], r.get("setting", "default"))
            groups[key].append(r)
    return dict(groups)


def matrices(runs: list[dict], tasks: list[str]) -> dict[str, tuple[list, np.ndarray]]:
    """Per task: (doc ids, seeds × items correctness on the task's primary metric)."""
    return {t: item_matrix(runs, t, PRIMARY_METRIC[t]) for t in tasks}


def _label(key: Key, keys: list[Key]) -> str:
    """Method name, with its setting only where two rows of one method share a ratio."""
    same = [k for k in keys if k[0] == key[0] and k[1] == key[1] and k[2] == key[2]]
    return key[2] if len(same) == 1 else f"{key[2]} ({key[3]})"


def _row(model, ratio, a, b, task, c: Comparison, seeds_a, seeds_b, keys: tuple[Key, Key]) -> dict:
    return {
        "model": model,
        "ratio": ratio,
        "a": a,
        "b": b,
        "a_method": keys[0][2],
        "a_setting": keys[0][3],
        "b_method": keys[1][2],
        "b_setting": keys[1][3],
        "task": task,
        "diff": c.diff,
        "ci_lo": c.lo,
        "ci_hi": c.hi,
        "p": c.p,
        "seeds_a": seeds_a,
        "seeds_b": seeds_b,
        "items": c.items,
        "se": c.se,
        "mde": mde(c.se),
    }


def holm_families(df: pd.DataFrame) -> pd.DataFrame:
    """``p_holm`` and ``significant`` (adjusted p < 0.05) with two families: the average-accuracy pairs (what
    the accuracy tables print under them) and, in ``pairs.csv``, the per-task pairs of all tasks together."""
    if df.empty:
        return df
    parts = [with_holm(df[df["task"] == "avg"]), with_holm(df[df["task"] != "avg"])]
    out = pd.concat(parts).loc[df.index]
    out.insert(out.columns.get_loc("p_holm") + 1, "significant", out["p_holm"].map(significant))
    return out


def comparisons_frame(results: list[dict], tasks: list[str], iters: int = BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """A − B (points) with 95 % paired bootstrap CI for every pair of rows at a ratio and every row vs dense.

    One line per pair and task, plus ``task = "avg"`` (macro average over tasks); raw and Holm-adjusted p
    (:func:`holm_families`), the bootstrap standard error and the minimum detectable difference at 80 % power.
    """
    groups = group_runs(results)
    keys = list(groups)
    mats = {k: matrices(v, tasks) for k, v in groups.items()}
    rows = []
    for model in dict.fromkeys(k[0] for k in keys):
        dense = [k for k in keys if k[0] == model and k[2] == "dense"]
        for ratio in sorted({k[1] for k in keys if k[0] == model and k[2] != "dense"}):
            at = [k for k in keys if k[0] == model and k[1] == ratio and k[2] != "dense"]
            pairs = [(k, d) for k in at for d in dense] + list(combinations(at, 2))
            for ka, kb in pairs:
                la, lb = _label(ka, keys), _label(kb, keys)
                sa, sb = len(groups[ka]), len(groups[kb])
                c = paired_bootstrap(mats[ka], mats[kb], iters, seed)
                rows.append(_row(model, ratio, la, lb, "avg", c, sa, sb, (ka, kb)))
                for t in tasks:
                    c = paired_bootstrap({t: mats[ka][t]}, {t: mats[kb][t]}, iters, seed)
                    rows.append(_row(model, ratio, la, lb, t, c, sa, sb, (ka, kb)))
    return holm_families(pd.DataFrame(rows))


def against_frame(
    results: list[dict], tasks: list[str], reference: str, iters: int = BOOTSTRAP, seed: int = 0, printed: bool = True
):
    """Average-accuracy difference of every row from ``reference`` at its ratio and from dense, oriented as
    (row − reference) / (row − dense): the pairs of :func:`comparisons_frame`, signs flipped where needed.

    ``printed``: these rows are the family a table prints (the baselines table), so Holm adjusts over them;
    otherwise their ``p_holm`` is the one of every average-accuracy pair (the family under Table 2 and its kind)."""
    df = comparisons_frame(results, tasks, iters, seed)
    if df.empty:
        return df
    avg = df[(df["task"] == "avg")].copy()
    ref = avg["b_method"].eq(reference) | avg["b_method"].eq("dense")
    swap = avg["a_method"].eq(reference) & ~avg["b_method"].eq("dense")
    # orient every pair as (method − reference): a − b flips sign when the reference is a
    cols = [("a", "b"), ("a_method", "b_method"), ("a_setting", "b_setting")]
    for x, y in cols:
        avg.loc[swap, [x, y]] = avg.loc[swap, [y, x]].to_numpy()
    avg.loc[swap, "diff"] = -avg.loc[swap, "diff"]
    avg.loc[swap, ["ci_lo", "ci_hi"]] = -avg.loc[swap, ["ci_hi", "ci_lo"]].to_numpy()
    avg = avg[ref | swap]
    if printed:
        avg = with_holm(avg).assign(significant=lambda f: f["p_holm"].map(significant))
    return avg


def versus_columns(
    results: list[dict], tasks: list[str], reference: str, iters: int = BOOTSTRAP, seed: int = 0, printed: bool = True
):
    """:func:`against_frame` as columns of a table's mean rows, keyed by (model, ratio, method, setting):
    ``avg_diff_vs_<reference>``, ``avg_ci_lo_vs_…``, ``avg_ci_hi_vs_…``, ``avg_p_vs_…``, ``avg_p_holm_vs_…`` (Holm
    over the table's family, see ``printed``), ``avg_mde_vs_…`` and the same against dense."""
    avg = against_frame(results, tasks, reference, iters, seed, printed)
    keys = ["model", "ratio", "method", "setting"]
    out = None
    for b in (reference, "dense"):
        part = avg[avg["b_method"] == b].rename(columns={"a_method": "method", "a_setting": "setting"})
        stats = ["diff", "ci_lo", "ci_hi", "p", "p_holm", "mde"]
        part = part[keys + stats].rename(columns={c: f"avg_{c}_vs_{b}" for c in stats})
        out = part if out is None else out.merge(part, on=keys, how="outer")
    return out


def transfer_frame(results: list[dict], tasks: list[str], iters: int = BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """Table 6: each (policy ratio → pruning ratio) transfer vs the same-ratio policy, paired per task and on avg."""
    by_train: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        trained = r.get("meta", {}).get("policy_trained_at")
        if r.get("method") == "prunenet" and trained is not None and _uniform(r):
            by_train[(r["model"], float(trained), float(r["ratio"]))].append(r)
    rows = []
    for (model, trained, ratio), runs in sorted(by_train.items()):
        same = by_train.get((model, ratio, ratio))
        if trained == ratio or same is None:
            continue
        a, b = matrices(runs, tasks), matrices(same, tasks)
        row = {"model": model, "policy_ratio": trained, "ratio": ratio, "seeds": len(runs)}
        for t in tasks + ["avg"]:
            ta = tasks if t == "avg" else [t]
            c = paired_bootstrap({x: a[x] for x in ta}, {x: b[x] for x in ta}, iters, seed)
            row[t] = np.mean([100 * np.mean([r["tasks"][x]["primary"] for r in runs]) for x in ta])
            row[f"{t}_same"] = row[t] - c.diff
            row[f"{t}_p"] = c.p
        rows.append(row)
    return _transfer_holm(pd.DataFrame(rows), tasks)


def _transfer_holm(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """``<task>_p_holm`` beside each ``<task>_p``: Holm over every p the table prints (all tasks, average, rows)."""
    if df.empty:
        return df
    cols = [f"{t}_p" for t in tasks + ["avg"]]
    adjusted = holm(df[cols].to_numpy().ravel()).reshape(len(df), len(cols))
    for j, col in enumerate(cols):
        df.insert(df.columns.get_loc(col) + 1, f"{col}_holm", adjusted[:, j])
    return df


def transfer_markdown(df: pd.DataFrame, tasks: list[str]) -> str:
    """One panel per policy ratio, as the paper's Table 6: transfer (same-ratio) p, per task and on average."""
    if df.empty:
        return "No transfer runs (config `transfer` is empty).\n"
    parts = []
    for (model, trained), g in df.groupby(["model", "policy_ratio"], sort=False):
        md = pd.DataFrame({"Comp. ratio": g["ratio"].map(lambda r: f"{100 * r:g}%")})
        for t in tasks + ["avg"]:
            md[TASK_LABELS.get(t, "Average" if t == "avg" else t)] = [
                f"{v:.1f} ({s:.1f}) p={p:.2f} (Holm {h:.2f})"
                for v, s, p, h in zip(g[t], g[f"{t}_same"], g[f"{t}_p"], g[f"{t}_p_holm"])
            ]
        parts.append(f"**{model}: policy trained at {100 * trained:g}%**\n\n{md.to_markdown(index=False)}\n")
    return (
        "\n".join(parts)
        + "\nCells: accuracy with the transferred policy (with the same-ratio policy), mean over seeds; p = two-sided "
        "paired bootstrap p-value of the difference over items × seeds; Holm: adjusted over every p in this table "
        "(a difference is significant when its Holm p < 0.05).\n"
    )
