"""The numbers the README and docs/results.md quote from the main job against their own cells in the run they name.

A section that quotes a run names its commit ("a fresh clone of commit <sha>"); that run's tables are kept in
``docs/runs/<sha>/``. Every row of a quoted table must equal the run's row for the same ratio and method, every
claim (an accuracy difference or a perplexity ratio with its CI and Holm p) the run's line for the same pair,
ratio (and corpus), and every CI the prose quotes must belong to such a claim, so a number cannot be edited, or
left behind by a rerun, without this test failing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N = r"[+−-]?\d+(?:\.\d+)?"
NAME = r"PruneNet|SliceGPT|random|dense"
CLAIM = rf"(?P<a>{NAME}) − (?P<b>{NAME}) at r = (?P<ratio>{N}): (?P<est>{N}) \[(?P<lo>{N}), (?P<hi>{N})\]"
PPL = rf"PPL (?P<a>{NAME}) / (?P<b>{NAME}) \((?P<ds>\w+)\) at r = (?P<ratio>{N}): " + CLAIM.split(": ", 1)[1]
TAIL = rf"(?:, p = (?P<p>{N}))?, Holm p = (?P<holm>{N})"
ALIASES = {"Avg. acc (5 tasks)": "Avg."}  # a quoted header -> the run's
# the quoting sections: (file, first line, the line after the section)
SECTIONS = [
    ("README.md", "## What the main job produces", "## Where things live"),
    ("docs/results.md", "## Results on the embedded model", "**Perplexity against compression ratio**"),
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


def _run_md(section: str) -> tuple[str, str]:
    sha = re.search(r"fresh clone of commit ([0-9a-f]{7,40})", section)
    assert sha, "the section names no run (a fresh clone of commit <sha>)"
    run = ROOT / "docs" / "runs" / sha[1] / "table2.md"
    assert run.is_file(), f"the run the section quotes is not kept: {run}"
    return sha[1], run.read_text()


def _key(name: str) -> str:
    return name.lower()


def _check_rows(section: str, run_md: str) -> int:
    """Each quoted table row equals the run's main-table row of its ratio and method, cell by cell (a quoted
    cell may leave out the recovery percentage; a header may be renamed, ``ALIASES``)."""
    main = {(r["ratio"], r["method"]): r for r in _tables(run_md)[0]}
    checked = 0
    for table in _tables(section):
        for row in table:
            run_row = main[(row["ratio"], row["method"])]
            for header, cell in row.items():
                want = run_row[ALIASES.get(header, header)]
                if "(" not in cell:
                    want = re.sub(r" \(\d+%\)$", "", want)
                assert cell == want, (row["ratio"], row["method"], header, cell, want)
                checked += 1
    return checked


def _pairs(run_md: str) -> dict[tuple, dict[str, str]]:
    """The run's paired lines: (a, b, ratio) for accuracy, (a, b, ratio, corpus) for perplexity."""
    out = {}
    for table in _tables(run_md)[1:]:
        for r in table:
            key = (r["a"], r["b"], float(r["ratio"])) + ((r["dataset"],) if "dataset" in r else ())
            lo, hi = r["95 % CI (unadjusted)"].strip("[]").split(", ")
            est = r.get("A − B", r.get("PPL A / B"))
            out[key] = {"est": est, "lo": lo, "hi": hi, "p": r["p"], "holm": r["p (Holm)"]}
    return out


def _check_claims(section: str, run_md: str) -> int:
    pairs, checked = _pairs(run_md), 0
    prose = re.sub(r"\s+", " ", " ".join(line for line in section.splitlines() if not line.startswith("|")))
    for pattern, has_ds in ((CLAIM, False), (PPL, True)):
        for m in re.finditer(pattern + TAIL, prose):
            key = (_key(m["a"]), _key(m["b"]), _num(m["ratio"])) + ((m["ds"],) if has_ds else ())
            assert key in pairs, f"no line of the run for {m[0]!r}"
            for stat in ("est", "lo", "hi", "p", "holm"):
                if m[stat] is not None:
                    assert _same(m[stat], pairs[key][stat]), (m[0], stat, pairs[key][stat])
            checked += 1
    cis = re.findall(rf"\[{N}, {N}\]", prose)
    assert len(cis) == checked, f"{len(cis)} CIs quoted, {checked} of them in a checked claim"
    return checked


def _check_ks_and_resolution(section: str, run_md: str) -> None:
    ks = re.search(rf"D = ({N}), p = ({N})", run_md)
    for d, p in re.findall(rf"D = ({N}), p = ({N})", section):
        assert (d, p) == (ks[1], ks[2])
    ranges = [(lo, hi) for lo, hi in re.findall(rf"({N})–({N}) points with", run_md)]
    whole = (min(ranges, key=lambda r: _num(r[0]))[0], max(ranges, key=lambda r: _num(r[1]))[1])
    flat = re.sub(r"\s+", " ", section)
    for at in [m.end() for m in re.finditer("detectable at 80 % power", flat)]:
        for lo, hi in re.findall(rf"({N})–({N})", flat[at : at + 80]):  # the ranges that follow the phrase
            assert (lo, hi) in [*ranges, whole], (lo, hi, ranges)


@pytest.mark.parametrize(("path", "start", "stop"), SECTIONS, ids=[s[0] for s in SECTIONS])
def test_every_quoted_number_is_its_cell(path, start, stop):
    section = _section(path, start, stop)
    _, run_md = _run_md(section)
    rows = _check_rows(section, run_md)
    claims = _check_claims(section, run_md)
    _check_ks_and_resolution(section, run_md)
    assert rows >= 10 * 6 and claims >= 3, (rows, claims)
