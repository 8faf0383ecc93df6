"""End to end: the Snakemake DAG on a tiny config builds table2.csv from real lm-eval outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from prunenet.choices import PRESETS
from prunenet.models import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *targets: str, extra: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",  # two jobs at once, as the README's command on a 2-core machine: parallel jobs must not collide
        *(extra or []),
        *targets,
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the workflow's own store
    env |= {"OMP_NUM_THREADS": "1"}
    # a hang guard, not a speed target: on the CI machine `all` runs past 25 min
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)


def write_config(workdir: Path, model_dir: Path, data_dir: Path, **overrides) -> None:
    cfg = {
        "models": {"tiny": str(model_dir)},
        "device": "cpu",
        "seeds": [0, 1],
        "calibration_seeds": "first",  # one calibration draw (the default re-draws per seed): suite time
        "bootstrap": 2000,  # suite time (the default, 5000, is what the docs' runs use)
        "data_dir": str(data_dir),
        # the paper's loop with a baseline (the default's released loop runs in test_shipped_configs' `all`)
        "policy": {**PRESETS["paper"], "episodes": 3, "baseline": "loo", "samples": 2},
        "transfer": [{"from": 0.5, "to": [0.25]}],
        "sweep": {"ratios": [0.25, 0.5], "methods": ["prunenet", "laco"]},  # laco: method options reach the sweep
        "prune": {
            "ratios": [0.25, 0.5],
            "methods": ["prunenet", "slicegpt", "shortgpt"],
            "schedules": ["linear:0.2:0.6"],
        },
        "slicegpt": {"calib_samples": 4, "calib_seq_len": 64},
        "shortgpt": {"calib_samples": 2, "calib_seq_len": 32},
        "laco": {"calib_samples": 2, "calib_seq_len": 32, "lowest": 0, "keep_last": 0},  # 3 layers
        "svd-llm": {"calib_samples": 2, "calib_seq_len": 32},
        "asvd": {"calib_samples": 2, "calib_seq_len": 32},
        "llm-pruner": {"calib_samples": 2, "calib_seq_len": 32, "first": 1, "last": 0},  # 3 layers
        "llm-surgeon": {"calib_samples": 2, "calib_seq_len": 32, "shots": 2},
        "compare": {
            "table4": ["prunenet", "slicegpt", "shortgpt", "laco"],
            "table5": ["prunenet", "svd-llm", "asvd", "llm-pruner"],
            "baselines": ["prunenet", "slicegpt", "shortgpt", "laco", "svd-llm", "asvd", "llm-pruner", "llm-surgeon"],
        },
        "evaluate": {
            "tasks": ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"],
            "limit": 3,
            "batch_size": 4,
            "ppl_blocks": 2,
            "ppl_seq_len": 64,
            "ppl_datasets": ["wikitext2", "ptb"],
        },
        "rft": {"ratios": [0.5], "sizes": [16], "table_size": 16, "seq_len": 64, "batch_size": 4, "eval_every": 1},
        "keep_checkpoints": True,  # the assertions below read the checkpoints' metadata
        # T7's uniform rows at the schedule's mean (0.25) and T13's high ratio are Table 2's own runs
        "ablations": {"ratios": [0.5], "schedule": "shuffled:0:0.5", "high_ratio": 0.5},
        "mmlu": {"subjects": ["abstract_algebra", "formal_logic"], "limit": 3},
        "attention": {"ratios": [0.5]},  # Table 20 at one ratio: the suite's time
    } | overrides
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer):
    import torch
    from conftest import tiny_config
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tokenizer)))
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    save_checkpoint(model, tokenizer, path)
    return path


def test_config_schema_rejects_unknown_key(tmp_path, tiny_dir, data_dir):
    write_config(tmp_path, tiny_dir, data_dir, pruning={"ratio": 0.3})
    res = snakemake(tmp_path, "-n")
    assert res.returncode != 0 and "pruning" in (res.stdout + res.stderr)
    write_config(tmp_path, tiny_dir, data_dir, prune={"ratios": [1.5], "methods": ["prunenet"]})
    res = snakemake(tmp_path, "-n")
    assert res.returncode != 0 and "1.5" in (res.stdout + res.stderr)
    write_config(tmp_path, tiny_dir, data_dir, policy={**PRESETS["paper"], "baseline": "loo", "samples": 1})
    res = snakemake(tmp_path, "-n")
    assert res.returncode != 0 and "less than the minimum of 2" in (res.stdout + res.stderr)


def test_final_output_follows_the_config(tmp_path, tiny_dir, data_dir):
    """`all` asks for RFT targets only when an rft section is configured; every method runs through `prune`."""
    write_config(tmp_path, tiny_dir, data_dir)
    with_rft = snakemake(tmp_path, "-n", "all")
    assert with_rft.returncode == 0, with_rft.stderr[-2000:]
    assert "fig3_rft_size.png" in with_rft.stdout and "table8.csv" in with_rft.stdout
    # Tables 11/12 need the rft section, Tables 14/15 a large_model (unset here)
    assert "table11.csv" in with_rft.stdout and "table12.csv" in with_rft.stdout and "table14" not in with_rft.stdout
    cfg = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    del cfg["rft"]
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plain = snakemake(tmp_path, "-n", "-p", "all")
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "table2.csv" in plain.stdout and "fig1_ecdf_tiny.png" in plain.stdout
    # (no bare "rft": the checkout's own path may hold it)
    assert "results/rft/" not in plain.stdout and "evaluate_rft" not in plain.stdout
    assert "table3" not in plain.stdout and "table11" not in plain.stdout
    assert (
        "prunenet prune" in plain.stdout and "--method slicegpt" in plain.stdout and "--calib-samples 4" in plain.stdout
    )


def test_baselines_default_to_every_registered_method(tmp_path, tiny_dir, data_dir):
    """compare.baselines null = every registered method; sweep.methods null adds the compare tables' methods."""
    from prunenet.methods import METHODS

    write_config(tmp_path, tiny_dir, data_dir, compare={"baselines": None}, sweep={"ratios": [0.25]})
    res = snakemake(tmp_path, "-n", "-p", "results/tables/baselines.csv", "results/figures/ppl_vs_ratio_tiny.png")
    assert res.returncode == 0, res.stderr[-2000:]
    for name, method in METHODS.items():  # prunenet-attention has its own budget (attention groups): Table 20 only
        assert (f"results/eval/tiny/{name}/" in res.stdout) == method.same_budget, name
        assert (f"results/sweep/tiny/{name}/s0.json" in res.stdout) == method.same_budget, name
    assert "--laco-threshold 0.65" in res.stdout and "--asvd-alpha 0.5" in res.stdout  # schema defaults reach the CLI


def test_missing_data_dir_is_named(tmp_path, tiny_dir):
    write_config(tmp_path, tiny_dir, tmp_path / "no-such-data")
    res = snakemake(tmp_path, "-n")
    assert res.returncode != 0 and "no-such-data" in res.stdout + res.stderr


def test_end_to_end_all(tmp_path, tiny_dir, data_dir, monkeypatch):
    write_config(tmp_path, tiny_dir, data_dir)
    res = snakemake(tmp_path, "all")
    assert res.returncode == 0, res.stderr[-4000:]
    full = pd.read_csv(tmp_path / "results/tables/table2.csv")
    table, per_seed = full[full["row"] == "mean"], full[full["row"] == "seed"]
    assert len(table) == 1 + 3 * 2 + 1  # dense + 3 methods × 2 ratios + the per-layer schedule (prunenet only)
    # seeds: 2 for the stochastic prunenet, 1 for dense, SliceGPT and ShortGPT (calibration_seeds: first)
    assert len(per_seed) == 1 + 2 * 2 + 2 * 1 + 2 * 1 + 2
    assert set(table["method"]) == {"dense", "prunenet", "slicegpt", "shortgpt"}
    for _, row in per_seed[per_seed["method"] != "dense"].iterrows():  # the pruned model's seed, not lm-eval's
        assert row["seed"] == int(re.search(r"-s(\d+)\.json$", row["source"]).group(1)), row["source"]
    assert per_seed[per_seed["method"] == "dense"]["seed"].isna().all()  # the dense model has no draw
    short = tmp_path / "results/models/tiny/shortgpt/wikitext2/r0.5-s0"  # fewer layers, a plain HF checkpoint
    short_meta = json.loads((short / "prunenet_meta.json").read_text())
    assert short_meta["calib_samples"] == 2 and short_meta["calib_seq_len"] == 32
    short_cfg = json.loads((short / "config.json").read_text())
    assert short_cfg["num_hidden_layers"] == 3 - len(short_meta["removed_layers"])
    scheduled = table[table["schedule"] == "linear:0.2:0.6"]
    assert len(scheduled) == 1 and scheduled["ratio"].iloc[0] == pytest.approx(0.4)  # mean over the 3 layers
    assert scheduled["setting"].iloc[0] == "ks-up-paper-loo2-t0.4"  # train_ratio same: the schedule's mean
    tasks = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"]
    for _, row in per_seed.iterrows():  # every number came from an lm-eval output file
        ev = json.loads(Path(tmp_path / row["source"]).read_text())
        for t in tasks:
            assert row[t] == pytest.approx(100 * ev["tasks"][t]["primary"], abs=1e-3)
            assert ev["tasks"][t]["n"] == 3 and len(ev["tasks"][t]["items"]["doc_id"]) == 3
        assert row["avg"] == pytest.approx(sum(row[t] for t in tasks) / 5, abs=1e-3)
        assert row["ppl_ptb"] == pytest.approx(ev["perplexity"]["ptb"]["ppl"], rel=1e-3)
    for _, row in table.iterrows():  # mean rows are the mean of their seeds
        seeds = per_seed[(per_seed["method"] == row["method"]) & (per_seed["ratio"] == row["ratio"])]
        seeds = seeds[seeds["schedule"] == row["schedule"]]
        assert len(seeds) == row["seeds"] and row["avg"] == pytest.approx(seeds["avg"].mean(), abs=1e-3)
    dense = table[table["method"] == "dense"].iloc[0]
    assert dense["avg_recovery"] == pytest.approx(100.0)
    md = (tmp_path / "results/tables/table2.md").read_text()
    assert "One-sided KS test" in md and "Paired differences" in md
    pairs = pd.read_csv(tmp_path / "results/tables/pairs.csv")
    assert set(pairs["task"]) == set(tasks) | {"avg"} and (pairs["ci_lo"] <= pairs["ci_hi"]).all()
    t6 = pd.read_csv(tmp_path / "results/tables/table6.csv")
    assert t6[["policy_ratio", "ratio", "seeds"]].values.tolist() == [[0.5, 0.25, 2]]
    assert (tmp_path / "results/figures/ppl_vs_ratio_tiny.png").stat().st_size > 10_000
    # the baseline tables: the paper's task columns, every method on PruneNet's parameter budget, compression time
    t4 = pd.read_csv(tmp_path / "results/tables/table4.csv")
    assert set(t4["method"]) == {"dense", "prunenet", "slicegpt", "shortgpt", "laco"}
    assert {"piqa", "hellaswag"} <= set(t4.columns) and "winogrande" not in t4.columns
    t5 = pd.read_csv(tmp_path / "results/tables/table5.csv")
    assert set(t5["method"]) == {"dense", "prunenet", "svd-llm", "asvd", "llm-pruner"}
    base = pd.read_csv(tmp_path / "results/tables/baselines.csv")
    assert set(base["method"]) == {"dense", "prunenet", "slicegpt", "shortgpt", "laco", "svd-llm", "asvd"} | {
        "llm-pruner",
        "llm-surgeon",
    }
    pruned = base[base["method"] != "dense"]
    assert (pruned["compress_seconds"] > 0).all()  # (a 3-layer model: the layer methods may remove none at 0.25)
    assert (pruned["peak_memory_mb"] > 0).all()
    # ratio-independent stages ran once per model and seed (rule prepare) and served both ratios
    assert (tmp_path / "results/prepared/tiny/asvd/wikitext2/s0.safetensors").is_file()
    asvd_meta = json.loads((tmp_path / "results/models/tiny/asvd/wikitext2/r0.5-s0/prunenet_meta.json").read_text())
    assert asvd_meta["prepare_seconds"] > 0
    for ratio, rows in pruned.groupby("ratio"):  # the low-rank and group methods match PruneNet's size within 1 point
        ref = rows[rows["method"] == "prunenet"]["effective_sparsity"].iloc[0]
        for method in ("svd-llm", "asvd", "llm-pruner", "llm-surgeon"):
            assert abs(rows[rows["method"] == method]["effective_sparsity"].iloc[0] - ref) <= 1.0, (ratio, method)
    assert rows[rows["method"] == "prunenet"]["policy_seconds"].iloc[0] > 0
    assert "Against prunenet and dense" in (tmp_path / "results/tables/baselines.md").read_text()
    # the ablations: each variant's rows, the paired difference from the reference, SliceGPT's two corpora
    for name, labels in {
        "table7": ["uniform", "shuffled:0:0.5"],
        "table10": ["PruneNet", "SliceGPT (wikitext2)", "SliceGPT (alpaca)"],
        "table13": ["PruneNet", "SliceGPT"],
        "table16": ["Policy-based", "Random"],
        "table17": ["Stochastic", "Deterministic"],
        "table18": ["KS", "AD"],
        "table19": ["FFN1", "FFN2"],
        "presets": ["Official", "Paper"],
    }.items():
        ab = pd.read_csv(tmp_path / f"results/tables/{name}.csv")
        means = ab[ab["row"] == "mean"]
        assert list(means["variant"]) == ["Dense", *labels], name
        assert (means["variant"].isin(labels[1:]) == means["avg_diff"].notna()).all(), name
        for _, row in ab[ab["row"] == "seed"].iterrows():  # every number from the evaluation file it names
            ev = json.loads(Path(tmp_path / row["source"]).read_text())
            assert row["avg"] == pytest.approx(100 * np.mean([ev["tasks"][t]["primary"] for t in tasks]), abs=1e-3)
    # results/report.md lists every table and figure; Snakemake's own report embeds them with their captions
    report_md = (tmp_path / "results/report.md").read_text()
    for name in ("table2", "table4", "table9", "table18", "baselines"):
        assert f"- [{name}](tables/{name}.md): " in report_md and "**Result:**" in report_md
    assert "- [speedup_tiny.png](figures/speedup_tiny.png): " in report_md
    res = snakemake(tmp_path, "--report", "results/report.html", "all")  # the target named (else Snakemake 9.27's
    assert res.returncode == 0, res.stderr[-3000:]  # report of an up-to-date default target has no jobs and fails)
    assert "ERROR" not in res.stderr, res.stderr[-3000:]  # every caption is valid reStructuredText
    assert (tmp_path / "results/report.html").stat().st_size > 100_000
    t23 = pd.read_csv(tmp_path / "results/tables/table23.csv")  # MMLU subjects: own columns and average
    subjects = ["mmlu_abstract_algebra", "mmlu_formal_logic"]
    assert set(t23[t23["row"] == "mean"]["method"]) == {"dense", "prunenet"} and "piqa" not in t23.columns
    for _, row in t23[t23["row"] == "seed"].iterrows():
        ev = json.loads(Path(tmp_path / row["source"]).read_text())
        assert set(ev["tasks"]) == set(subjects) and ev["perplexity"] == {}
        assert row["avg"] == pytest.approx(50 * sum(ev["tasks"][t]["primary"] for t in subjects), abs=1e-3)
    t20 = pd.read_csv(tmp_path / "results/tables/table20.csv")  # attention pruning: each ratio, without and with RFT
    attn = t20[(t20["row"] == "mean") & (t20["method"] == "prunenet-attention")]
    assert sorted(zip(attn["ratio"], attn["rft"])) == [(0.5, "none"), (0.5, "wikitext2")]
    assert attn[attn["rft"] == "none"]["seeds"].item() == 2
    meta = json.loads(
        (
            tmp_path / "results/models/tiny/prunenet-attention/ks-qkv-paper-loo2-t0.5/r0.5-s1/prunenet_meta.json"
        ).read_text()
    )
    assert sum(meta["kv_heads"]) == 3 and min(meta["kv_heads"]) >= 1  # 3 of the 6 KV groups removed, none emptied
    t18 = pd.read_csv(tmp_path / "results/tables/table18.csv")
    assert set(t18[t18["variant"] == "AD"]["setting"]) == {"ad-up-paper-loo2-t0.5"}
    alpaca = json.loads((tmp_path / "results/models/tiny/slicegpt/alpaca/r0.5-s0/prunenet_meta.json").read_text())
    assert alpaca["calib_dataset"] == "alpaca"
    low_rank = json.loads((tmp_path / "results/models/tiny/svd-llm/wikitext2/r0.5-s0/config.json").read_text())
    assert low_rank["prunenet_low_rank"]  # the documented low-rank format, read by prunenet.models.load_model
    sweep = json.loads((tmp_path / "results/sweep/tiny/prunenet/s1.json").read_text())
    assert [p["ratio"] for p in sweep["points"]] == [0.25, 0.5]
    assert sweep["points"][0]["policy"].endswith("ks-up-paper-loo2-t0.25/s1.safetensors")
    t1 = pd.read_csv(tmp_path / "results/tables/table1.csv")
    assert (t1[t1.method == "prunenet"]["effective_sparsity"] > 0).all()
    assert (tmp_path / "results/figures/fig1_ecdf_tiny.png").stat().st_size > 10_000
    # every rule logged an MLflow run in the model's experiment
    import mlflow

    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri writes os.environ too: undone after the test
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"])
    stages = set(runs["tags.stage"])
    assert {"download", "train", "prune", "evaluate"} <= stages
    # jobs ran two at a time on one sqlite store: every job's run was recorded and finished
    assert (runs["status"] == "FINISHED").all(), runs[runs["status"] != "FINISHED"][["tags.stage", "status"]]
    bench = tmp_path / "results/benchmarks"  # one benchmark file per job that ran
    for stage, rule in [("train", "train_policy"), ("prune", "prune"), ("prepare", "prepare"), ("rft", "rft")]:
        assert (runs["tags.stage"] == stage).sum() == len(list((bench / rule).rglob("*.tsv"))), stage
    n_evals = sum(len(list((bench / r).rglob("*.tsv"))) for r in ("evaluate", "evaluate_rft", "evaluate_mmlu"))
    assert (runs["tags.stage"] == "evaluate").sum() == n_evals
    # provenance: every evaluation names its MLflow run, the configuration and the library versions
    import torch

    evals = [json.loads(p.read_text()) for p in (tmp_path / "results/eval").rglob("*.json")]
    ev_runs = runs[runs["tags.stage"] == "evaluate"].set_index("run_id")
    hashes = {e["provenance"]["config_hash"] for e in evals}
    assert len(hashes) == 1 and re.fullmatch(r"[0-9a-f]{16}", hashes.pop())
    for e in evals:
        prov = e["provenance"]
        assert prov["versions"]["torch"] == torch.__version__ and prov["batch_size"] == 4 and prov["limit"] == 3
        assert prov["metrics"]["piqa"] == "acc_norm" and prov["metrics"]["winogrande"] == "acc"
        run = ev_runs.loc[prov["mlflow_run_id"]]  # the run that logged this file
        assert run["params.prov.config_hash"] == prov["config_hash"] and run["params.prov.torch"] == torch.__version__
    train = runs[runs["tags.stage"] == "train"].iloc[0]
    assert len(mlflow.MlflowClient().get_metric_history(train.run_id, "penalty")) == 3
    policy_meta = json.loads((tmp_path / "results/policies/tiny/ks-up-paper-loo2-t0.25/s1.json").read_text())
    assert policy_meta["config"]["baseline"] == "loo" and policy_meta["config"]["samples"] == 2
    assert (policy_meta["config"]["ratio"], policy_meta["config"]["seed"]) == (0.25, 1)
    # the RFT stage: with/without table, loss curves from the per-run CSVs, the size sweep figure
    t3 = pd.read_csv(tmp_path / "results/tables/table3.csv")
    t3 = t3[t3["row"] == "mean"]
    tuned = t3[t3["rft"] == "wikitext2"]
    assert len(tuned) == 1 and tuned["rft_samples"].iloc[0] == 16 and (t3["rft"] == "none").sum() == 2
    run = "results/rft/tiny/prunenet/ks-up-paper-loo2-t0.5/r0.5-s0"  # the first seed is fine-tuned
    curve = pd.read_csv(tmp_path / f"{run}/wikitext2-n16.csv")
    assert set(curve["split"]) == {"train", "val"} and len(curve[curve.split == "train"]) == 4  # 16 samples / batch 4
    rft_eval = json.loads((tmp_path / run.replace("rft", "eval_rft", 1) / "wikitext2-n16.json").read_text())
    assert "validation" in rft_eval["meta"]["rft"]["train_source"]  # offline: no train split, said so
    for fig in ("fig3_rft_size.png", "fig4_rft_loss.png"):
        assert (tmp_path / "results/figures" / fig).stat().st_size > 10_000
    assert "rft" in set(mlflow.search_runs(experiment_names=["tiny"])["tags.stage"])
    # a second run has nothing to do
    again = snakemake(tmp_path, "all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_killed_rule_reruns_to_a_clean_finish(tmp_path, tiny_dir, data_dir, monkeypatch):
    """kill -9 of Snakemake and its running train_policy job; then the recovery docs/workflow.md describes: --unlock,
    rerun."""
    import signal
    import time

    write_config(
        tmp_path,
        tiny_dir,
        data_dir,
        seeds=[0],
        policy={**PRESETS["paper"], "episodes": 400},
        prune={"ratios": [0.5], "methods": ["prunenet"]},
        evaluate={"tasks": ["piqa"], "limit": 2, "batch_size": 4, "ppl_blocks": 1, "ppl_seq_len": 64},
        keep_checkpoints=False,
    )
    target = "results/tables/table2.csv"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, target], env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = tmp_path / "results/logs/train_policy/tiny/ks-up-paper-t0.5/s0.log"
    deadline = time.time() + 600
    while not (log.is_file() and "policy r=0.5" in log.read_text(errors="replace")):  # training is under way
        assert proc.poll() is None and time.time() < deadline, "train_policy never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the kill landed during training: the policy (written atomically at the end of its 400 episodes) is not there
    assert not (tmp_path / "results/policies/tiny/ks-up-paper-t0.5/s0.json").exists()
    # a killed writer's temp output, as a kill during the checkpoint's save leaves it
    stale = tmp_path / "results/models/tiny/prunenet/ks-up-paper-t0.5/.r0.5-s0.tmp-killed"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")

    locked = subprocess.run([*cmd, target], env=env, capture_output=True, text=True, timeout=600)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # the lock says what to run
    assert subprocess.run([*cmd, "--unlock"], env=env, capture_output=True, timeout=600).returncode == 0
    res = subprocess.run([*cmd, target], env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]

    assert (tmp_path / target).is_file()
    assert not [p for p in (tmp_path / "results").rglob("*") if ".tmp-" in p.name]  # nothing stale left
    assert not (tmp_path / "results/models/tiny/prunenet").exists() or not any(
        (tmp_path / "results/models/tiny/prunenet").rglob("*.safetensors")
    )  # keep_checkpoints false: the evaluated checkpoint was a temp() output
    policy = json.loads((tmp_path / "results/policies/tiny/ks-up-paper-t0.5/s0.json").read_text())
    assert len(policy["history"]) == 400  # retrained from scratch, whole
    import mlflow

    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"])
    assert set(runs["status"]) == {"FINISHED", "KILLED"}  # the killed training run did not stay RUNNING
    killed = runs[runs["status"] == "KILLED"]
    assert list(killed["tags.stage"]) == ["train"]
