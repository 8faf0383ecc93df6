"""results/report.md against the tables it cites: every number on a table's line is a value of that table's CSV,
the headline table equals the baselines CSV, and what it calls significant is exactly what the CSV's CIs say."""

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
    tables built from them, and the report."""
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
        files["slicegpt"].append(_write(ev / f"s{r}.json", "slicegpt", "wikitext2", r, 0, rng, 0.3))
    main = files["dense"] + files["ks"] + files["random"] + files["slicegpt"]
    tables = root / "tables"
    tables.mkdir(parents=True)
    opts = {"tasks": TASKS, "bootstrap": 500, "seed": 0}
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


def _values(csv: Path) -> list[float]:
    df = pd.read_csv(csv)
    return [float(v) for v in df.select_dtypes("number").to_numpy().ravel() if v == v]


def test_every_number_on_a_tables_line_is_in_that_table(run):
    root, text = run
    lines = [line for line in text.splitlines() if RESULT in line]
    assert {re.match(r"- \[(\w+)\]", line)[1] for line in lines} == {"table2", "pairs", "baselines", "table18"}
    checked = 0
    for line in lines:
        name = re.match(r"- \[(\w+)\]\((\S+)\)", line)
        values = _values(root / Path(name[2]).with_suffix(".csv"))
        for number in NUMBER.findall(line.split(RESULT, 1)[1]):
            decimals = len(number.split(".")[1]) if "." in number else 0
            assert any(round(v, decimals) == pytest.approx(float(number)) for v in values), (name[1], number)
            checked += 1
    assert checked > 20


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


def test_what_it_calls_significant_is_what_the_csv_says(run):
    root, text = run
    base = pd.read_csv(root / "tables/baselines.csv")
    line = next(x for x in text.splitlines() if x.startswith("- [baselines]"))
    vs = base[base["avg_diff_vs_prunenet"].notna()]
    for _, r in vs.iterrows():
        significant = r["avg_ci_lo_vs_prunenet"] > 0 or r["avg_ci_hi_vs_prunenet"] < 0
        said = f"{r['method']} at r = {r['ratio']:g} ({r['avg_diff_vs_prunenet']:+.1f} ["
        assert (said in line) == significant, (r["method"], r["ratio"])
    t18 = pd.read_csv(root / "tables/table18.csv")
    line = next(x for x in text.splitlines() if x.startswith("- [table18]"))
    for _, r in t18[t18["avg_diff"].notna()].iterrows():
        verdict = "significant" if r["avg_ci_lo"] > 0 or r["avg_ci_hi"] < 0 else "not significant"
        assert f"AD − KS at r = {r['ratio']:g}: {r['avg_diff']:+.1f} [" in line
        assert f"[{r['avg_ci_lo']:+.1f}, {r['avg_ci_hi']:+.1f}], {verdict}" in line
    assert "- [speedup_m.png](figures/speedup_m.png): Measured speed-up over dense" in text


def test_summary_refuses_what_is_not_a_table_or_figure(tmp_path):
    with pytest.raises(PruneNetError, match="takes table CSVs and figure PNGs"):
        summary([str(tmp_path / "x.json")], str(tmp_path / "report.md"))
    (tmp_path / "nope.csv").write_text("a\n1\n")
    with pytest.raises(PruneNetError, match="not a registered table"):
        summary([str(tmp_path / "nope.csv")], str(tmp_path / "report.md"))
    assert not (tmp_path / "report.md").exists()
