"""Overriding the workflow's configuration, cluster profiles and the conda env, checked on Snakemake dry runs.

The defaults here are the repository's own ``config/config.yaml`` (its data_dir pointed at the test data), so every
override form docs/workflow.md documents is tried against what a user has.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunenet.config import ConfigError, coerce, resolve

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())


@pytest.fixture
def workdir(tmp_path, data_dir) -> Path:
    """A working directory whose config/config.yaml is the repository's default (data_dir: the test data)."""
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text()) | {"data_dir": str(data_dir)}
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp_path


def dry_run(workdir: Path, *args: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "-n", "-p", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return res.returncode, res.stdout + res.stderr


def jobs(out: str) -> dict[str, int]:
    """The dry run's job-count table: rule -> count."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_typed_config_values_override_single_keys(workdir):
    rc, out = dry_run(workdir, "results/tables/table2.csv", "--config", "evaluate={limit: 5}", "prune={ratios: [0.2]}")
    assert rc == 0, out[-2000:]
    evals = re.findall(r"prunenet evaluate .*", out)
    assert evals and all("--limit 5 " in e for e in evals)  # the nested value arrived as an integer
    assert "r0.2-s0" in out and "r0.1-s0" not in out and "r0.3-s0" not in out
    assert all("--batch-size 8" in e for e in evals)  # the keys beside it kept their defaults
    rc, out = dry_run(workdir, "results/tables/table2.csv", "--config", "seeds=[0]", "evaluate={limit: null}")
    assert rc == 0, out[-2000:]
    assert "-s1" not in out and not any("--limit" in e for e in re.findall(r"prunenet evaluate .*", out))


def test_a_partial_configfile_is_merged_on_the_defaults(workdir):
    overlay = workdir / "fewer.yaml"
    overlay.write_text("evaluate:\n  limit: 7\nprune:\n  ratios: [0.3]\n")
    rc, out = dry_run(workdir, "results/tables/table2.csv", "--configfile", str(overlay))
    assert rc == 0, out[-2000:]
    assert "--limit 7 " in out and "r0.3-s2" in out and "r0.2-s0" not in out
    assert "smollm2-135m" in out  # models, seeds, methods: the defaults


def test_the_quick_configfile_changes_only_the_evaluation_items(workdir):
    """config/quick.yaml (docs/results.md "Baselines"): Tables 4/5 evaluate 30 items per task on 4 perplexity
    blocks with one calibration draw per calibrated baseline; the jobs are the default's with
    ``calibration_seeds: first`` (same methods, ratios, seeds), only the evaluation's item flags differ. The default
    re-draws every calibrated baseline's sample per seed."""
    targets = ("results/tables/table4.csv", "results/tables/table5.csv")
    rc, quick = dry_run(workdir, *targets, "--configfile", str(ROOT / "config/quick.yaml"))
    assert rc == 0, quick[-2000:]
    rc, default = dry_run(workdir, *targets, "--config", "calibration_seeds=first")
    assert rc == 0, default[-2000:]
    assert jobs(quick) == jobs(default)
    rc, every_draw = dry_run(workdir, *targets)
    assert rc == 0 and "prune/smollm2-135m/svd-llm/wikitext2/r0.3-s2" in every_draw, every_draw[-2000:]
    assert "svd-llm/wikitext2/r0.3-s2" not in quick
    evals = [x for x in _shell_lines(quick) if "prunenet evaluate " in x]
    assert evals and all("--limit 30 " in x and "--ppl-blocks 4" in x for x in evals)
    unchanged = [x for x in _shell_lines(quick) if "prunenet evaluate " not in x]
    assert sorted(unchanged) == sorted(x for x in _shell_lines(default) if "prunenet evaluate " not in x)


def test_a_paper_configfile_replaces_the_models(workdir):
    rc, out = dry_run(workdir, "results/tables/table2.csv", "--configfile", str(ROOT / "config/paper.yaml"))
    assert rc == 0, out[-2000:]
    assert "smollm2-135m" not in out and "resources/models/llama-2-7b" in out


def _budgets(out: str) -> dict[str, set[str]]:
    """Each method's ``--<method>-budget`` values over the prune commands of a dry run ("none": no such flag)."""
    found: dict[str, set[str]] = {}
    for line in re.findall(r"prunenet prune .*", out):
        method = re.search(r"--method (\S+)", line)[1]
        flag = re.search(rf"--{method}-budget (\w+)", line)
        found.setdefault(method, set()).add(flag[1] if flag else "none")
    return found


def test_the_paper_configfile_prunes_the_papers_baselines_at_their_nominal_ratio(workdir):
    """config/paper.yaml: every baseline of the paper's Tables 2, 4 and 5 runs at its release's ratio (budget:
    ratio), LLM Surgeon (in none of them) at PruneNet's size; the defaults run every baseline at PruneNet's size."""
    targets = ["results/tables/table4.csv", "results/tables/table5.csv", "results/tables/baselines.csv"]
    baselines = {"slicegpt", "shortgpt", "laco", "svd-llm", "asvd", "llm-pruner", "llm-surgeon"}
    rc, out = dry_run(workdir, *targets)
    assert rc == 0, out[-2000:]
    assert {m: b for m, b in _budgets(out).items() if m in baselines} == dict.fromkeys(baselines, {"params"})
    rc, out = dry_run(workdir, *targets, "--configfile", str(ROOT / "config/paper.yaml"))
    assert rc == 0, out[-2000:]
    paper = dict.fromkeys(baselines - {"llm-surgeon"}, {"ratio"}) | {"llm-surgeon": {"params"}}
    assert {m: b for m, b in _budgets(out).items() if m in baselines} == paper


def test_each_nominal_ratio_is_one_budget_key_stated_once(tmp_path):
    """A method whose release defines its own ratio has one ``budget`` key, default params, whose schema description
    is the registry's statement of what ``ratio`` means; a bad value on the CLI exits 2 with one line before any
    model loads (the workflow's config is refused by the schema: test_overrides_that_change_nothing_…)."""
    from prunenet.methods import METHODS

    nominal = [name for name, m in METHODS.items() if m.nominal]
    assert set(nominal) == {"slicegpt", "shortgpt", "laco", "svd-llm", "asvd", "llm-pruner", "llm-surgeon"}
    for name, method in METHODS.items():
        section = SCHEMA["properties"].get(name, {}).get("properties", {})
        if name not in nominal:
            assert "budget" not in section, name
            continue
        option = next(o for o in method.options if o.name == "budget")
        assert method.nominal in option.help
        assert section["budget"] == {"enum": ["params", "ratio"], "default": "params", "description": option.help}
        cmd = [sys.executable, "-m", "prunenet", "prune", "--model", str(tmp_path / "absent"), "--out", str(tmp_path)]
        cmd += ["--ratio", "0.3", "--method", name, f"--{name}-budget", "nominal"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert f"--{name}-budget" in res.stderr and "'params', 'ratio'" in res.stderr


def test_the_default_trains_policies_as_the_authors_code_and_the_overlay_as_the_paper(workdir):
    """The default (docs/methods.md "PruneNet: paper vs authors' code"): Table 16's policies are trained with every
    released switch and the released learning rate, under an id that names them; config/paper_preset.yaml trains the
    paper's under the paper's id; random rows are the same under both."""
    rc, out = dry_run(workdir, "results/tables/table16.csv")
    assert rc == 0, out[-2000:]
    trains = re.findall(r"prunenet train .*", out)
    assert trains and all(
        "ks-first-official-init-official-update-official-lr0.001-t0." in t
        and "--state first --objective official " in t
        and "--init official --update official " in t
        and "--lr 0.001 " in t
        for t in trains
    )
    assert "results/eval/smollm2-135m/random/default/r0.3-s0.json" in out
    rc, out = dry_run(workdir, "results/tables/table16.csv", "--configfile", str(ROOT / "config/paper_preset.yaml"))
    assert rc == 0, out[-2000:]
    trains = re.findall(r"prunenet train .*", out)
    assert trains and all(
        "ks-up-paper-t0." in t
        and "--state up --objective paper " in t
        and "official" not in t  # init and update at the CLI's default, the paper's
        and "--lr 0.0005 " in t
        for t in trains
    )
    assert "results/eval/smollm2-135m/random/default/r0.3-s0.json" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--config", "models={}"], "leave no model"),
        (["--config", "evaluate={}"], "change nothing"),
        (["--config", "evaluate={limt: 5}"], "'limt' was unexpected"),
        (["--config", "prune={methods: []}"], "should be non-empty"),
        (["--config", "evaluate={limit: 0}"], "less than the minimum"),
        (["--config", "llm-pruner={budget: nominal}"], "'nominal' is not one of ['params', 'ratio']"),
    ],
)
def test_overrides_that_change_nothing_or_empty_the_dag_are_refused(workdir, args, words):
    rc, out = dry_run(workdir, "results/tables/table2.csv", *args)
    assert rc != 0 and words in out, out[-2000:]


def test_an_overlay_that_sets_nothing_is_refused(workdir):
    overlay = workdir / "empty.yaml"
    overlay.write_text("{}\n")
    rc, out = dry_run(workdir, "results/tables/table2.csv", "--configfile", str(overlay))
    assert rc != 0 and "sets nothing" in out


def test_rft_null_removes_the_rft_stage(workdir):
    rc, out = dry_run(workdir, "all")
    assert rc == 0 and jobs(out)["rft"] > 0
    rc, out = dry_run(workdir, "all", "--config", "rft=null")
    assert rc == 0, out[-2000:]
    assert "rft" not in jobs(out) and "table3" not in out


def test_coerce_reads_strings_as_the_schema_types():
    got = coerce(
        {"evaluate": {"limit": "5", "tasks": ["piqa"]}, "seeds": ["0", "1"], "data_dir": "null"}, SCHEMA, SCHEMA
    )
    assert got == {"evaluate": {"limit": 5, "tasks": ["piqa"]}, "seeds": [0, 1], "data_dir": None}
    # a string the schema takes stays one: asvd.ratios is a list written as text, enums are names
    got = coerce({"asvd": {"ratios": "0.1,0.2"}, "policy": {"train_ratio": "same", "penalty": "ks"}}, SCHEMA, SCHEMA)
    assert got == {"asvd": {"ratios": "0.1,0.2"}, "policy": {"train_ratio": "same", "penalty": "ks"}}
    assert coerce({"policy": {"train_ratio": "0.3"}}, SCHEMA, SCHEMA) == {"policy": {"train_ratio": 0.3}}
    with pytest.raises(ConfigError, match="leave no model"):
        resolve({"models": {"a": "b"}}, {"models": {}}, [], SCHEMA)
    merged = {"models": {"a": "x", "b": "y"}, "evaluate": {"limit": "3"}}  # Snakemake's merge of both
    assert resolve(merged, {"models": {"b": "y"}}, [], SCHEMA)["models"] == {"b": "y"}


def test_the_last_overlay_naming_models_gives_them_whole(tmp_path):
    """``--configfile paper.yaml mine.yaml``: Snakemake merges the two files' models into each other; the last file
    (or ``--config``) naming ``models`` is what runs, not the union."""
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("models: {a: x, b: y}\n")
    second.write_text("models: {c: z}\nseeds: [0]\n")
    merged = {"models": {"a": "x", "b": "y", "c": "z"}, "seeds": [0]}  # Snakemake's merge of both files
    assert resolve(merged, merged, [first, second], SCHEMA)["models"] == {"c": "z"}
    assert resolve(merged, merged, [second, first], SCHEMA)["models"] == {"a": "x", "b": "y"}
    cli = {"models": {"d": "w"}}
    assert resolve(merged | cli, merged | cli, [first, second], SCHEMA, cli)["models"] == {"d": "w"}
    third = tmp_path / "third.yaml"
    third.write_text("seeds: [1]\n")  # a later overlay without models leaves the last one naming them
    assert resolve(merged, merged, [first, second, third], SCHEMA)["models"] == {"c": "z"}


def resources(out: str) -> dict[str, set[str]]:
    """rule -> the set of ``gpu=`` values its jobs ask for in a dry run ('' when none)."""
    found: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.match(r"(?:local)?rule (\w+):", block)
        r = re.search(r"resources: .*", block)
        if m and r:
            gpu = re.search(r"gpu=(\d)", r.group(0))
            found.setdefault(m.group(1), set()).add(gpu.group(1) if gpu else "")
    return found


def test_slurm_profile_asks_a_gpu_only_for_compute_rules_on_cuda(workdir):
    if not os.environ.get("CI"):  # CI installs the extra (README's test command) and must run this
        pytest.importorskip("snakemake_executor_plugin_slurm", reason="needs: bash envs/install.sh slurm")
    profile = str(ROOT / "profiles/slurm")
    rc, out = dry_run(workdir, "all", "--profile", profile, "--configfile", str(ROOT / "config/paper.yaml"))
    assert rc == 0, out[-2000:]
    gpus = resources(out)
    for rule in ("train_policy", "prune", "evaluate", "rft", "sweep", "prepare"):
        assert gpus[rule] == {"1"}, rule
    assert gpus["download_model"] == {"0"} and gpus["spectra"] == {"0"}
    assert "mem_mb=96000" in out and "runtime=720" in out  # paper.yaml's resources reach the jobs
    assert "--gres" not in out and "slurm_extra" not in out
    assert gpus["table"] == {""} and gpus["fig1"] == {""}  # tables and figures: localrules, no allocation
    rc, out = dry_run(workdir, "all", "--profile", profile)  # the CPU default: no job asks for a GPU
    assert rc == 0, out[-2000:]
    assert all(v == {"0"} for r, v in resources(out).items() if "" not in v)


def test_local_gpu_profile_runs_the_rules_on_cuda(workdir):
    rc, out = dry_run(workdir, "results/tables/table2.csv", "--profile", str(ROOT / "profiles/local-gpu"))
    assert rc == 0, out[-2000:]
    cmds = re.findall(r"prunenet (?:train|prune|evaluate) .*", out)
    assert cmds and all("--device cuda" in c for c in cmds)
    assert resources(out)["evaluate"] == {"1"}


def test_conda_env_pins_equal_the_install_pins():
    env = yaml.safe_load((ROOT / "envs/prunenet.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    reqs = [
        line.strip()
        for line in (ROOT / "envs/requirements.txt").read_text().splitlines()
        if line.strip()[:1] not in "#"
    ]
    torch_pin = re.search(r"PRUNENET_TORCH:-([^}]+)\}", (ROOT / "envs/install.sh").read_text()).group(1)
    assert pip == [torch_pin, *reqs]
    # and the installed versions are the pinned ones
    from importlib.metadata import version

    for spec in pip:
        if "==" in spec:
            name, pinned = re.sub(r"\[.*\]", "", spec).split("==")
            assert version(name).split("+")[0] == pinned, name  # torch: 2.13.0+cpu is the 2.13.0 CPU build


def _shell_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "-m prunenet" in line]


OFFICIAL = "-official-init-official-update-official-lr0.001-t"  # the default policy's id between state and ratio


def test_the_ablation_targets_run_the_settings_they_compare(workdir):
    rc, out = dry_run(workdir, *(f"results/tables/table{n}.csv" for n in (7, 10, 13, 16, 17, 18, 19)))
    assert rc == 0, out
    lines = _shell_lines(out)
    trained = {m[1] for line in lines if (m := re.search(r"policies/smollm2-135m/(\S+)/s0\.safetensors ", line))}
    # T18's AD and T19's FFN2 policies beside the configured KS/FFN1 ones, T13's at 0.5, T7's at the mean 0.2
    for r in ("0.1", "0.2", "0.3"):
        assert {f"ks-first{OFFICIAL}{r}", f"ad-first{OFFICIAL}{r}", f"ks-down{OFFICIAL}{r}"} <= trained
    assert f"ks-first{OFFICIAL}0.5" in trained
    calib = [line for line in lines if "--method slicegpt" in line]
    # T10: SliceGPT on both corpora, each in its own path, at every ratio; T13: WikiText-2 at 0.5
    for c in ("wikitext2", "alpaca"):
        for r in ("0.1", "0.2", "0.3"):
            assert any(f"slicegpt/{c}/r{r}-s0 " in line and f"--calib-dataset {c}" in line for line in calib)
    assert any("slicegpt/wikitext2/r0.5-s0 " in line for line in calib)
    schedule = [line for line in lines if "--ratio shuffled:0:0.4 " in line]
    assert schedule and all(f"ks-first{OFFICIAL}0.2" in line for line in schedule)  # trained at the mean ratio
    assert jobs(out)["table"] == 7


def test_a_second_model_family_runs_every_method_but_the_ones_that_refuse_it(workdir):
    """config/gemma3.yaml: Gemma-3 beside SmolLM2; SliceGPT refuses Gemma-3, so it runs on SmolLM2 only and the
    tables that would show it say so."""
    rc, out = dry_run(
        workdir,
        "results/tables/table21.csv",
        "results/tables/table22.csv",
        "results/tables/table4.csv",
        "--configfile",
        str(ROOT / "config/gemma3.yaml"),
    )
    assert rc == 0, out
    lines = _shell_lines(out)
    assert any("--method prunenet" in x and "gemma3-270m/prunenet/" in x for x in lines)
    assert any("--method shortgpt" in x and "results/models/gemma3-270m/shortgpt/" in x for x in lines)
    assert not any("gemma3-270m/slicegpt" in x for x in lines)
    assert any("results/models/smollm2-135m/slicegpt/" in x for x in lines)
    reports = {re.search(r"report (\w+) ", x)[1]: x for x in lines if "prunenet report" in x}
    for table in ("table22", "table4"):
        assert "Not run: slicegpt on gemma3-270m" in reports[table], table
    assert "Not run" not in reports["table21"]


def test_the_configured_dtype_reaches_every_compressing_command(workdir):
    """train, prepare, prune and sweep load the model in the config's dtype; at the default (auto, the CLI's own
    default) the flag is not rendered, so a default run's commands read as before."""
    targets = ("results/tables/baselines.csv", "results/figures/ppl_vs_ratio_smollm2-135m.png")
    compressing = re.compile(r"prunenet (train|prepare|prune|sweep) ")
    for value, expected in (("auto", None), ("bfloat16", "--dtype bfloat16 ")):
        rc, out = dry_run(workdir, *targets, "--config", f"dtype={value}")
        assert rc == 0, out[-2000:]
        lines = [x for x in _shell_lines(out) if compressing.search(x)]
        assert {compressing.search(x)[1] for x in lines} == {"train", "prepare", "prune", "sweep"}
        for line in lines:
            assert (expected in line) if expected else ("--dtype" not in line), line
