"""benchmarks/scale_rehearsal.py: its extrapolation arithmetic by hand, the settings it reads from paper.yaml, an end
to end run on the tiny shape, the headline, and gpu_smoke.py's ``--rehearsal`` argument handling (no GPU here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_smoke  # noqa: E402
import scale_rehearsal  # noqa: E402
from rehearsal_fit import FIT_LIMIT, Prediction, fit, fit_tail, headline, mean_per_layer, predict  # noqa: E402

PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
HEADLINE = re.compile(r"^methods predicted to fit 24 GB at (?P<shape>.+) bf16: (?P<k>\d+) of (?P<n>\d+)$")


def test_fit_and_prediction_match_a_hand_computation():
    # time (s) at (layers, units): n=1: 10 at L2, 14 at L4 -> 6 + 2L; n=2: 12, 18 -> 6 + 3L
    seconds = fit({(2, 1): 10.0, (4, 1): 14.0, (2, 2): 12.0, (4, 2): 18.0})
    assert (seconds.a, seconds.b, seconds.c, seconds.d) == pytest.approx((6, 1, 0, 1))  # 6 + L + 0·n + L·n
    memory = fit({(2, 1): 5.0, (4, 1): 9.0})  # peak bytes, a line in layers: 1 + 2L
    assert (memory.a, memory.b) == pytest.approx((1, 2))
    weights = fit({(2, 1): 4.0, (4, 1): 6.0})  # 2 + L
    whole = predict(seconds, memory, weights, 32, 10, layer_by_layer=False, multiplier=3)
    assert whole.seconds == pytest.approx(3 * (6 + 32 + 320))
    assert whole.peak_fp32 == pytest.approx(1 + 64)
    assert whole.peak_bf16 == pytest.approx(65 - 34 / 2)  # the 32 layers' weights at half their bytes
    assert whole.host_bf16 == 0
    one = predict(seconds, memory, weights, 32, 10, layer_by_layer=True)
    assert one.peak_fp32 == pytest.approx(1 + 2)  # fixed + one layer
    assert one.peak_bf16 == pytest.approx(3 - 3 / 2)
    assert one.host_bf16 == pytest.approx(34 / 2)  # the model waits on the host in bfloat16
    held = predict(seconds, memory, weights, 32, 10, layer_by_layer=False, host_per_layer=0.5)
    assert (held.peak_fp32, held.host_bf16) == pytest.approx((65 - 16, 16))  # statistics counted on the host
    assert seconds.per_layer(10) == pytest.approx(11)


def test_tail_fit_matches_a_hand_computation():
    """ASVD's time: y = 5 + 3L + n·(2L + L(L+1)/2); from L 1, 2 and n 1, 2 the fit recovers every coefficient, and
    the 32-layer prediction counts 528 block passes per window where a bilinear fit through the same points has 64."""
    points = {(1, 1): 11.0, (1, 2): 14.0, (2, 1): 18.0, (2, 2): 25.0}
    tail = fit_tail(points)
    assert (tail.a, tail.b, tail.f, tail.e) == pytest.approx((5, 3, 2, 1))
    assert tail(32, 10) == pytest.approx(5 + 96 + 10 * (64 + 528))
    assert mean_per_layer(tail, 32, 10) == pytest.approx((96 + 10 * (64 + 528)) / 32)
    assert fit(points)(32, 10) < tail(32, 10)  # the linear fit would miss the quadratic part
    assert mean_per_layer(fit(points), 32, 10) == pytest.approx(fit(points).per_layer(10))
    with pytest.raises(ValueError, match="full grid"):
        fit_tail({(1, 1): 1.0, (2, 1): 2.0})


def test_host_statistics_are_the_methods_float64_buffers():
    """LLaMA-2-7B per layer: LLM-Pruner sums every projection weight's gradient (q, k, v, o: 4096²; gate, up,
    down: 4096 × 11008), LLM Surgeon holds A (in × in) and G (out × out) of down and o, all in float64."""
    host = scale_rehearsal.host_state_per_layer
    assert host("llm-pruner", "llama2-7b", {}) == 8 * (4 * 4096**2 + 3 * 4096 * 11008)
    assert host("llm-pruner", "llama2-7b", {"importance": "element2"}) == 16 * (4 * 4096**2 + 3 * 4096 * 11008)
    assert host("llm-surgeon", "llama2-7b", {"structures": "ffn+attention"}) == 8 * (11008**2 + 3 * 4096**2)
    assert host("llm-surgeon", "llama2-7b", {"structures": "ffn"}) == 8 * (11008**2 + 4096**2)
    assert host("slicegpt", "llama2-7b", {}) == 0


def test_fit_refuses_an_incomplete_grid():
    with pytest.raises(ValueError, match="full grid"):
        fit({(2, 1): 1.0, (4, 1): 2.0, (2, 2): 3.0})


def test_headline_counts_methods_at_or_under_24_gb():
    preds = {
        "a": Prediction(1.0, 0.0, FIT_LIMIT),
        "b": Prediction(1.0, 0.0, FIT_LIMIT + 1),
        "c": Prediction(1.0, 0.0, 1e9),
    }
    line = headline(preds, "LLaMA-2-7B")
    assert line == "methods predicted to fit 24 GB at LLaMA-2-7B bf16: 2 of 3"
    assert HEADLINE.match(line)


def test_plans_read_paper_yaml_settings():
    cfg = scale_rehearsal.paper_config()
    slice_ = scale_rehearsal.plan("slicegpt", cfg)
    s = PAPER["slicegpt"]
    assert slice_.knob == "--calib-samples" and slice_.target == s["calib_samples"] * s["calib_seq_len"] / 128
    assert slice_.prune["--slicegpt-budget"] == s["budget"]
    # LaCo's walk (merge 4 above layer 2, the top layer kept) removes floor(0.3 L) >= 1 layers from 7 layers up
    assert scale_rehearsal.layer_counts("laco", cfg, [2, 4]) == [7, 8]
    assert scale_rehearsal.layer_counts("laco", cfg, [8, 10]) == [8, 10]
    assert scale_rehearsal.layer_counts("shortgpt", cfg, [2, 4]) == [2, 4]
    surgeon = scale_rehearsal.plan("llm-surgeon", cfg)
    assert surgeon.multiplier == ("--llm-surgeon-shots", PAPER["llm-surgeon"]["shots"])
    assert surgeon.units == (1, 64) and surgeon.prune["--llm-surgeon-activations"] == "host"
    assert scale_rehearsal.plan("svd-llm", cfg).units == (1, 64)  # its SVDs' spread hid 7 windows' cost
    asvd = scale_rehearsal.plan("asvd", cfg)
    assert asvd.depth == ("tail" if PAPER["asvd"]["sensitivity"] == "ppl" else "linear")
    assert surgeon.prune["--llm-surgeon-shots"] == "1" and surgeon.prune["--llm-surgeon-structures"] == "ffn+attention"
    pol = scale_rehearsal.plan("prunenet", cfg)
    assert pol.knob == "--episodes" and pol.target == PAPER["policy"]["episodes"]
    assert pol.train["--ratio"] == "0.3" and pol.train["--penalty"] == PAPER["policy"]["penalty"]
    prune_argv, train_argv = pol.argv(2, "tiny", "cpu")
    assert train_argv[train_argv.index("--episodes") + 1] == "2"


def test_end_to_end_on_the_tiny_shape(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/scale_rehearsal.py"), "--shape", "tiny", "--methods", "random"]
    res = subprocess.run(cmd + ["llm-pruner", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    m = HEADLINE.match(lines[-1])
    assert m and m["shape"] == "tiny" and m["n"] == "2", lines[-1]
    data = json.loads(out.read_text())["methods"]
    # tiny LlamaConfig: embeddings and head 256x64 each; per layer q,k,v,o 64x64, gate/up/down 64x160, two norms
    per_layer = 4 * 64 * 64 + 3 * 64 * 160 + 2 * 64
    for name in ("random", "llm-pruner"):
        cases = data[name]["cases"]
        assert set(cases) == {"L2-n1", "L4-n1"}  # neither scales a setting
        for c in cases.values():
            assert c["params"] == 2 * 256 * 64 + 64 + c["layers"] * per_layer
            assert c["params_after"] < c["params"]  # the method pruned
            assert c["cpu_s"] > 0 and c["peak_rss"] > c["base_rss"]
        assert data[name]["summary"]["params_target"] == pytest.approx(2 * 256 * 64 + 64 + 32 * per_layer)
    assert "| llm-pruner | as configured; all layers pruned" in res.stdout
    # --merge: two runs' files printed as one (here one run split in two): the same table, nothing measured
    one, two = tmp_path / "a.json", tmp_path / "b.json"
    full = json.loads(out.read_text())
    for f, name in ((one, "random"), (two, "llm-pruner")):
        f.write_text(json.dumps(full | {"methods": {name: full["methods"][name]}}))
    res2 = subprocess.run(cmd[:2] + ["--merge", str(one), str(two)], capture_output=True, text=True, timeout=120)
    assert res2.returncode == 0 and res2.stdout == res.stdout, res2.stderr[-3000:]
    # a method's layer counts measured apart (--layers 2, --layers 4) are joined into one row
    for f, layers in ((one, 2), (two, 4)):
        part = {
            n: m | {"cases": {k: c for k, c in m["cases"].items() if c["layers"] == layers}} for n, m in data.items()
        }
        f.write_text(json.dumps(full | {"methods": part}))
    res4 = subprocess.run(cmd[:2] + ["--merge", str(one), str(two)], capture_output=True, text=True, timeout=120)
    assert res4.returncode == 0 and res4.stdout == res.stdout, res4.stderr[-3000:]
    (tmp_path / "c.json").write_text(json.dumps(full | {"shape": "phi-2"}))
    res3 = subprocess.run(cmd[:2] + ["--merge", str(one), str(tmp_path / "c.json")], capture_output=True, text=True)
    assert res3.returncode == 2 and "one shape and device" in res3.stderr


def test_gpu_smoke_rehearsal_arguments(monkeypatch, tmp_path, capsys):
    # gpu_smoke.main turns tracking off in os.environ (PRUNENET_MLFLOW=0): keep that out of later tests, whose
    # Snakemake runs would otherwise log no MLflow run (test_workflow.py failed so in a full-suite run)
    for name in ("PRUNENET_MLFLOW", "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as exc:
        gpu_smoke.parse_args([])
    assert exc.value.code == 2 and "--tokenizer DIR and --data-dir DIR (or pass --rehearsal)" in capsys.readouterr().err
    seen = []
    monkeypatch.setattr(scale_rehearsal, "main", lambda argv: seen.append(argv) or 0)
    args = ["--rehearsal", "--rehearsal-shape", "tiny", "--rehearsal-layers", "1", "3", "--out", str(tmp_path)]
    assert gpu_smoke.main([*args, "--device", "cpu", "--allow-cpu"]) == 0
    want = ["--device", "cpu", "--shape", "tiny", "--layers", "1", "3", "--out", str(tmp_path / "rehearsal.json")]
    assert seen == [want]
    import torch

    if not torch.cuda.is_available():  # here: refused in one line before anything runs
        assert gpu_smoke.main(["--rehearsal"]) == 2
        assert "torch sees no CUDA device" in capsys.readouterr().out
        assert len(seen) == 1


def test_every_policy_method_plan_passes_the_train_checks():
    """Each policy method's rehearsal trains with the flags the workflow would give it under paper.yaml: the train
    command's parser and config checks accept them (prunenet-attention's attention state needs the paper's update,
    which the default preset does not use)."""
    from dataclasses import fields

    from prunenet.cli import build_parser
    from prunenet.methods import METHODS
    from prunenet.policy_training import check_train_config
    from prunenet.training import TrainConfig

    cfg = scale_rehearsal.paper_config()
    policy_methods = [name for name, m in METHODS.items() if m.needs_policy]
    assert "prunenet-attention" in policy_methods
    for name in policy_methods:
        _, train_argv = scale_rehearsal.plan(name, cfg).argv(1, "tiny", "cpu")
        args = build_parser().parse_args(["train", "--model", "m", "--out", "p", "--meta-out", "j"] + train_argv)
        check_train_config(TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)}))


def test_a_missed_budget_is_measured_and_any_other_error_fails_the_case(monkeypatch):
    """A rank search on random weights may land off its budget once its work is done (BudgetMissed): the case keeps
    its cost and says so; any other PruneNetError is not swallowed."""
    import rehearsal_case
    import torch

    import prunenet.data
    import prunenet.methods.pipeline
    from prunenet.errors import BudgetMissed, PruneNetError
    from prunenet.lowrank.budget import check_budget

    with pytest.raises(BudgetMissed):  # the one kind the rehearsal catches is what check_budget raises
        check_budget(100, 50, 1000, "asvd")
    assert issubclass(BudgetMissed, PruneNetError)  # the CLI still exits 2 on it
    monkeypatch.setattr(prunenet.data, "calibration_blocks", prunenet.data.calibration_blocks)  # run_case swaps it
    threads = torch.get_num_threads()
    argv = ["prune", "--model", "tiny", "--out", "unused", "--method", "random", "--ratio", "0.3", "--seed", "0"]
    case = {"shape": "tiny", "layers": 1, "method": "random", "device": "cpu", "prune_argv": argv, "train_argv": []}

    def missed(*_args):
        torch.ones(256, 256) @ torch.ones(256, 256)  # some work, then the miss, with the method's record of it
        meta = {"stage_seconds": {"sensitivity": 2.5, "factoring": 0.25}, "ranks": {"a": 3, "b": 4}}
        raise BudgetMissed("random removed 1 parameters but the budget is 2", meta)

    try:
        monkeypatch.setattr(prunenet.methods.pipeline, "apply", missed)
        out = rehearsal_case.run_case(case)
        assert out["budget_missed"] == "random removed 1 parameters but the budget is 2"
        assert out["params_after"] is None and out["cpu_s"] >= 0 and out["params"] > 0
        assert out["stage_seconds"] == {"sensitivity": 2.5, "factoring": 0.25} and out["factored"] == 2
        line = scale_rehearsal.stage_lines({"asvd": {"cases": {"L1-n1": out}}})
        assert line == ["asvd L1-n1 stages (wall s): sensitivity 2.5, factoring 0.2; 2 factored"]
        monkeypatch.setattr(prunenet.methods.pipeline, "apply", lambda *a: (_ for _ in ()).throw(PruneNetError("x")))
        with pytest.raises(PruneNetError):
            rehearsal_case.run_case(case)
    finally:
        torch.set_num_threads(threads)


def test_cases_outside_the_plan_are_left_out():
    """A merged-in case at a setting the method's plan no longer measures (LLM Surgeon's 8 windows, before 64) does
    not enter its fit or its record."""
    cfg = scale_rehearsal.paper_config()

    def case(layers, units, cpu):
        return {
            "layers": layers,
            "units": units,
            "cpu_s": cpu,
            "peak_rss": 3e9 + layers,
            "base_rss": 1e9,
            "weight_bytes_fp32": 1e9 * layers,
        }

    cases = {
        "L1-n1": case(1, 1, 10.0),
        "L1-n8": case(1, 8, 99.0),
        "L1-n64": case(1, 64, 20.0),
        "L2-n1": case(2, 1, 30.0),
        "L2-n64": case(2, 64, 50.0),
    }
    rec = scale_rehearsal.summarized("llm-surgeon", cases, "llama2-7b", "cuda", cfg)
    assert set(rec["cases"]) == {"L1-n1", "L1-n64", "L2-n1", "L2-n64"}
    # from the four kept cases: n = 1: -10 + 20 L, n = 64: -10 + 30 L -> y = -10 + 20 L + (10/63)·L·(n - 1); the
    # 99 s case at 8 windows would bend it
    target = PAPER["llm-surgeon"]["calib_samples"] * PAPER["llm-surgeon"]["calib_seq_len"] / 128
    shots = PAPER["llm-surgeon"]["shots"]
    assert rec["summary"]["pred_cpu_s"] == pytest.approx(shots * (-10 + 20 * 32 + 10 / 63 * 32 * (target - 1)))


def test_a_window_case_runs_the_configured_length_and_enters_no_fit(monkeypatch):
    """--window-tokens: one case per method with its SEQ-token windows (and only those) at the asked length; its
    peak is printed beside the same case's at SEQ tokens and is in no fit."""
    cfg = scale_rehearsal.paper_config()
    seen = []
    monkeypatch.setattr(scale_rehearsal, "run_case", lambda case, *_: seen.append(case) or {"error": "spy"})
    asvd = scale_rehearsal.plan("asvd", cfg)
    row = scale_rehearsal.window_case(asvd, "tiny", 1, "cpu", 2048, 1e12, 10)
    argv = seen[0]["prune_argv"]
    assert argv[argv.index("--asvd-sens-seq-len") + 1] == "2048" and argv[argv.index("--calib-seq-len") + 1] == "2048"
    assert argv[argv.index("--asvd-sens-samples") + 1] == "1" and row["window_tokens"] == 2048
    # LLM-Pruner runs its configured 64-token windows already; PruneNet has none
    assert scale_rehearsal.window_case(scale_rehearsal.plan("llm-pruner", cfg), "tiny", 1, "cpu", 2048, 1, 1) is None
    assert scale_rehearsal.window_case(scale_rehearsal.plan("prunenet", cfg), "tiny", 1, "cpu", 2048, 1, 1) is None
    assert len(seen) == 1

    def case(layers, units, peak, cpu):
        row = {"layers": layers, "units": units, "cpu_s": cpu, "peak_rss": peak, "base_rss": 0, "weight_bytes_fp32": 1}
        return row | {"stage_seconds": {"factoring": 1.0}}  # ASVD's, fitted apart

    cases = {"L1-n1": case(1, 1, 4e9, 10), "L1-n8": case(1, 8, 4e9, 12), "L2-n1": case(2, 1, 5e9, 20)}
    cases["L2-n8"] = case(2, 8, 5e9, 25)
    plain = scale_rehearsal.summarized("asvd", cases, "llama2-7b", "cuda", cfg)
    window = case(1, 1, 7.5e9, 99) | {"window_tokens": 2048}
    both = scale_rehearsal.summarized("asvd", cases | {"L1-n1-w2048": window}, "llama2-7b", "cuda", cfg)
    assert both["summary"] == plain["summary"] and "L1-n1-w2048" in both["cases"]
    assert scale_rehearsal.window_lines({"asvd": both}) == [
        "asvd L1 n1, windows of 2048 tokens: peak 7.50 GB against 4.00 GB at 128 tokens "
        "(+3.50 GB, in the case's dtype; not in the predictions above)"
    ]
    assert scale_rehearsal.table({"asvd": both}, "llama2-7b") == scale_rehearsal.table({"asvd": plain}, "llama2-7b")
    assert "error" not in plain["summary"]


def test_asvd_time_is_fitted_with_its_factoring_apart():
    """ASVD's cases: CPU seconds = a quadratic-in-depth window model (rehearsal_fit.Tail) + factoring seconds that
    differ from case to case (which projections the search truncates). The prediction is the model at 32 layers and
    paper.yaml's windows plus the factoring's mean per layer × 32, whatever the spread; a case without the stage's
    seconds is not fitted."""
    from rehearsal_fit import Tail

    cfg = scale_rehearsal.paper_config()
    p = scale_rehearsal.plan("asvd", cfg)
    truth = Tail(a=30.0, b=100.0, f=20.0, e=5.0)
    factoring = {(1, 1): 143.0, (1, 8): 186.0, (2, 1): 349.0, (2, 8): 327.0}  # the spread run 4 measured

    def case(layers, units):
        cpu = truth(layers, units) + factoring[(layers, units)]
        row = {"layers": layers, "units": units, "cpu_s": cpu, "peak_rss": 4e9 + layers, "base_rss": 0}
        return row | {
            "weight_bytes_fp32": 1,
            "stage_seconds": {"sensitivity": 1.0, "factoring": factoring[(layers, units)]},
        }

    cases = {f"L{k[0]}-n{k[1]}": case(*k) for k in factoring}
    got = scale_rehearsal.summarized("asvd", cases, "llama2-7b", "cuda", cfg)["summary"]
    per_layer = (143.0 + 186.0 + 349.0 / 2 + 327.0 / 2) / 4
    assert got["pred_cpu_s"] == pytest.approx(truth(32, p.target) + 32 * per_layer)
    del cases["L2-n8"]["stage_seconds"]["factoring"]
    assert "factoring" in scale_rehearsal.summarized("asvd", cases, "llama2-7b", "cuda", cfg)["summary"]["error"]


@pytest.mark.parametrize("argv", [["--window-only"], ["--window-tokens", "0"]])
def test_window_flags_refuse_bad_input(argv):
    with pytest.raises(SystemExit) as err:
        scale_rehearsal.parse_args(argv)
    assert err.value.code == 2


def test_a_policy_method_case_trains_then_prunes_with_that_policy():
    """A policy method's case trains its policy (the train command's parser and checks) and hands the file to the
    prune request it parsed once: the tiny model comes out smaller."""
    import rehearsal_case
    import torch

    import prunenet.data

    cfg = scale_rehearsal.paper_config()
    prune_argv, train_argv = scale_rehearsal.plan("prunenet", cfg).argv(1, "tiny", "cpu")
    case = {"shape": "tiny", "layers": 1, "method": "prunenet", "device": "cpu"}
    calibration, threads = prunenet.data.calibration_blocks, torch.get_num_threads()
    try:
        out = rehearsal_case.run_case(case | {"prune_argv": prune_argv, "train_argv": train_argv})
    finally:
        prunenet.data.calibration_blocks = calibration
        torch.set_num_threads(threads)
    assert out["params_after"] < out["params"] and "budget_missed" not in out


def test_a_setting_whose_cost_does_not_show_is_flagged():
    """CPU seconds that do not grow with the scaled setting at some layer count are noise, and the report says so
    for that layer count only; window cases and failed cases are not compared."""

    def case(layers, units, cpu, **extra):
        return {"layers": layers, "units": units, "cpu_s": cpu} | extra

    cases = {"L1-n1": case(1, 1, 628.3), "L1-n2": case(1, 2, 620.5), "L2-n1": case(2, 1, 1300.0)}
    cases |= {"L2-n2": case(2, 2, 1500.0), "L1-n1-w2048": case(1, 1, 9999.0, window_tokens=2048)}
    assert scale_rehearsal.slope_lines({"asvd": {"cases": cases}}) == [
        "asvd L1: 620.5 CPU-s at 2 units against 628.3 at 1: the setting's cost is inside the spread, so its scaled "
        "time is not a prediction"
    ]
    cases["L1-n2"] = case(1, 2, 700.0)
    assert scale_rehearsal.slope_lines({"asvd": {"cases": cases}}) == []
    unscaled = {"L2-n1": case(2, 1, 2.0), "L4-n1": case(4, 1, 1.0)}  # one setting: nothing to compare
    assert scale_rehearsal.slope_lines({"random": {"cases": unscaled}}) == []
