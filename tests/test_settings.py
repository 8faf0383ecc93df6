"""The settings table: its columns are the configs' values and the registry's release declarations, every
registered method appears, and the workflow points to it under the tables whose methods deviate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_workflow import snakemake, tiny_dir, write_config  # noqa: F401  (tiny_dir: a fixture)

from prunenet.cli import main
from prunenet.methods import METHODS
from prunenet.reporting.settings import NO_SECTION, NOTE, settings

ROOT = Path(__file__).resolve().parents[1]


def _configs(tmp_path: Path) -> tuple[Path, Path]:
    defaults, paper = tmp_path / "config.yaml", tmp_path / "paper.yaml"
    shutil.copy(ROOT / "config" / "config.yaml", defaults)
    shutil.copy(ROOT / "config" / "paper.yaml", paper)
    return defaults, paper


def _build(tmp_path: Path, defaults: Path, paper: Path, here: dict | None = None) -> pd.DataFrame:
    settings([str(defaults), str(paper)], str(tmp_path / "s.csv"), str(tmp_path / "s.md"), here)
    return pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)


def _cell(df: pd.DataFrame, method: str, key: str, column: str) -> str:
    (value,) = df.loc[(df["method"] == method) & (df["setting"] == key), column]
    return value


def test_columns_are_the_config_values(tmp_path):
    """Every key of every method section: 'here' is config.yaml's value, 'paper.yaml' the overlay merged onto it."""
    defaults, paper = _configs(tmp_path)
    base, overlay = (yaml.safe_load(p.read_text()) for p in (defaults, paper))
    df = _build(tmp_path, defaults, paper)
    for name, _ in METHODS.items():
        for key, value in (base.get(name) or {}).items():
            assert _cell(df, name, key, "here") == str(value), (name, key)
            assert _cell(df, name, key, "paper.yaml") == str((overlay.get(name) or {}).get(key, value)), (name, key)


def test_a_changed_config_value_changes_the_table(tmp_path):
    defaults, paper = _configs(tmp_path)
    base, overlay = (yaml.safe_load(p.read_text()) for p in (defaults, paper))
    base["llm-surgeon"]["shots"] = 7
    overlay.setdefault("llm-surgeon", {})["shots"] = 11
    defaults.write_text(yaml.safe_dump(base))
    paper.write_text(yaml.safe_dump(overlay))
    df = _build(tmp_path, defaults, paper)
    assert _cell(df, "llm-surgeon", "shots", "here") == "7"
    assert _cell(df, "llm-surgeon", "shots", "paper.yaml") == "11"
    # the workflow passes its own (merged) sections as 'here'; the defaults file then fills only the paper column
    df = _build(tmp_path, defaults, paper, here={"llm-surgeon": {"shots": 3}})
    assert _cell(df, "llm-surgeon", "shots", "here") == "3"
    assert "40" in _cell(df, "llm-surgeon", "shots", "release")  # the registry's declaration


def test_every_method_appears_and_declarations_name_real_settings(tmp_path):
    defaults, paper = _configs(tmp_path)
    df = _build(tmp_path, defaults, paper)
    base = yaml.safe_load(defaults.read_text())
    assert list(dict.fromkeys(df["method"])) == METHODS.names()
    for name, method in METHODS.items():
        known = set(base.get(name) or {}) | {o.name for o in method.options}
        assert {r.setting for r in method.release} <= known, name  # a typo would add a row no config can set
        if not known:
            assert list(df.loc[df["method"] == name, "setting"]) == [NO_SECTION]
    md = (tmp_path / "s.md").read_text()
    assert "| llm-pruner" in md and "hf_prune.py" in md


def test_every_baselines_budget_is_a_row(tmp_path):
    """Each method with a nominal ratio shows its budget: here params, paper.yaml ratio for the baselines the paper
    compared at their own ratio (Tables 2, 4, 5), and the release's own definition beside them."""
    df = _build(tmp_path, *_configs(tmp_path))
    for name, method in METHODS.items():
        rows = df.loc[(df["method"] == name) & (df["setting"] == "budget")]
        assert len(rows) == (1 if method.nominal else 0), name
        if method.nominal:
            paper = "params" if name == "llm-surgeon" else "ratio"
            assert (_cell(df, name, "budget", "here"), _cell(df, name, "budget", "paper.yaml")) == ("params", paper)
            assert _cell(df, name, "budget", "release") != "not checked", name


def test_bad_inputs_are_refused(tmp_path, capsys):
    capsys.readouterr()
    argv = ["report", "settings", "--inputs", str(ROOT / "config" / "config.yaml")]
    code = main(argv + ["--out", str(tmp_path / "s.csv"), "--out-md", str(tmp_path / "s.md")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "two files" in err[0]
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_the_workflow_notes_deviating_methods(tmp_path, tiny_dir, data_dir):  # noqa: F811
    """The line pointing to settings.md sits under a table with a deviating method (SliceGPT), not under PruneNet's."""
    write_config(tmp_path, tiny_dir, data_dir)
    res = snakemake(tmp_path, "-n", "-p", "results/tables/table4.csv", "results/tables/table21.csv", "settings")
    assert res.returncode == 0, res.stderr[-2000:]
    commands = [line for line in res.stdout.splitlines() if "prunenet report" in line]
    (table4,) = [c for c in commands if " report table4 " in c]
    (table21,) = [c for c in commands if " report table21 " in c]
    assert "settings.md" in table4 and "settings.md" not in table21
    assert NOTE.split(" (")[0] in table4
    assert any(" report settings " in c for c in commands)
