"""Every shipped configuration renders shell commands without Python's ``None``/``nan`` leaking into a flag.

A dry run does not execute the commands, so a config value of ``null`` rendered as ``--ppl-blocks None`` would only
fail when the job runs (under ``config/paper.yaml``: every sweep job, and with it ``all``). This reads the rendered
commands of ``snakemake -n -p all`` under each file in ``config/`` (found here, so a config added later is checked).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
    # the attention trainer takes the paper's objective and update only (refused at run time otherwise)
    refused = [c for c in cmds if "--state qkv" in c and ("--update official" in c or "--objective official" in c)]
    assert not refused, f"{config.name}: an attention policy with the released update: {refused[0][:300]}"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, tokenizer) -> Path:
    import torch
    from conftest import tiny_config
    from transformers import AutoModelForCausalLM

    from prunenet.models import save_checkpoint

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tokenizer)))
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    save_checkpoint(model, tokenizer, path)
    return path


def snakemake_under(
    config: Path, workdir: Path, overlay: Path, *targets: str, dry: bool = False
) -> subprocess.CompletedProcess:
    """Snakemake in ``workdir`` as from a checkout: its config/config.yaml, the shipped file and the overlay on
    top (an overlay's ``models`` replaces the defaults' only when config.yaml is not itself an overlay)."""
    # MLflow off: what a configuration changes is a rule's command, never how a job logs (the experiment is the
    # model's name, the store the workdir's); the default configuration's end-to-end test checks every rule's
    # run. Tracking is ~2.4 CPU-s of imports per job (mlflow, its sqlite store), a sixth of these runs.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": "1"}
    env["PRUNENET_MLFLOW"] = "0"
    (workdir / "config").mkdir(exist_ok=True)
    shutil.copy(ROOT / "config/config.yaml", workdir / "config/config.yaml")
    files = [str(config), str(overlay)]
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        *(["-n"] if dry else []),
    ]
    return subprocess.run(
        [*cmd, "--configfile", *files, "--", *targets], capture_output=True, text=True, env=env, timeout=3000
    )


# config.yaml's `all` runs whole in tests/test_workflow.py::test_end_to_end_all
OTHER_CONFIGS = [p for p in CONFIGS if p.name != "config.yaml"]


@pytest.fixture(scope="module")
def shared_workdir(tmp_path_factory) -> Path:
    """One working directory for every configuration: a job whose rendered command an earlier configuration
    already ran is up to date (Snakemake reruns a job when its parameters change), so each configuration runs only
    what it renders differently."""
    return tmp_path_factory.mktemp("shipped")


@pytest.mark.parametrize("config", OTHER_CONFIGS, ids=[p.stem for p in OTHER_CONFIGS])
def test_every_rule_runs_under_each_shipped_config(config, shared_workdir, tiny_llama, data_dir):
    """Each rule of the configuration's ``all`` runs (its job with the fewest upstream jobs, with them) on a tiny
    model, with only the model and the item/size limits overridden (tests/shipped_runs.py); a rule none of whose
    jobs is left to run already ran with this configuration's commands."""
    from shipped_runs import TINY_LIMITS, cheapest_per_rule, parse_dry_run

    workdir = shared_workdir
    overlay = workdir / f"tiny-{config.stem}.yaml"
    model = {"models": {"tiny": str(tiny_llama)}, "data_dir": str(data_dir)}
    if "large_model" in yaml.safe_load(config.read_text()):  # Tables 14/15's larger model: the tiny one too
        model["large_model"] = "tiny"
    overlay.write_text(yaml.safe_dump(model | TINY_LIMITS))
    dry = snakemake_under(config, workdir, overlay, "all", dry=True)
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-3000:]
    best = cheapest_per_rule(parse_dry_run(dry.stdout + dry.stderr))
    targets = [job.outputs[0] for job, _ in best.values()]
    res = snakemake_under(config, workdir, overlay, *targets)
    assert res.returncode == 0, f"{config.name}: {res.stderr[-4000:]}"
    for target in targets:
        assert (workdir / target).exists(), target
    again = snakemake_under(config, workdir, overlay, *targets, dry=True)  # nothing left: every command ran
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
