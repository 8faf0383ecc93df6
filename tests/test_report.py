"""results/report.md against the tables it cites: every number on a table's line is its own cell of that table's CSV,
the headline table equals the baselines CSV, and what it calls significant is exactly the CSV's Holm-adjusted p."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_ablations import TASKS, _write

from prunenet.errors import PruneNetError
from prunenet.reporting import TABLES
from prunenet.reporting.summary import RESULT, summary

NUMBER = re.compile(r"(?<![\w.\-])[+-]?\d+(?:\.\d+)?(?![\w.])")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Planted evaluations of dense, PruneNet (3 seeds), random rows (3 seeds) and SliceGPT at two ratios, the
    tables built from them, and the report. SliceGPT at 0.4 is planted where its unadjusted CI excludes 0 from
    PruneNet and its Holm-adjusted p does not."""
    root = tmp_path_factory.mktemp("run") / "results"
    rng = np.random.default_rng(7)
    ev = root / "eval"
    files = {"dense": [_write(ev / "d.json", "dense", "default", 0.0, None, rng, 0.7)]}
    files["ks"], files["ad"], files["random"], files["slicegpt"] = [], [], [], []
    for r in (0.2, 0.4):
        for s in range(3):
            files["ks"].append(_write(ev / f"k{r}{s}.json", "prunenet", f"ks-up-paper-t{r}", r, s, rng, 0.62 - r / 2))
            files["ad"].append(_write(ev / f"a{r}{s}.json", "prunenet", f"ad-up-paper-t{r}", r, s, rng, 0.6 - r / 2))
            files["random"].append(_write(ev / f"r{r}{s}.json", "random", "default", r, s, rng, 0.66 - r / 2))
        files["slicegpt"].append(
            _write(ev / f"s{r}.json", "slicegpt", "wikitext2", r, 0, rng, 0.3 if r == 0.2 else 0.28)
        )
    main = files["dense"] + files["ks"] + files["random"] + files["slicegpt"]
    tables = root / "tables"
    tables.mkdir(parents=True)
    opts = {"tasks": TASKS, "bootstrap": 2000, "seed": 0}
    for name, inputs, extra in (
        ("table2", main, {}),
        ("pairs", main, {}),
        ("baselines", main, {}),
        ("table18", files["dense"] + files["ks"] + files["ad"], {"variants": {"KS": files["ks"], "AD": files["ad"]}}),
    ):
        TABLES.get(name)(inputs, str(tables / f"{name}.csv"), str(tables / f"{name}.md"), **opts, **extra)
    figure = root / "figures" / "speedup_m.png"
    figure.parent.mkdir()
    figure.write_bytes(b"png")
    csvs = sorted(str(p) for p in tables.glob("*.csv"))
    summary(csvs + [str(figure)], str(root / "report.md"))
    return root, (root / "report.md").read_text()


N = r"[+-]?\d+(?:\.\d+)?"
CI = rf"(?P<diff>{N}) \[(?P<lo>{N}), (?P<hi>{N})\], Holm p = (?P<p>{N})"
# each claim a table's line makes, and the columns of its own CSV row its numbers are read from
CLAIMS = {
    "versus": (re.compile(rf"(?P<method>\w+) at r = (?P<ratio>{N}) \({CI}\)"), "avg_{}_vs_{ref}"),
    "pairs": (re.compile(rf"(?P<a>\w+) − (?P<b>\w+) at r = (?P<ratio>{N}) \({CI}\)"), "{}"),
    "ablation": (re.compile(rf"(?P<variant>\w+) − (?P<vs>\w+) at r = (?P<ratio>{N}): {CI}, "), "avg_{}"),
}
STAT = {"diff": "diff", "lo": "ci_lo", "hi": "ci_hi", "p": "p_holm"}


def _same(number: str, value: float) -> bool:
    decimals = len(number.split(".")[1]) if "." in number else 0
    return round(float(value), decimals) == pytest.approx(float(number))


def _check_claims(text: str, df: pd.DataFrame, kind: str, ref: str = "") -> tuple[str, int]:
    """Every claim of ``kind`` in ``text`` against its own cells: the row its keys name, the column of each
    statistic. Returns the text with the claims cut out (no number may be left) and how many numbers matched."""
    pattern, column = CLAIMS[kind]
    checked = 0
    for m in pattern.finditer(text):
        keys = {k: v for k, v in m.groupdict().items() if k not in STAT}
        rows = df[np.isclose(df["ratio"], float(keys.pop("ratio")))]
        for k, v in keys.items():
            rows = rows[rows[k] == v]
        if "row" in rows:
            rows = rows[rows["row"] == "mean"]
        if kind == "pairs":
            rows = rows[rows["task"] == "avg"]
        assert len(rows) == 1, (kind, m[0])
        for stat, col in STAT.items():
            cell = rows.iloc[0][column.format(col, ref=ref)]
            assert _same(m[stat], cell), (kind, m[0], stat, cell)
            checked += 1
    return pattern.sub("", text), checked


def test_every_number_on_a_tables_line_is_its_own_cell(run):
    """Each number on a table's line is the cell its claim names (table, row by its keys, column by the
    statistic), not merely some value of the CSV; no number on the line is left unaccounted for."""
    root, text = run
    lines = [line for line in text.splitlines() if RESULT in line]
    assert {re.match(r"- \[(\w+)\]", line)[1] for line in lines} == {"table2", "pairs", "baselines", "table18"}
    checked = 0
    for line in lines:
        name = re.match(r"- \[(\w+)\]\((\S+)\)", line)
        df = pd.read_csv(root / Path(name[2]).with_suffix(".csv"))
        said = line.split(RESULT, 1)[1]
        if name[1] in ("table2", "baselines"):
            parts = re.split(r"(?=Significantly different from |No row differs significantly from )", said)
            rest = ""
            for part in parts:
                ref = "prunenet" if "from PruneNet" in part else "dense"
                left, n = _check_claims(part, df.rename(columns={"method": "method"}), "versus", ref)
                rest, checked = rest + left, checked + n
        else:
            rest, n = _check_claims(said, df, "pairs" if name[1] == "pairs" else "ablation")
            checked += n
        assert not NUMBER.findall(rest), (name[1], rest)
    assert checked > 40


def test_the_headline_table_is_the_baselines_csv(run):
    root, text = run
    base = pd.read_csv(root / "tables/baselines.csv")
    block = text.split("## Headline", 1)[1].split("## Tables", 1)[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in block.splitlines()[4:-1]}
    header = [c.strip() for c in block.splitlines()[2].split("|")[2:-1]]
    assert set(rows) == {"prunenet", "random", "slicegpt"}
    for method, cells in rows.items():
        for col, cell in zip(header, cells):
            ratio = float(col.split("= ")[1])
            row = base[(base["method"] == method) & (base["ratio"] == ratio)].iloc[0]
            if col.startswith("avg"):
                sd = f" ± {row['avg_sd']:.1f}" if row["avg_sd"] == row["avg_sd"] else ""
                assert cell == f"{row['avg']:.1f}{sd}"
            else:
                assert cell == f"{row['ppl_wikitext2']:.1f}"


def test_what_it_calls_significant_is_the_adjusted_p(run):
    """ "Significant" is Holm-adjusted p < 0.05, not an unadjusted CI that excludes 0: the planted run has a pair
    where the two disagree, and the report follows the adjusted p."""
    root, text = run
    base = pd.read_csv(root / "tables/baselines.csv")
    line = next(x for x in text.splitlines() if x.startswith("- [baselines]"))
    disagree = 0
    for ref in ("prunenet", "dense"):
        vs = base[base[f"avg_diff_vs_{ref}"].notna()]
        for _, r in vs.iterrows():
            significant = r[f"avg_p_holm_vs_{ref}"] < 0.05
            ci_excludes_zero = r[f"avg_ci_lo_vs_{ref}"] > 0 or r[f"avg_ci_hi_vs_{ref}"] < 0
            disagree += significant != ci_excludes_zero
            said = f"{r['method']} at r = {r['ratio']:g} ({r[f'avg_diff_vs_{ref}']:+.1f} ["
            part = line.split("from dense")[0 if ref == "prunenet" else 1]
            assert (said in part) == significant, (ref, r["method"], r["ratio"])
    assert disagree > 0  # the fixture exercises the difference between the two rules
    pairs = pd.read_csv(root / "tables/pairs.csv")
    line = next(x for x in text.splitlines() if x.startswith("- [pairs]"))
    avg = pairs[pairs["task"] == "avg"]
    assert ((avg["p_holm"] < 0.05) != ((avg["ci_lo"] > 0) | (avg["ci_hi"] < 0))).any()
    for _, r in avg.iterrows():
        said = f"{r['a']} − {r['b']} at r = {r['ratio']:g} ({r['diff']:+.1f} ["
        assert (said in line) == (r["p_holm"] < 0.05), (r["a"], r["b"], r["ratio"])
    t18 = pd.read_csv(root / "tables/table18.csv")
    line = next(x for x in text.splitlines() if x.startswith("- [table18]"))
    for _, r in t18[t18["avg_diff"].notna()].iterrows():
        verdict = "significant" if r["avg_p_holm"] < 0.05 else "not significant"
        assert f"AD − KS at r = {r['ratio']:g}: {r['avg_diff']:+.1f} [" in line
        assert f"[{r['avg_ci_lo']:+.1f}, {r['avg_ci_hi']:+.1f}], Holm p = {r['avg_p_holm']:.3f}, {verdict}" in line
    assert "- [speedup_m.png](figures/speedup_m.png): Measured speed-up over dense" in text


def test_summary_refuses_what_is_not_a_table_or_figure(tmp_path):
    with pytest.raises(PruneNetError, match="takes table CSVs and figure PNGs"):
        summary([str(tmp_path / "x.json")], str(tmp_path / "report.md"))
    (tmp_path / "nope.csv").write_text("a\n1\n")
    with pytest.raises(PruneNetError, match="not a registered table"):
        summary([str(tmp_path / "nope.csv")], str(tmp_path / "report.md"))
    assert not (tmp_path / "report.md").exists()


def test_the_sweep_table_is_the_plotted_points(tmp_path):
    """``ppl_vs_ratio`` writes the numbers it plots beside the figure: per method and ratio the mean over seeds,
    the min–max band and the mean effective sparsity, computed here by hand from the sweep JSONs."""
    import json

    from prunenet.reporting.figures import ppl_vs_ratio

    ppl = {("a", 0): [10.0, 40.0], ("a", 1): [20.0, 80.0], ("a", 2): [60.0, 240.0], ("b", 0): [5.0, 7.0]}
    inputs = []
    for (method, seed), values in ppl.items():
        points = [{"ratio": r, "ppl": v, "effective_sparsity": r / 2 + seed / 100} for r, v in zip([0.1, 0.2], values)]
        path = tmp_path / f"{method}-{seed}.json"
        path.write_text(json.dumps({"method": method, "seed": seed, "dataset": "wikitext2", "points": points}))
        inputs.append(str(path))
    written = ppl_vs_ratio(inputs, str(tmp_path / "sweep.png"))
    md = tmp_path / "sweep.md"
    assert md in written and (tmp_path / "sweep.png").stat().st_size > 0
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.read_text().splitlines()[4:]]
    assert rows == [
        ["0.1", "a", "3", "30.0", "10.0–60.0", "6.0"],
        ["0.1", "b", "1", "5.0", "5.0–5.0", "5.0"],
        ["0.2", "a", "3", "120.0", "40.0–240.0", "11.0"],
        ["0.2", "b", "1", "7.0", "7.0–7.0", "10.0"],
    ]
