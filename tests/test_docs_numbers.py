"""The numbers the README and docs/results.md quote from a run against their own cells in the run they name.

A section that quotes a run names its commit ("a fresh clone of commit <sha>", or "pulled to commit <sha>" where the
clone was pulled forward and its tables rebuilt there); the tables it quotes are kept in
``docs/runs/<sha>/<table>.md``. Every row of a quoted table must equal the run's row with the same key (ratio and
method, or ratio and variant), every claim (an accuracy difference or a perplexity ratio with its CI and Holm p)
the run's line for the same pair, ratio (and corpus), and every CI the prose quotes must belong to such a claim,
so a number cannot be edited, or left behind by a rerun, without this test failing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N = r"[+−-]?\d+(?:\.\d+)?"
# the names the prose gives methods and ablation variants; a run's label is the name lower-cased, spaces as "-"
NAME = (
    r"PruneNet|SliceGPT|ShortGPT|LaCo|SVD-LLM|ASVD|LLM-Pruner|LLM Surgeon|random|deterministic|dense|"
    r"Policy-based|Random|Stochastic|Deterministic|Paper|Official"
)
CLAIM = rf"(?P<a>{NAME}) − (?P<b>{NAME}) at r = (?P<ratio>{N}): (?P<est>{N}) \[(?P<lo>{N}), (?P<hi>{N})\]"
PPL = rf"PPL (?P<a>{NAME}) / (?P<b>{NAME}) \((?P<ds>\w+)\) at r = (?P<ratio>{N}): " + CLAIM.split(": ", 1)[1]
TAIL = rf"(?:, p = (?P<p>{N}))?, Holm p = (?P<holm>{N})"
ABLATION_LINE = (
    rf"- [\w.-]+, (?P<pct>{N})%: (?P<a>.+?) − (?P<b>.+?) = (?P<est>{N}) \[(?P<lo>{N}), (?P<hi>{N})\], "
    rf"p = (?P<p>{N}), Holm p = (?P<holm>{N})"
)
KEYS = ("ratio", "Comp. ratio", "method", "Method", "Selection", "Policy", "Preset")  # the headers that identify a row
ALIASES = {"Avg. acc (5 tasks)": "Avg."}  # a quoted header -> the run's
# the quoting sections: (file, first line, the line after the section, the run's tables they quote)
SECTIONS = [
    ("README.md", "## What the main job produces", "## Where things live", ["table2"]),
    ("docs/results.md", "## Results on the embedded model", "**Perplexity against compression ratio**", ["table2"]),
    (
        "docs/results.md",
        "**Perplexity against compression ratio**",
        "**Table 6, policy transfer**",
        ["ppl_vs_ratio_smollm2-135m"],
    ),
    ("docs/results.md", "## Baselines on one parameter budget", "Table 4 (paper layout", ["baselines"]),
    (
        "docs/results.md",
        "**Tables 16 and 17 at the current default**",
        "**Tables 16 and 17 with the paper preset**",
        ["table16", "table17", "presets"],
    ),
    ("docs/results.md", "**Tables 16 and 17 with the paper preset**", "**Earlier ablations:", ["table16", "table17"]),
    ("docs/results.md", "**Table 11, PruneNet and SliceGPT after RFT", "**Table 12, the same after RFT", ["table11"]),
    ("docs/results.md", "**Table 12, the same after RFT", "## The larger model (Tables 14 and 15)", ["table12"]),
    ("docs/results.md", "**Tables 14 and 15, the larger model", "**Table 15 (after RFT", ["table14"]),
    ("docs/results.md", "**Table 15 (after RFT", "## Inference speed (Table 9)", ["table15"]),
]


def _num(text: str) -> float:
    return float(text.replace("−", "-"))


def _same(quoted: str, cell: str) -> bool:
    """The quoted number is the cell rounded to the quoted decimals."""
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    return round(_num(cell), decimals) == pytest.approx(_num(quoted))


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table of a markdown text as rows of {header: cell}."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            header, rows = block[0], [r for r in block[1:] if not set("".join(r)) <= set(":-")]
            tables.append([dict(zip(header, r)) for r in rows])
            block = []
    return tables


def _section(path: str, start: str, stop: str) -> str:
    text = (ROOT / path).read_text()
    return text[text.index(start) : text.index(stop)]


def _run_md(section: str, tables: list[str]) -> tuple[str, str]:
    # a clone pulled forward and rebuilt names the commit its tables were built at
    sha = re.search(r"pulled to commit ([0-9a-f]{7,40})", section) or re.search(
        r"fresh clone of commit ([0-9a-f]{7,40})", section
    )
    assert sha, "the section names no run (a fresh clone of commit <sha>, or one pulled to commit <sha>)"
    texts = []
    for table in tables:
        run = ROOT / "docs" / "runs" / sha[1] / f"{table}.md"
        assert run.is_file(), f"the run the section quotes is not kept: {run}"
        texts.append(run.read_text())
    return sha[1], "\n".join(texts)


def _key(name: str) -> str:
    return name.lower().replace(" ", "-")


def _row_key(row: dict[str, str]) -> tuple:
    return tuple((h, row[h]) for h in KEYS if h in row)


def _check_rows(section: str, run_md: str) -> int:
    """Each quoted table row equals the one run row with its key (ratio and method or variant), cell by cell (a
    quoted cell may leave out the recovery percentage; a header may be renamed, ``ALIASES``)."""
    rows = [r for t in _tables(run_md) if "a" not in t[0] for r in t]  # result tables, not the paired lines
    checked = 0
    for table in _tables(section):
        for row in table:
            key = _row_key(row)
            matches = [r for r in rows if _row_key({h: r.get(h) for h in dict(key)}) == key]
            assert len(matches) == 1, (key, len(matches))
            run_row = matches[0]
            for header, cell in row.items():
                want = run_row[ALIASES.get(header, header)]
                if "(" not in cell:
                    want = re.sub(r" \(\d+%\)$", "", want)
                assert cell == want, (key, header, cell, want)
                checked += 1
    return checked


def _pairs(run_md: str) -> dict[tuple, dict[str, str]]:
    """The run's paired lines: (a, b, ratio) for accuracy, (a, b, ratio, corpus) for perplexity; an ablation's
    lines (``- model, 10%: A − B = …``) by (a, b, ratio) with the names as the run labels them."""
    out = {}
    for m in re.finditer(ABLATION_LINE, run_md):
        key = (_key(m["a"]), _key(m["b"]), round(_num(m["pct"]) / 100, 6))
        out[key] = {k: m[k] for k in ("est", "lo", "hi", "p", "holm")}
    for table in [t for t in _tables(run_md) if "a" in t[0]]:
        for r in table:
            key = (r["a"], r["b"], round(float(r["ratio"]), 6)) + ((r["dataset"],) if "dataset" in r else ())
            lo, hi = r["95 % CI (unadjusted)"].strip("[]").split(", ")
            est = r.get("A − B", r.get("PPL A / B"))
            out[key] = {"est": est, "lo": lo, "hi": hi, "p": r["p"], "holm": r["p (Holm)"]}
    return out


def _check_claims(section: str, run_md: str) -> int:
    pairs, checked = _pairs(run_md), 0
    prose = re.sub(r"\s+", " ", " ".join(line for line in section.splitlines() if not line.startswith("|")))
    for pattern, has_ds in ((CLAIM, False), (PPL, True)):
        for m in re.finditer(pattern + TAIL, prose):
            key = (_key(m["a"]), _key(m["b"]), round(_num(m["ratio"]), 6)) + ((m["ds"],) if has_ds else ())
            assert key in pairs, f"no line of the run for {m[0]!r}"
            for stat in ("est", "lo", "hi", "p", "holm"):
                if m[stat] is not None:
                    assert _same(m[stat], pairs[key][stat]), (m[0], stat, pairs[key][stat])
            checked += 1
    cis = re.findall(rf"\[{N}, {N}\]", prose)
    assert len(cis) == checked, f"{len(cis)} CIs quoted, {checked} of them in a checked claim"
    return checked


def _check_ks_and_resolution(section: str, run_md: str) -> None:
    if "D = " not in section and "detectable at 80 % power" not in section:
        return
    ks = re.search(rf"D = ({N}), p = ({N})", run_md)
    for d, p in re.findall(rf"D = ({N}), p = ({N})", section):
        assert (d, p) == (ks[1], ks[2])
    ranges = [(lo, hi) for lo, hi in re.findall(rf"({N})–({N}) points with", run_md)]
    whole = (min(ranges, key=lambda r: _num(r[0]))[0], max(ranges, key=lambda r: _num(r[1]))[1])
    flat = re.sub(r"\s+", " ", section)
    for at in [m.end() for m in re.finditer("detectable at 80 % power", flat)]:
        for lo, hi in re.findall(rf"({N})–({N})", flat[at : at + 80]):  # the ranges that follow the phrase
            assert (lo, hi) in [*ranges, whole], (lo, hi, ranges)


@pytest.mark.parametrize(
    ("path", "start", "stop", "tables"), SECTIONS, ids=[f"{s[0]}:{'+'.join(s[3])}" for s in SECTIONS]
)
def test_every_quoted_number_is_its_cell(path, start, stop, tables):
    section = _section(path, start, stop)
    _, run_md = _run_md(section, tables)
    rows = _check_rows(section, run_md)
    claims = _check_claims(section, run_md)
    _check_ks_and_resolution(section, run_md)
    # at least 3 claims, or every paired line a run with fewer has (Tables 11/12: one per ratio)
    enough = min(3, len(_pairs(run_md)))
    assert rows >= 5 * 3 and (claims >= enough or tables[0].startswith("ppl_vs_ratio")), (rows, claims)


@pytest.mark.parametrize("shape", ["llama2-7b", "phi-2"])
def test_scale_tables_are_the_kept_rehearsal_runs(shape):
    """docs/scale.md's rehearsal table of ``shape`` is what ``scale_rehearsal.py --merge`` prints, with this code,
    from the run it names (``docs/runs/<sha>/rehearsal_<shape>.json``, one per shape): every measured case and every
    prediction beside it."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale_rehearsal

    (run,) = ROOT.glob(f"docs/runs/*/rehearsal_{shape}.json")
    kept, device, measured = scale_rehearsal.merged([run])
    cfg = scale_rehearsal.paper_config()
    results = {n: scale_rehearsal.summarized(n, cases, kept, device, cfg) for n, cases in measured.items()}
    doc = (ROOT / "docs/scale.md").read_text()
    table = scale_rehearsal.table(results, shape)
    assert kept == shape and table in doc
    for line in scale_rehearsal.report(results, shape).removeprefix(table).strip().splitlines():
        assert line in doc  # the methods not measured, the reading, the headline
    assert f"docs/runs/{run.parent.name}/rehearsal_{shape}.json" in doc  # the doc names the run
