"""Table 9's measurements: the timed generation is greedy generation, tokens/s are tokens over time, speed-ups
are ratios to dense, and FFN widths rounded to a multiple keep the budget formula exact."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict

import pandas as pd
import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForCausalLM

from prunenet import speed as speed_mod
from prunenet.budget import ffn_rows_budget
from prunenet.policy import n_keep
from prunenet.slicing import plan_rows, prune_ffn
from prunenet.speed import SpeedSettings, generate_once, measure, spread
from prunenet.stats import count_params, flops_per_token

VOCAB = 256


def tiny(family: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(family, VOCAB), dtype=torch.float32).eval()


@pytest.mark.parametrize("family", ["llama", "opt", "phi"])
def test_timed_generation_is_greedy_generation(family):
    model = tiny(family)
    ids = torch.randint(0, VOCAB, (3, 12), generator=torch.Generator().manual_seed(1))
    _, _, got = generate_once(model, ids, gen_len=6)
    want = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert torch.equal(got, want[:, ids.shape[1] :])


def test_tokens_per_second_are_tokens_over_time(monkeypatch):
    clock = iter(range(10_000))  # every perf_counter() call advances one second
    monkeypatch.setattr(speed_mod.time, "perf_counter", lambda: float(next(clock)))
    st = SpeedSettings(batch_sizes=(1, 4), prompt_len=10, gen_len=5, warmup=1, repeats=3)
    res = measure(tiny(), VOCAB, st)
    for b in (1, 4):
        cell = res.cells[f"b{b}"]
        assert cell["prefill_tok_s"]["values"] == [b * 10 / 1.0] * 3  # one tick between the prefill timers
        assert cell["decode_tok_s"]["values"] == [b * 4 / 1.0] * 3  # gen_len - 1 decoded tokens, one tick
    assert res.flops_per_token == flops_per_token(tiny(), 15)
    assert res.settings["repeats"] == 3


def test_spread_is_median_and_quartiles():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    s = spread(values)
    q = statistics.quantiles(values, n=4, method="inclusive")
    assert (s["median"], s["q1"], s["q3"], s["min"], s["max"]) == (3.0, q[0], q[2], 1.0, 5.0)


@pytest.mark.parametrize(
    ("n", "ratio", "multiple", "want"),
    [(1536, 0.3, 1, 1075), (1536, 0.3, 8, 1072), (1536, 0.3, 64, 1088), (96, 0.9, 64, 64), (96, 0.1, 64, 64)]
    + [(128, 0.1, 64, 128)],  # the nearest multiple may be the full width: nothing is removed
)
def test_kept_rows_round_to_the_multiple(n, ratio, multiple, want):
    assert n_keep(n, ratio, multiple) == want


@pytest.mark.parametrize("family", ["llama", "opt", "phi"])
def test_rounded_widths_keep_the_budget_formula(family):
    model = tiny(family)
    dense = count_params(model)
    budget = ffn_rows_budget(model, 0.3, multiple=8)
    sizes = prune_ffn(model, plan_rows(model, "random", 0.3, seed=0, multiple=8))
    assert all(s % 8 == 0 for s in sizes) and sizes == [n_keep(96, 0.3, 8)] * 3
    assert dense - count_params(model) == budget


def _speed_json(tmp_path, name, model, method, ratio, meta):
    st = SpeedSettings(batch_sizes=(1, 2), prompt_len=8, gen_len=3, warmup=0, repeats=2)
    res = measure(model, VOCAB, st)
    path = tmp_path / f"{name}.json"
    run = {"model": "tiny", "method": method, "setting": "default", "ratio": ratio, "seed": 0, "meta": meta}
    path.write_text(json.dumps(run | {"dtype": "float32", "speed": asdict(res)}))
    return path, res


def test_table9_speedups_are_ratios_to_dense(tmp_path):
    from prunenet.reporting import REPORTS

    dense_model = tiny()
    dense, dres = _speed_json(tmp_path, "dense", dense_model, "dense", 0.0, {"params": count_params(dense_model)})
    pruned_model = tiny()
    prune_ffn(pruned_model, plan_rows(pruned_model, "random", 0.5, seed=0))
    meta = {"params": count_params(pruned_model), "compress_seconds": 2.5, "policy_train_seconds": 10.0}
    pruned, pres = _speed_json(tmp_path, "pruned", pruned_model, "prunenet", 0.5, meta)
    written = REPORTS["table9"]([str(dense), str(pruned)], tmp_path / "t9.csv", tmp_path / "t9.md")
    df = pd.read_csv(written[0])
    assert len(df) == 4  # 2 checkpoints x 2 batch sizes
    for b in (1, 2):
        row = df[(df.method == "prunenet") & (df.batch_size == b)].iloc[0]
        d, p = dres.cells[f"b{b}"], pres.cells[f"b{b}"]
        # the CSV keeps 3 decimals: a measured ratio of 0.337 is 0.33696 to within half of its last digit
        rounded = {"rel": 1e-4, "abs": 5e-4}
        assert row["decode_speedup"] == pytest.approx(
            p["decode_tok_s"]["median"] / d["decode_tok_s"]["median"], **rounded
        )
        assert row["prefill_speedup"] == pytest.approx(
            p["prefill_tok_s"]["median"] / d["prefill_tok_s"]["median"], **rounded
        )
        assert row["ideal_speedup"] == pytest.approx(dres.flops_per_token / pres.flops_per_token, **rounded)
        assert row["compress_seconds"] == pytest.approx(12.5)  # policy training + slicing
        assert df[(df.method == "dense") & (df.batch_size == b)]["decode_speedup"].iloc[0] == pytest.approx(1.0)
    assert "(a) Compression time" in (tmp_path / "t9.md").read_text()
    REPORTS["speedup"]([str(dense), str(pruned)], tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_speed_cli_writes_the_protocol_and_the_checkpoint_record(tmp_path, tokenizer, monkeypatch):
    from prunenet.cli import main
    from prunenet.models import save_checkpoint

    monkeypatch.setenv("PRUNENET_MLFLOW", "0")
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tokenizer)), dtype=torch.float32)
    save_checkpoint(model, tokenizer, tmp_path / "m")
    argv = ["speed", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "s.json"), "--batch-sizes", "1"]
    assert main(argv + ["--prompt-len", "4", "--gen-len", "2", "--repeats", "2", "--warmup", "0"]) in (0, None)
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["method"] == "dense" and out["speed"]["settings"]["repeats"] == 2
    assert len(out["speed"]["cells"]["b1"]["decode_tok_s"]["values"]) == 2
    assert out["speed"]["flops_per_token"] == flops_per_token(model, 6)


def test_git_commit_names_the_checkout_and_its_changes(tmp_path):
    import subprocess

    from prunenet.provenance import as_params, git_commit, provenance

    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True, text=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = git("rev-parse", "HEAD").stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "f.txt").write_text("b")
    assert git_commit(tmp_path) == head + "+dirty"
    assert git_commit(tmp_path / "nonexistent") is None
    params = as_params(provenance())
    assert params["prov.torch"] == torch.__version__ and "prov.versions" not in params
