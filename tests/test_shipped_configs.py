"""Every shipped configuration renders shell commands without Python's ``None``/``nan`` leaking into a flag.

A dry run does not execute the commands, so a config value of ``null`` rendered as ``--ppl-blocks None`` would only
fail when the job runs (under ``config/paper.yaml``: every sweep job, and with it ``all``). This reads the rendered
commands of ``snakemake -n -p all`` under each file in ``config/`` (found here, so a config added later is checked).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "config").glob("*.yaml") if p.name != "schema.yaml")
LEAK = re.compile(r"(?<![\w.-])(None|nan|NaN)(?![\w.-])")


def rendered_commands(text: str) -> list[str]:
    """The shell commands a ``snakemake -n -p`` run prints (a rule without one prints ``Shell command: None``)."""
    return [
        line.removeprefix("Shell command: ")
        for line in text.splitlines()
        if line.startswith("Shell command: ") and line != "Shell command: None"
    ]


def test_the_leak_pattern_catches_a_null_flag():
    cmds = rendered_commands("Shell command: python -m prunenet sweep --ppl-blocks None --x 1\nShell command: None\n")
    assert [LEAK.findall(c) for c in cmds] == [["None"]]
    assert not LEAK.search("--setting ks-up-nan-t0.3 --out a/None.json --model x")  # names that merely contain it


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_no_config_renders_none_or_nan(config, tmp_path, data_dir):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "-p", "all"]
        # as from the repository root: the Snakefile's config/config.yaml first, the file named on top of it
        + ["--configfile", str(ROOT / "config/config.yaml"), str(config), "--config", f"data_dir={data_dir}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    cmds = rendered_commands(res.stdout + res.stderr)
    assert len(cmds) > 50, f"{config.name}: only {len(cmds)} commands rendered"
    leaks = [c for c in cmds if LEAK.search(c)]
    assert not leaks, f"{config.name}: {len(leaks)} commands render None/nan, e.g. {leaks[0][:300]}"
