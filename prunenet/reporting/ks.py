"""The paper's one-sided KS test under a comparison table: are PruneNet's accuracy drops from dense smaller than
SliceGPT's?

The two samples are taken per model and per setting: one drop per task and ratio, from the seed mean of one
(model, method, setting) against that model's dense row, at the ratios both sides ran. Pooling settings (two
calibration corpora, two reward functions) would mix distributions the test assumes are one each, and a ratio
set taken from another model would leave a side empty (p = nan). A side with no runs on a model is "not
applicable" with the reason. Several tests under one table are one Holm family of their own.
"""

from __future__ import annotations

import numpy as np

from ..policy_spec import ID_RE
from .comparisons import group_runs
from .multiplicity import holm, significant
from .paired import ks_drops


def _family(setting: str) -> str:
    """A setting without the ratio its policy was trained at (the pruning ratio itself by default): the policy
    trained per ratio is one setting across ratios, as in the paper's test."""
    m = ID_RE.fullmatch(setting)
    return setting[: m.start("ratio") - 2] if m else setting


def _drops(runs: list[dict], base: dict[str, float], tasks: list[str]) -> list[float]:
    return [100 * (base[t] - np.mean([r["tasks"][t]["primary"] for r in runs])) for t in tasks]


def ks_test(results: list[dict], tasks: list[str], a: str = "prunenet", b: str = "slicegpt") -> list[dict]:
    """One test per model and per (setting of ``a``, setting of ``b``) with a common ratio; a model one side has
    no run on (while the table has that method elsewhere) gives ``{"model", "missing"}`` instead. Tests carry
    ``p_holm`` over all of them. Empty when the table holds no runs of ``a`` or of ``b`` at all."""
    groups = group_runs(results)
    if not any(k[2] == a for k in groups) or not any(k[2] == b for k in groups):
        return []
    out = []
    for model in dict.fromkeys(k[0] for k in groups):
        dense = [v for k, v in groups.items() if k[0] == model and k[2] == "dense"]
        settings = {
            m: list(dict.fromkeys(_family(k[3]) for k in groups if k[0] == model and k[2] == m)) for m in (a, b)
        }
        if not dense:
            continue
        missing = [m for m in (a, b) if not settings[m]]
        if missing:
            out.append({"model": model, "missing": missing[0]})
            continue
        base = {t: float(np.mean([r["tasks"][t]["primary"] for r in dense[0]])) for t in tasks}
        for sa in settings[a]:
            for sb in settings[b]:
                at = {m: {k[1]: v for k, v in groups.items() if k[0] == model and k[2] == m and _family(k[3]) == s}
                      for m, s in ((a, sa), (b, sb))}  # fmt: skip
                ratios = sorted(set(at[a]) & set(at[b]))
                if not ratios:
                    continue
                da = [d for r in ratios for d in _drops(at[a][r], base, tasks)]
                db = [d for r in ratios for d in _drops(at[b][r], base, tasks)]
                stat, p = ks_drops(da, db)
                out.append(
                    {"model": model, "settings": (sa, sb), "statistic": stat, "p": p, "n": (len(da), len(db))}
                    | {"ratios": ratios}
                )
    tested = [r for r in out if "p" in r]
    for r, adj in zip(tested, holm([r["p"] for r in tested])):
        r["p_holm"] = float(adj)
    return out


def ks_lines(results: list[dict], tasks: list[str], a: str = "prunenet", b: str = "slicegpt") -> list[str]:
    """The KS tests in words: statistic, raw and Holm-adjusted p, the verdict on the adjusted p."""
    tests = ks_test(results, tasks, a, b)
    several = {m: len({r["settings"] for r in tests if r["model"] == m and "settings" in r}) > 1 for m in
               {r["model"] for r in tests}}  # fmt: skip
    lines = []
    for r in tests:
        if "missing" in r:
            lines.append(f"One-sided KS test ({r['model']}): not applicable: {r['missing']} refuses {r['model']}.")
            continue
        where = f"{r['model']}, {a} {r['settings'][0]} vs {b} {r['settings'][1]}" if several[r["model"]] else r["model"]
        verdict = "smaller" if significant(r["p_holm"]) else "not significantly smaller"
        adjusted = f", Holm-adjusted over {len([x for x in tests if 'p' in x])} tests p = {r['p_holm']:.3g}"
        lines.append(
            f"One-sided KS test ({where}, drops from dense per task and ratio {r['ratios']}, n = {r['n']}): "
            f"D = {r['statistic']:.3f}, p = {r['p']:.3g}"
            + (adjusted if sum("p" in x for x in tests) > 1 else "")
            + f" — {_name(a)}'s drops are {verdict} than {_name(b)}'s at the 5 % level."
        )
    return lines


def _name(method: str) -> str:
    return {"prunenet": "PruneNet", "slicegpt": "SliceGPT"}.get(method, method)
