"""The paper's ablation tables (Tables 7, 10–19): named settings side by side at the same ratios.

Each table compares a few *variants* (e.g. "KS" and "AD" policies, "Policy-based" and "Random" rows) on the
same items, ratios and seeds; its :class:`Ablation` entry declares them (the workflow runs what they name).
Which evaluation belongs to which variant is not guessed from its metadata: the workflow passes ``variants``
(label -> evaluation JSONs), the first label being the reference every other variant is compared with, item by
item (paired bootstrap over items × seeds, as under Table 2). A dense
evaluation among the inputs becomes the table's first row (label ``Dense``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ..choices import PRESETS
from ..errors import PruneNetError
from ..policy_spec import PolicySpec
from .frames import accuracy_frame, load_results, ppl_columns
from .labels import TABLE2_TASKS, TASK_LABELS
from .multiplicity import family_note, mde, significant, with_holm
from .paired import BOOTSTRAP
from .render import cell, table_note, write_table
from .specs import EACH_CALIB, TableSpec, Variant
from .tables import TABLES

DENSE = "Dense"


@dataclass(frozen=True)
class Ablation:
    """One paper ablation: its title, the name of the column that holds the variant (the paper's), its variants
    (reference first), whether a line under it names the models a variant's method refuses, and whether its variants
    share their seeds (``paired_seeds``: seed s of every variant comes from the same policy, so the bootstrap draws
    the seeds of both sides together); ``models``: a config key naming the one model of its rows (None: every
    configured model)."""

    title: str
    column: str
    variants: tuple[Variant, ...]
    notes: bool = False
    paired_seeds: bool = False
    models: str | None = None

    @property
    def spec(self) -> TableSpec:
        """What the workflow builds it from: dense and each variant's runs."""
        return TableSpec("ablation", notes=self.notes, variants=self.variants, models=self.models)


def _after_rft(dataset: str) -> tuple[Variant, Variant]:
    """SliceGPT, then PruneNet, both fine-tuned on ``dataset`` at rft's ratios (paper Tables 11, 12, 15): SliceGPT
    calibrated on the corpus it is fine-tuned on, as the paper's SliceGPT runs were; SliceGPT is the reference, so
    the differences printed are PruneNet − SliceGPT."""
    return (
        Variant("SliceGPT", "slicegpt", "rft", calib=dataset, rft=dataset),
        Variant("PruneNet", "prunenet", "rft", rft=dataset),
    )


def _preset(name: str) -> dict[str, object]:
    """A preset's policy dimensions (:data:`prunenet.choices.PRESETS`; episodes are not a policy-id dimension), with
    the KS penalty, Eq. 3 as coded and one draw per layer without a baseline, as both were published: a config's
    other choices (a baseline the released loop refuses) do not leak into the comparison."""
    published = {f.name: f.default for f in fields(PolicySpec) if f.name in ("penalty", "eq3", "baseline", "samples")}
    return published | {k: v for k, v in PRESETS[name].items() if k != "episodes"}


# PruneNet and SliceGPT on Table 2's ratios without RFT (paper Table 14): PruneNet − SliceGPT
WITHOUT_RFT = (Variant("SliceGPT", "slicegpt", "prune"), Variant("PruneNet", "prunenet", "prune"))


ABLATIONS = {
    "table7": Ablation(
        "Per-layer ratios beside uniform pruning at the same mean ratio (paper Table 7)",
        "Ratios",
        (Variant("uniform", "prunenet", "schedule_mean"), Variant("{schedule}", "prunenet", "schedule")),
    ),
    "table10": Ablation(
        "SliceGPT by calibration corpus, beside PruneNet (paper Table 10)",
        "Method",
        (Variant("PruneNet", "prunenet"), Variant("SliceGPT ({calib})", "slicegpt", calib=EACH_CALIB)),
        notes=True,
    ),
    "table11": Ablation(
        "PruneNet and SliceGPT after RFT on WikiText-2 (paper Table 11)", "Method", _after_rft("wikitext2"), notes=True
    ),
    "table12": Ablation(
        "PruneNet and SliceGPT after RFT on Alpaca (paper Table 12)", "Method", _after_rft("alpaca"), notes=True
    ),
    "table13": Ablation(
        "PruneNet and SliceGPT at a high compression ratio (paper Table 13)",
        "Method",
        (Variant("PruneNet", "prunenet", "high_ratio"), Variant("SliceGPT", "slicegpt", "high_ratio")),
        notes=True,
    ),
    "table14": Ablation(
        "PruneNet and SliceGPT on the larger model, no RFT (paper Table 14)",
        "Method",
        WITHOUT_RFT,
        notes=True,
        models="large_model",
    ),
    "table15": Ablation(
        "PruneNet and SliceGPT on the larger model after RFT on WikiText-2 (paper Table 15)",
        "Method",
        _after_rft("wikitext2"),
        notes=True,
        models="large_model",
    ),
    "table16": Ablation(
        "Learned policy vs random rows (paper Table 16)",
        "Selection",
        (Variant("Policy-based", "prunenet"), Variant("Random", "random")),
    ),
    "table17": Ablation(
        "Stochastic policy vs its deterministic top-k (paper Table 17)",
        "Policy",
        (Variant("Stochastic", "prunenet"), Variant("Deterministic", "deterministic")),
        paired_seeds=True,  # the draw and the top-k of seed s are both taken from policy seed s
    ),
    "table18": Ablation(
        "Kolmogorov–Smirnov vs Anderson–Darling penalty (paper Table 18)",
        "Reward function",
        (Variant("KS", "prunenet", policy={"penalty": "ks"}), Variant("AD", "prunenet", policy={"penalty": "ad"})),
    ),
    "table19": Ablation(
        "Policy learned on FFN1 (up) vs FFN2 (down) (paper Table 19)",
        "Layer",
        (Variant("FFN1", "prunenet", policy={"state": "up"}), Variant("FFN2", "prunenet", policy={"state": "down"})),
    ),
    # not a paper table: which preset the default should be (issue 26), both spelled out whatever the config says
    "presets": Ablation(
        "PruneNet as the authors' code runs it vs as the paper describes it (policy presets)",
        "Preset",
        (
            Variant("Official", "prunenet", policy=_preset("official")),
            Variant("Paper", "prunenet", policy=_preset("paper")),
        ),
    ),
}


def _labels(results: list[dict], variants: dict[str, list[str]]) -> list[str]:
    """The variant of every result (by its path); every input in exactly one variant, dense apart."""
    label_of: dict[str, str] = {}
    for label, paths in variants.items():
        for p in paths:
            if p in label_of:
                raise PruneNetError(f"{p} is listed under variants {label_of[p]!r} and {label!r}: give it one")
            label_of[str(p)] = label
    out = []
    for r in results:
        label = label_of.get(r["source"], DENSE if r.get("method") == "dense" else None)
        if label is None:
            raise PruneNetError(f"{r['source']} is in no variant: list it under one in --options variants")
        out.append(label)
    unknown = set(label_of) - {r["source"] for r in results}
    if unknown:
        raise PruneNetError(f"variant input {sorted(unknown)[0]} is not among --inputs: pass it as an input too")
    return out


def ablation_frame(
    results: list[dict],
    variants: dict[str, list[str]],
    tasks: list[str],
    iters: int,
    seed: int,
    paired_seeds: bool = False,
) -> pd.DataFrame:
    """Per-seed rows and one mean row per (model, ratio, variant); non-reference mean rows carry the paired
    difference of average accuracy from the reference variant at that ratio (``avg_diff``, CI, ``avg_p``).
    ``paired_seeds``: where both variants ran the same seeds, seed s of one is paired with seed s of the other."""
    from .comparisons import matrices  # not at import: the workflow reads the table names without torch
    from .paired import paired_bootstrap

    df = accuracy_frame(results, tasks).reset_index(drop=True)
    by_source = {r["source"]: r for r in results}
    df["variant"] = _labels([by_source[s] for s in df["source"]], variants)
    order = [DENSE, *variants]
    df["_o"] = df["variant"].map(order.index)
    df = df.sort_values(["model", "ratio", "_o", "seed"], kind="stable").drop(columns="_o").reset_index(drop=True)
    metrics = [*tasks, "avg", *ppl_columns(df)]
    keys = ["model", "ratio", "variant"]
    g = df.groupby(keys, sort=False)
    mean = g[metrics + ["params", "effective_sparsity"]].mean()
    mean = mean.join(g[metrics].std(ddof=1).add_suffix("_sd")).join(g.size().rename("seeds"))
    mean = mean.join(g["method"].first()).join(g["setting"].first()).join(g["limit"].first()).reset_index()
    reference = next(iter(variants))
    stats = []
    for _, row in mean.iterrows():
        at = df[(df["model"] == row["model"]) & (df["ratio"] == row["ratio"])]
        if row["variant"] in (DENSE, reference) or reference not in set(at["variant"]):
            stats.append({})
            continue
        runs = {v: [by_source[s] for s in at.loc[at["variant"] == v, "source"]] for v in (row["variant"], reference)}
        a, b = matrices(runs[row["variant"]], tasks), matrices(runs[reference], tasks)
        same = [[r["seed"] for r in runs[v]] for v in runs]
        c = paired_bootstrap(a, b, iters, seed, paired_seeds and same[0] == same[1])
        stats.append({"vs": reference, "avg_diff": c.diff, "avg_ci_lo": c.lo, "avg_ci_hi": c.hi, "avg_p": c.p})
        stats[-1] |= {"avg_mde": mde(c.se), "items": c.items}
    mean = pd.concat([mean, pd.DataFrame(stats, index=mean.index)], axis=1)
    if "avg_p" in mean:  # the family: every difference printed under the table
        mean = with_holm(mean, "avg_p", "avg_p_holm")
    return pd.concat([df.assign(row="seed"), mean.assign(row="mean")], ignore_index=True)


def _schedules(frame: pd.DataFrame, by_source: dict[str, dict]) -> list[str]:
    """One line per variant pruned with per-layer ratios: the ratios used, so the table says what it ran."""
    lines = {}
    for source, label in zip(frame["source"], frame["variant"]):
        meta = by_source[source].get("meta", {})
        ratios = meta.get("layer_ratios")
        if ratios and len(set(ratios)) > 1 and label not in lines:
            shown, spec = ", ".join(f"{x:.3f}" for x in ratios), meta.get("ratio_spec")
            lines[label] = f"- {label} (`{spec}`, mean {np.mean(ratios):.3f}): per-layer ratios {shown}"
    return list(lines.values())


def ablation_markdown(frame: pd.DataFrame, spec: Ablation, tasks: list[str], results: list[dict], iters: int) -> str:
    mean = frame[frame["row"] == "mean"]
    parts = [f"### {spec.title}", ""]
    for model, m in mean.groupby("model", sort=False):
        md = pd.DataFrame(
            {"model": model, "Comp. ratio": m["ratio"].map(lambda r: f"{100 * r:g}%"), spec.column: m["variant"]}
        )
        for t in [*tasks, "avg"]:
            md[TASK_LABELS.get(t, "Avg." if t == "avg" else t)] = [cell(v, s) for v, s in zip(m[t], m[f"{t}_sd"])]
        for col in ppl_columns(m):
            md[f"PPL {col[4:]}"] = [cell(v, s, 2) for v, s in zip(m[col], m[f"{col}_sd"])]
        md["params (M)"] = m["params"].map(lambda v: f"{v / 1e6:.1f}")
        md["eff. sparsity %"] = m["effective_sparsity"].map(lambda v: f"{v:.1f}")
        md["seeds"] = m["seeds"]
        parts += [md.to_markdown(index=False), ""]
    parts.append(table_note(results, recovery=False))
    diffs = mean[mean["avg_diff"].notna()] if "avg_diff" in mean else mean.iloc[0:0]
    if diffs.empty:
        parts.append("No paired comparison: the reference variant has no run at these ratios.\n")
        return "\n".join(parts)
    parts += [
        f"Paired differences of average accuracy from the reference ({diffs['vs'].iloc[0]}), points: A − B on the "
        f"same items, 95 % CI (unadjusted) from {iters} bootstrap resamples over items × seeds, two-sided p and its "
        f"Holm adjustment. {family_note(len(diffs), iters)}",
        "",
    ]
    lines = []
    for _, r in diffs.iterrows():
        verdict = "significant" if significant(r["avg_p_holm"]) else "not significant"
        lines.append(
            f"- {r['model']}, {100 * r['ratio']:g}%: {r['variant']} − {r['vs']} = {r['avg_diff']:+.1f} "
            f"[{r['avg_ci_lo']:+.1f}, {r['avg_ci_hi']:+.1f}], p = {r['avg_p']:.3f}, Holm p = {r['avg_p_holm']:.3f} "
            f"({verdict}; detectable at 80 % power: {r['avg_mde']:.1f} with {r['items']:.0f} items, "
            f"{r['seeds']:.0f} seeds)"
        )
    parts += lines + [""]
    return "\n".join(parts)


def ablation_table(
    name: str,
    inputs: list[str],
    out: str,
    out_md: str,
    tasks: list[str] | None = None,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
    variants: dict[str, list[str]] | None = None,
    notes: list[str] | None = None,
) -> list[Path]:
    """An ablation table: variants' mean ± sd per task, average and perplexity, paired differences under it."""
    if not variants:
        raise PruneNetError(f"report {name} needs --options variants: {{label: [evaluation JSONs]}}, reference first")
    tasks = tasks or TABLE2_TASKS
    results = load_results(inputs)
    variants = {label: [str(p) for p in paths] for label, paths in variants.items()}
    frame = ablation_frame(results, variants, tasks, bootstrap, seed, ABLATIONS[name].paired_seeds)
    md = ablation_markdown(frame, ABLATIONS[name], tasks, results, bootstrap)
    schedules = _schedules(frame[frame["row"] == "seed"], {r["source"]: r for r in results})
    if schedules:
        md += "\n" + "\n".join(schedules) + "\n"
    md += "".join(f"\n{n}\n" for n in notes or [])
    return write_table(frame, out, out_md, md)


def _register(name: str) -> None:
    def build(
        inputs: list[str],
        out: str,
        out_md: str,
        tasks: list[str] | None = None,
        bootstrap: int = BOOTSTRAP,
        seed: int = 0,
        variants: dict[str, list[str]] | None = None,
        notes: list[str] | None = None,
    ) -> list[Path]:
        return ablation_table(name, inputs, out, out_md, tasks, bootstrap, seed, variants, notes)

    build.__doc__ = ABLATIONS[name].title
    TABLES.register(name, build)


for _name in ABLATIONS:
    _register(_name)
