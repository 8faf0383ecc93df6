"""Low-rank compression (SVD-LLM, ASVD): the factorisations against their theorems, the budget, the rank search
against brute force and direct forwards, and the saved checkpoints against the in-memory models."""

from __future__ import annotations

import copy
import dataclasses
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunenet.arch import get_adapter
from prunenet.budget import ffn_rows_budget
from prunenet.checkpoints import format_for, low_rank, read_meta
from prunenet.data import calibration_blocks
from prunenet.errors import PruneNetError
from prunenet.lowrank.activations import block_inputs, capture, recording, run_block
from prunenet.lowrank.asvd import compress_asvd, prepare_asvd
from prunenet.lowrank.budget import rank_for_ratio, ranks_for_ratio, removed, total_removed, uniform_ratio
from prunenet.lowrank.factor import asvd_factors, asvd_scale, cholesky_whitening, closed_form_u, svd_llm_factors
from prunenet.lowrank.layers import LowRankLinear, block_linears, decoder_linears, replace
from prunenet.lowrank.search import CandidateLinear, select, tail_losses
from prunenet.lowrank.svd_llm import compress_svd_llm
from prunenet.methods import METHODS, PruneRequest, compress
from prunenet.methods.asvd import parse_ratios
from prunenet.methods.pipeline import apply
from prunenet.models import load_model, save_checkpoint
from prunenet.stats import count_params, flops_per_token

pytestmark = pytest.mark.usefixtures("one_thread")  # shared 2-core machines: LAPACK threads spin

FAMILIES = ["llama", "opt", "phi"]
RATIOS = [0.1 * i for i in range(1, 10)]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _activations(d_in: int, n: int, seed: int = 0) -> torch.Tensor:
    """``d_in × n`` inputs with correlated channels and a few outlier channels (what whitening/scaling is for)."""
    g = _gen(seed)
    mix = torch.randn(d_in, d_in, generator=g, dtype=torch.float64)
    x = mix @ torch.randn(d_in, n, generator=g, dtype=torch.float64)
    return x * torch.logspace(0, 2, d_in, dtype=torch.float64)[:, None]


def _calib(tokenizer, data_dir, n: int = 4, seq: int = 32, seed: int = 0) -> torch.Tensor:
    return calibration_blocks(tokenizer, "wikitext2", data_dir, n_samples=n, seq_len=seq, seed=seed)


def _ids(vocab: int, shape=(2, 12), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=_gen(seed))


# ---------------------------------------------------------------------------------------------- factorisations


def test_whitened_truncation_loss_is_the_truncated_spectrum():
    """SVD-LLM's Theorem: ‖(W − W')X‖_F² = Σ_{i>k} σ_i²(W S) for every k; full rank reproduces W; and no other
    rank-k matrix does better on X (plain SVD truncation and ASVD's are never below it)."""
    out_f, in_f = 40, 24
    w = torch.randn(out_f, in_f, generator=_gen(1), dtype=torch.float64)
    x = _activations(in_f, 300)
    s, damping = cholesky_whitening(x @ x.T)
    assert damping == 0.0
    plain = torch.linalg.svd(w, full_matrices=False)
    for k in range(1, in_f + 1):
        f = svd_llm_factors(w, s, k)
        w_k = f.u @ f.v
        loss = float(((w - w_k) @ x).pow(2).sum())
        assert loss == pytest.approx(f.tail_energy(k), rel=1e-9, abs=1e-9 * f.tail_energy(0))
        u, sig, vh = plain
        plain_loss = float(((w - u[:, :k] * sig[:k] @ vh[:k]) @ x).pow(2).sum())
        asvd = asvd_factors(w, asvd_scale(x.abs().mean(1), 0.5), k)
        asvd_loss = float(((w - asvd.u @ asvd.v) @ x).pow(2).sum())
        slack = 1e-9 * f.tail_energy(0)  # round-off at full rank, where every loss is 0
        assert loss <= plain_loss + slack and loss <= asvd_loss + slack
    torch.testing.assert_close(f.u @ f.v, w, atol=1e-10, rtol=0)


def test_whitening_damps_only_a_singular_gram():
    x = _activations(16, 5)  # 5 tokens, 16 channels: rank-5 Gram
    gram = x @ x.T
    s, damping = cholesky_whitening(gram)
    assert damping > 0
    eye = torch.eye(16, dtype=torch.float64)
    torch.testing.assert_close(s @ s.T, gram + damping * eye, atol=1e-8 * float(gram.diagonal().mean()), rtol=0)
    first_step = 1e-12 * float(gram.diagonal().mean())
    smaller_fails = int(torch.linalg.cholesky_ex(gram + damping / 10 * eye).info) > 0
    assert smaller_fails or damping == pytest.approx(first_step)  # within a factor 10 of the smallest
    assert cholesky_whitening(x @ x.T + eye)[1] == 0.0
    dead = _activations(16, 200)
    dead[3] = 0.0  # a channel never active (a dead ReLU unit): an exactly zero row and column
    s, damping = cholesky_whitening(dead @ dead.T)
    assert damping > 0 and bool(torch.isfinite(s).all()) and bool((s.diagonal() > 0).all())


def test_asvd_alpha_zero_is_the_plain_truncated_svd():
    """α = 0: S = I, and the factors are Eckart–Young's truncation; α = 0.5: W'S is the best rank-k of WS."""
    w = torch.randn(30, 20, generator=_gen(2), dtype=torch.float64)
    abs_mean = _activations(20, 100).abs().mean(1)
    u, sig, vh = torch.linalg.svd(w, full_matrices=False)
    for k in (1, 5, 20):
        f = asvd_factors(w, asvd_scale(abs_mean, 0.0), k)
        torch.testing.assert_close(f.u @ f.v, u[:, :k] * sig[:k] @ vh[:k], atol=1e-12, rtol=0)
        assert float((w - f.u @ f.v).pow(2).sum()) == pytest.approx(float(sig[k:].pow(2).sum()), abs=1e-10)
        scale = asvd_scale(abs_mean, 0.5)
        g = asvd_factors(w, scale, k)
        err = float(((w - g.u @ g.v) * scale).pow(2).sum())
        assert err == pytest.approx(float(torch.linalg.svdvals(w * scale)[k:].pow(2).sum()), rel=1e-9, abs=1e-9)


def test_closed_form_update_is_the_least_squares_u():
    w = torch.randn(12, 10, generator=_gen(3), dtype=torch.float64)
    v = torch.randn(4, 10, generator=_gen(4), dtype=torch.float64)
    x = _activations(10, 80, seed=5)
    u = closed_form_u(w, v, x @ x.T)
    ref = torch.linalg.lstsq((v @ x).T, (w @ x).T).solution.T
    torch.testing.assert_close(u, ref, atol=1e-9, rtol=1e-9)


def test_low_rank_linear_counts_parameters_and_flops(tiny_model):
    lin = LowRankLinear.from_factors(torch.randn(32, 5), torch.randn(5, 64), torch.randn(32))
    assert count_params(lin) == 5 * (32 + 64) + 32 and (lin.in_features, lin.out_features, lin.rank) == (64, 32, 5)
    model = tiny_model("llama")
    dense = flops_per_token(model, 16)
    path, old = next(iter(decoder_linears(model).items()))
    replace(model, path, LowRankLinear.from_factors(old.weight[:, :3], old.weight[:3], old.bias))
    assert dense - flops_per_token(model, 16) == 2 * removed(old.out_features, old.in_features, 3)


# ---------------------------------------------------------------------------------------------- on models


@pytest.mark.parametrize("family", FAMILIES)
def test_statistics_and_full_rank_factors_reproduce_the_dense_model(tiny_model, tokenizer, data_dir, family):
    """Block-by-block statistics (hooks) give each linear exactly its inputs: the whitened loss of every linear
    equals Σ_{i>k}σ_i² computed from inputs captured directly on the dense model's own forward; and factoring
    every linear at full rank (both methods) reproduces the dense logits."""
    model = tiny_model(family)
    calib = _calib(tokenizer, data_dir)
    linears = decoder_linears(model)
    seen = {p: [] for p in linears}
    handles = [m.register_forward_hook(lambda m, a, o, p=p: seen[p].append(a[0].detach())) for p, m in linears.items()]
    with torch.no_grad():
        model(calib)
    for h in handles:
        h.remove()
    xs = {p: torch.cat(v).reshape(-1, linears[p].in_features).double().T for p, v in seen.items()}

    cal = capture(model, calib, batch_size=3)
    hidden, grams, means = cal.hidden, {}, {}
    for i, layer in enumerate(get_adapter(model).layers()):
        with recording(model, layer, gram=True, abs_mean=True) as stats:
            hidden = run_block(layer, i, hidden, cal)
        for lin in block_linears(model, layer):
            path = next(p for p, m in linears.items() if m is lin)
            grams[path], means[path] = stats[lin].gram, stats[lin].abs_mean()
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        ref = model(ids).logits
    full_svd, full_asvd = copy.deepcopy(model), copy.deepcopy(model)
    for path, lin in linears.items():
        x = xs[path]
        torch.testing.assert_close(grams[path], x @ x.T, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(means[path], x.abs().mean(1), rtol=1e-5, atol=1e-6)
        s, _ = cholesky_whitening(x @ x.T)
        k = max(1, min(lin.out_features, lin.in_features) // 3)
        f = svd_llm_factors(lin.weight, cholesky_whitening(grams[path])[0], k)
        loss = float(((lin.weight.detach().double() - (f.u @ f.v).double()) @ x).pow(2).sum())
        truth = float(torch.linalg.svdvals(lin.weight.detach().double() @ s)[k:].pow(2).sum())
        assert loss == pytest.approx(truth, rel=1e-3)
        r = min(lin.out_features, lin.in_features)
        g = svd_llm_factors(lin.weight, cholesky_whitening(grams[path])[0], r)
        replace(full_svd, path, LowRankLinear.from_factors(g.u, g.v, lin.bias))
        a = asvd_factors(lin.weight, asvd_scale(means[path], 0.5), r)
        replace(full_asvd, path, LowRankLinear.from_factors(a.u, a.v, lin.bias))
    with torch.no_grad():
        torch.testing.assert_close(full_svd(ids).logits, ref, atol=2e-4, rtol=0)
        torch.testing.assert_close(full_asvd(ids).logits, ref, atol=2e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_sensitivity_tail_equals_a_full_forward(tiny_model, tokenizer, data_dir, family):
    """STRS's cheap measurement (cached block inputs, blocks i… and the head, candidates batched) is the loss
    of the whole model with that one linear truncated."""
    model = tiny_model(family)
    ids = _calib(tokenizer, data_dir, n=2, seq=16)
    inputs = block_inputs(model, ids)
    linears = decoder_linears(model)
    layers = list(get_adapter(model).layers())
    for i in (0, len(layers) - 1):
        for lin in block_linears(model, layers[i])[::3]:
            path = next(p for p, m in linears.items() if m is lin)
            ranks = [rank_for_ratio(lin.out_features, lin.in_features, r) for r in (0.1, 0.5, 0.9)]
            f = asvd_factors(lin.weight, torch.rand(lin.in_features, generator=_gen(i)) + 0.5, max(ranks))
            replace(model, path, CandidateLinear(f, ranks, lin.bias))
            got = tail_losses(model, i, inputs[i], ids, len(ranks))
            for c, k in enumerate(ranks):
                replace(model, path, LowRankLinear.from_factors(*f.prefix(k), lin.bias))
                with torch.no_grad():
                    logits = model(ids).logits
                want = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
                assert float(got[c]) == pytest.approx(float(want), abs=2e-5)
            replace(model, path, lin)


def test_sensitivity_loss_takes_one_copys_logits_at_a_time(tiny_model, tokenizer, data_dir, monkeypatch):
    """The loss of the candidates' batched forward casts one copy's logits to float32 at a time (LLaMA-2-7B's 9 × 2048
    tokens: 0.26 GB per call instead of 2.4 GB), with the values of the whole batch's loss."""
    import prunenet.lowrank.search as search

    model = tiny_model("llama")
    ids = _calib(tokenizer, data_dir, n=2, seq=16)
    inputs = block_inputs(model, ids)
    real, rows = F.cross_entropy, []
    monkeypatch.setattr(search.F, "cross_entropy", lambda x, *a, **k: rows.append(x.shape[0]) or real(x, *a, **k))
    got = tail_losses(model, 1, inputs[1], ids, 3)
    assert rows == [15] * 3 * 2  # 3 copies of 2 windows, 15 predictions each
    monkeypatch.setattr(search.F, "cross_entropy", real)
    with torch.no_grad():
        logits = model(ids).logits
    want = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(got, torch.full((3,), float(want), dtype=torch.float64), atol=2e-5, rtol=0)


def test_asvd_frees_each_dense_weight_before_factoring_the_next(tiny_model, tokenizer, monkeypatch):
    """compress_asvd lets a replaced projection's dense weight go before it factors the next one (LLaMA-2-7B: the
    truncated projections' factors would otherwise sit beside every dense weight until the end)."""
    import weakref

    import prunenet.lowrank.asvd as lowrank_asvd

    model = tiny_model("llama")
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=_gen(1))
    state = prepare_asvd(model, ids, ids, RATIOS, metric="stable_rank")
    refs, alive_at_call = [], []
    real = lowrank_asvd.asvd_factors

    def spy(weight, scale, k):
        alive_at_call.append(sum(r() is not None for r in refs))
        refs.append(weakref.ref(weight))
        return real(weight, scale, k)

    monkeypatch.setattr(lowrank_asvd, "asvd_factors", spy)
    budget = int(0.5 * sum(m.weight.numel() for m in decoder_linears(model).values()))
    _, res = compress_asvd(model, state, budget, RATIOS)
    assert len(alive_at_call) == len(res.ranks) > 2 and not any(alive_at_call)


# ---------------------------------------------------------------------------------------------- budget and search


def test_uniform_ratio_is_the_nearest_achievable_removal():
    """Bisection finds the uniform-ratio removal nearest the budget: brute force over every rank breakpoint."""
    shapes = [(64, 64), (32, 64), (96, 64), (64, 96), (7, 300)]
    breakpoints = sorted({k * (o + i) / (o * i) for o, i in shapes for k in range(1, min(o, i) + 1)} | {1e-9, 2.0})
    achievable = {total_removed(shapes, ranks_for_ratio(shapes, r)) for r in breakpoints}
    for budget in (1, 5000, 12345, 19000, 19681):
        ratio, ranks = uniform_ratio(shapes, budget)
        got = total_removed(shapes, ranks)
        assert abs(got - budget) == min(abs(a - budget) for a in achievable)
        assert ranks == ranks_for_ratio(shapes, ratio)
        assert all(k is None or k * (o + i) < o * i for (o, i), k in zip(shapes, ranks))
    with pytest.raises(PruneNetError, match="lower --ratio"):
        uniform_ratio(shapes, 10**9)


def test_threshold_search_matches_brute_force():
    """Each linear takes the smallest ratio whose sensitivity is within the threshold; the threshold (over every
    sorted position) is the one whose removal is nearest the budget."""
    g = _gen(7)
    for trial in range(30):
        n_lin = int(torch.randint(2, 6, (1,), generator=g))
        losses = {f"l{j}": torch.rand(4, generator=g).tolist() for j in range(n_lin)}
        savings = {n: sorted(torch.randint(0, 50, (4,), generator=g).tolist(), reverse=True) for n in losses}
        budget = int(torch.randint(0, 150, (1,), generator=g))
        choice, threshold, got = select(losses, savings, budget)
        taus = [float("-inf")] + sorted(v for vals in losses.values() for v in vals)
        options = []
        for tau in taus:
            pick = {n: min((c for c, v in enumerate(vals) if v <= tau), default=None) for n, vals in losses.items()}
            options.append(sum(savings[n][c] for n, c in pick.items() if c is not None))
        assert abs(got - budget) == min(abs(o - budget) for o in options), trial
        for name, vals in losses.items():  # the choice is the rule at the returned threshold
            assert choice[name] == min((c for c, v in enumerate(vals) if v <= threshold), default=None)


def test_asvd_search_keeps_a_sensitive_linear_and_truncates_an_insensitive_one(tiny_model, tokenizer):
    """Planted: one FFN input projection is exactly rank 1 (every truncation is exact: sensitivity = dense loss),
    one attention output is scaled up 20× (every truncation hurts). The sharpened model is calibrated on its own
    greedy continuation, so the dense loss is near its minimum. The search keeps the sensitive one dense, gives
    the insensitive one the smallest candidate ratio, and meets the budget."""
    for family in ("llama", "opt"):
        model = tiny_model(family)
        adapter = get_adapter(model)
        layers = adapter.layers()
        insensitive, sensitive = adapter.ffn(layers[1])[0], adapter.attention(layers[2]).o
        linears = decoder_linears(model)
        path = {id(m): p for p, m in linears.items()}
        with torch.no_grad():
            w = insensitive.weight
            insensitive.weight.copy_(torch.outer(w[:, 0], w[0]))
            sensitive.weight.mul_(20.0)
            adapter.final_norm_module().weight.mul_(30.0)
            ids = torch.randint(0, model.config.vocab_size, (2, 1), generator=_gen(0))
            for _ in range(23):
                ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
        budget = int(0.7 * sum(m.weight.numel() for m in linears.values()))
        state = prepare_asvd(model, ids, ids, RATIOS, alpha=0.5)
        compressed, res = compress_asvd(copy.deepcopy(model), state, budget, RATIOS)
        ins, sen = path[id(insensitive)], path[id(sensitive)]
        assert max(abs(v - res.dense_loss) for v in res.sensitivity[ins]) < 1e-5
        assert min(res.sensitivity[sen]) > res.dense_loss + 0.01
        assert res.ratios[ins] == pytest.approx(0.1) and res.ratios[sen] == 1.0
        assert res.removed == count_params(model) - count_params(compressed)
        assert abs(res.removed - budget) <= 0.01 * count_params(model)


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_asvd_stable_rank_is_the_releases_score_and_no_draw_moves_it(tiny_model, tokenizer, data_dir, family):
    """``sensitivity: stable_rank``: s(l, r) = −√(‖W‖_F²/σ_max²)·r^0.1 on the raw weight, transcribed here from
    ASVD4LLM's sensitivity.py (numpy, float64, not the package's code); two calibration draws then choose the
    same ratio for every matrix (the scaling still differs, so the factors do), while ``ppl`` measures a
    different sensitivity on each draw."""
    import numpy as np

    model = tiny_model(family)
    ids = _calib(tokenizer, data_dir)
    state = prepare_asvd(model, ids, ids[:1, :8], RATIOS, metric="stable_rank")
    for path, lin in _block_linears(model).items():
        w = lin.weight.detach().numpy().astype(np.float64)
        root = np.sqrt((w**2).sum() / np.linalg.svd(w, compute_uv=False)[0] ** 2)
        np.testing.assert_allclose(state[f"loss.{path}"].numpy(), [-root * r**0.1 for r in RATIOS], rtol=1e-12)
    runs = {}
    for metric in ("stable_rank", "ppl"):
        for seed in (1, 2):
            request = dataclasses.replace(_request(data_dir, 0.3, sensitivity=metric, sens_seq_len=8), seed=seed)
            runs[metric, seed] = apply(METHODS.get("asvd"), copy.deepcopy(model), tokenizer, request)
    (m1, a), (m2, b) = runs["stable_rank", 1], runs["stable_rank", 2]
    assert a["param_ratios"] == b["param_ratios"] and a["sensitivity_metric"] == "stable_rank"
    assert a["threshold_ppl"] is None and a["sensitivity_loss"] == b["sensitivity_loss"]
    path = next(iter(a["ranks"]))
    assert not torch.equal(m1.get_submodule(path).u.weight, m2.get_submodule(path).u.weight)
    assert runs["ppl", 1][1]["sensitivity_loss"] != runs["ppl", 2][1]["sensitivity_loss"]
    assert runs["ppl", 1][1]["threshold_ppl"] is not None


def test_asvd_ratio_option_is_validated():
    assert parse_ratios("0.5, 0.1,0.3") == [0.1, 0.3, 0.5]
    for bad in ("", "0.1,x", "0,0.5", "0.5,1.0"):
        with pytest.raises(PruneNetError):
            parse_ratios(bad)


# ---------------------------------------------------------------------------------------------- methods and checkpoints


def _expected_params(dense_model: nn.Module, ranks: dict[str, int]) -> int:
    """Σ k(out+in) + bias over the factored linears + every other parameter of the dense model."""
    total = count_params(dense_model)
    for path, k in ranks.items():
        lin = dense_model.get_submodule(path)
        total -= lin.weight.numel()
        total += k * (lin.out_features + lin.in_features)
    return total


def _request(data_dir, ratio: float, **options) -> PruneRequest:
    return PruneRequest(ratio=ratio, data_dir=str(data_dir), calib_samples=4, calib_seq_len=32, seed=1, options=options)


@pytest.mark.parametrize("name", ["svd-llm", "asvd"])
@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_method_meets_the_budget_and_the_parameter_formula(tiny_model, tokenizer, data_dir, name, family, ratio):
    model = tiny_model(family)
    dense = count_params(model)
    compressed, meta = apply(METHODS.get(name), copy.deepcopy(model), tokenizer, _request(data_dir, ratio))
    params = count_params(compressed)
    assert params == _expected_params(model, meta["ranks"])
    assert meta["params_removed"] == dense - params and meta["param_budget"] == ffn_rows_budget(model, ratio)
    gap = abs(meta["params_removed"] - meta["param_budget"]) / dense
    assert gap <= 0.01 and gap <= 1e-3  # the project's 1 pp rule, and much closer on these models
    assert set(meta["ranks"]) <= set(decoder_linears(model)) and meta["ranks"]
    for path, k in meta["ranks"].items():
        mod = compressed.get_submodule(path)
        assert isinstance(mod, LowRankLinear) and mod.rank == k
        assert k * (mod.out_features + mod.in_features) < mod.out_features * mod.in_features


def _block_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear inside a decoder layer by path (the releases' find_layers), found by walking the modules."""
    inside = {id(m) for layer in get_adapter(model).layers() for m in layer.modules()}
    return {p: m for p, m in model.named_modules() if isinstance(m, nn.Linear) and id(m) in inside}


@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_svd_llm_nominal_ratio_is_the_releases_rank(tiny_model, tokenizer, data_dir, family, ratio):
    """budget=ratio: SVDLLM.py's ranks, int(m·n·(1 − --ratio)/(m + n)) for every block linear, so the removal is
    Σ m·n − k(m + n); budget=params (the default) is still PruneNet's count."""
    model = tiny_model(family)
    keep = 1 - ratio  # SVDLLM.py: args.ratio = 1 - args.ratio
    ranks = {
        p: int(m.out_features * m.in_features * keep / (m.out_features + m.in_features))
        for p, m in _block_linears(model).items()
    }
    shapes = {p: (m.out_features, m.in_features) for p, m in _block_linears(model).items()}
    expected = sum(o * i - ranks[p] * (o + i) for p, (o, i) in shapes.items())
    request = _request(data_dir, ratio, budget="ratio")
    compressed, meta = apply(METHODS.get("svd-llm"), copy.deepcopy(model), tokenizer, request)
    assert meta["ranks"] == ranks and meta["budget"] == "ratio" and meta["param_budget"] is None
    assert meta["params_removed"] == count_params(model) - count_params(compressed) == expected
    _, default = apply(METHODS.get("svd-llm"), copy.deepcopy(model), tokenizer, _request(data_dir, ratio))
    assert "budget" not in default and default["param_budget"] == ffn_rows_budget(model, ratio)


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_asvd_nominal_ratio_targets_r_of_the_block_linears(tiny_model, tokenizer, data_dir, family):
    """budget=ratio: the rank search's target is r of the block linears' weights (ASVD4LLM's
    --param_ratio_target = 1 − r of the same sum), met as closely as the default's target."""
    model = tiny_model(family)
    target = round(0.4 * sum(m.weight.numel() for m in _block_linears(model).values()))
    request = _request(data_dir, 0.4, budget="ratio")
    compressed, meta = apply(METHODS.get("asvd"), copy.deepcopy(model), tokenizer, request)
    assert meta["param_target"] == target and meta["budget"] == "ratio" and meta["param_budget"] is None
    assert meta["params_removed"] == count_params(model) - count_params(compressed)
    assert abs(meta["params_removed"] - target) <= 1e-3 * count_params(model)
    assert target != ffn_rows_budget(model, 0.4)


@pytest.mark.parametrize("name", ["svd-llm", "asvd"])
@pytest.mark.parametrize("family", ["llama", "opt"])
def test_saved_checkpoint_reloads_the_in_memory_model(tiny_model, tokenizer, data_dir, tmp_path, name, family):
    model = tiny_model(family)
    compressed, meta = apply(METHODS.get(name), copy.deepcopy(model), tokenizer, _request(data_dir, 0.3))
    save_checkpoint(compressed, tokenizer, tmp_path / "m", meta)
    reloaded, _ = load_model(str(tmp_path / "m"), dtype="float32")
    assert format_for(reloaded.config) is low_rank
    assert low_rank.ranks(reloaded.config) == meta["ranks"]
    assert count_params(reloaded) == count_params(compressed)
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, compressed(ids).logits, atol=1e-5, rtol=0)


def test_compress_end_to_end_is_deterministic(tiny_model, tokenizer, data_dir, tmp_path):
    """compress(): the reported size is the reloaded model's, and a second run gives the same factors."""
    src = tmp_path / "dense"
    save_checkpoint(tiny_model("llama"), tokenizer, src)
    req = _request(data_dir, 0.25, update="closed-form")
    metas = [compress(str(src), tmp_path / f"out{i}", "svd-llm", req)[0] for i in range(2)]
    assert metas[0]["ranks"] == metas[1]["ranks"] and metas[0]["update"] == "closed-form"
    a, _ = load_model(str(tmp_path / "out0"), dtype="float32")
    b, _ = load_model(str(tmp_path / "out1"), dtype="float32")
    assert read_meta(tmp_path / "out0")["stats"]["params"] == count_params(a)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_run_block_computes_where_the_block_is_and_keeps_outputs_where_inputs_wait():
    """A block that visits the device (``meta`` stands in for a GPU: it holds no data, so where a tensor went is
    all it shows) gets each batch and its keyword tensors there; its outputs come back to the host."""
    from prunenet.lowrank.activations import Calibration

    seen = []

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.empty(1, device="meta"))

        def forward(self, h, position_embeddings=None, flag=None):
            seen.append((h.device.type, [t.device.type for t in position_embeddings], flag))
            return (torch.ones(h.shape),)

    cal = Calibration(
        hidden=[], kwargs=[[{"position_embeddings": (torch.ones(2), torch.ones(2)), "flag": b}] for b in (0, 1)]
    )
    out = run_block(Block(), 0, [torch.zeros(2, 3), torch.zeros(1, 3)], cal)
    assert seen == [("meta", ["meta", "meta"], 0), ("meta", ["meta", "meta"], 1)]
    assert [(o.device.type, tuple(o.shape)) for o in out] == [("cpu", (2, 3)), ("cpu", (1, 3))]


def test_svd_llm_sends_one_block_at_a_time_to_the_device(tiny_model, tokenizer, data_dir, monkeypatch):
    """Layer by layer (the method is ``offload``): each block goes to the device before its statistics are read and
    back home once factored, so the device never holds two blocks."""
    import prunenet.lowrank.svd_llm as svd_llm

    model = tiny_model("llama")
    layers = list(get_adapter(model).layers())
    log = []
    for i, layer in enumerate(layers):
        moved = layer.to
        monkeypatch.setattr(layer, "to", lambda dev, i=i, moved=moved: log.append(("to", i, str(dev))) or moved(dev))
    run = svd_llm.run_block
    monkeypatch.setattr(svd_llm, "run_block", lambda layer, i, *a: log.append(("run", i)) or run(layer, i, *a))
    svd_llm.compress_svd_llm(
        model, _calib(tokenizer, data_dir), ffn_rows_budget(model, 0.3), device=torch.device("cpu")
    )
    assert log == [e for i in range(len(layers)) for e in (("to", i, "cpu"), ("run", i), ("to", i, "cpu"))]
    assert METHODS.get("svd-llm").offload and METHODS.get("svd-llm").load_device("cuda") == "cpu"


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_closed_form_update_leaves_the_first_block_alone(tiny_model, tokenizer, data_dir, family):
    """Known answer: in block 0 the update's inputs are the dense ones, and with whitened factors the least-squares
    U (V fixed) is U_kΣ_k^{1/2} itself; later blocks read the compressed earlier blocks' outputs and change."""
    model = tiny_model(family)
    calib = _calib(tokenizer, data_dir)
    budget = ffn_rows_budget(model, 0.4)
    plain, _ = compress_svd_llm(copy.deepcopy(model), calib, budget, update="none", batch_size=3)
    updated, _ = compress_svd_llm(copy.deepcopy(model), calib, budget, update="closed-form", batch_size=3)
    for path in decoder_linears(model):
        a, b = plain.get_submodule(path), updated.get_submodule(path)
        torch.testing.assert_close(a.v.weight, b.v.weight)
        if ".0." in path:
            torch.testing.assert_close(a.u.weight, b.u.weight, atol=2e-5, rtol=1e-4)
    last = [p for p in decoder_linears(model) if ".2." in p]
    assert any((plain.get_submodule(p).u.weight - updated.get_submodule(p).u.weight).abs().max() > 1e-4 for p in last)


# ---------------------------------------------------------------------------------------------- SmolLM2


@pytest.mark.slow
def test_smollm2_whitening_theorem_on_a_real_projection(smollm2, data_dir):
    """On real weights and real activations: block 0's k_proj truncated at the SVD-LLM rank."""
    dense, tok = smollm2
    calib = _calib(tok, data_dir, n=4, seq=128)
    lin = get_adapter(dense).attention(get_adapter(dense).layers()[0]).k
    seen = []
    handle = lin.register_forward_hook(lambda m, a, o: seen.append(a[0].detach()))
    with torch.no_grad():
        dense.model(calib[:, :128])
    handle.remove()
    x = torch.cat(seen).reshape(-1, lin.in_features).double().T
    s, _ = cholesky_whitening(x @ x.T)
    k = rank_for_ratio(lin.out_features, lin.in_features, 0.6)
    f = svd_llm_factors(lin.weight, s, k)
    loss = float(((lin.weight.detach().double() - (f.u @ f.v).double()) @ x).pow(2).sum())
    assert loss == pytest.approx(f.tail_energy(k), rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["svd-llm", "asvd"])
def test_smollm2_methods_meet_the_budget(smollm2, data_dir, one_thread, name):
    """Each method at r = 0.2, one thread: within 1 pp of PruneNet's budget (and far closer), the parameter
    formula holds. The budget and the rank search do not depend on how much calibration text there is, so 8
    windows of 128 tokens stand in for the default 32 x 256 (an eighth of the tokens). Its time is
    printed, not asserted: the workflow records every method's compression seconds (``baselines.csv``, docs/results.md
    "Baselines")."""
    dense, tok = smollm2
    n = count_params(dense)
    req = PruneRequest(ratio=0.2, data_dir=str(data_dir), calib_samples=8, calib_seq_len=128)
    t0 = time.perf_counter()
    model, meta = apply(METHODS.get(name), copy.deepcopy(dense), tok, req)
    seconds = time.perf_counter() - t0
    print(f"{name} SmolLM2 r=0.2: {seconds:.1f} s, removed {meta['params_removed']} vs budget {meta['param_budget']}")
    assert count_params(model) == _expected_params(dense, meta["ranks"])
    assert abs(meta["params_removed"] - meta["param_budget"]) <= 0.001 * n


def test_asvd_missed_budget_carries_its_record_of_the_work(tiny_model, tokenizer, data_dir, monkeypatch):
    """A missed budget is raised once ASVD's work is done; the error carries the meta a success returns (stage
    seconds, the ranks it factored), which the scale rehearsal reads to separate the search from the factoring."""
    import prunenet.lowrank.budget as budget_mod
    from prunenet.errors import BudgetMissed

    model = tiny_model("llama")
    request = _request(data_dir, 0.3)
    _, meta = apply(METHODS.get("asvd"), copy.deepcopy(model), tokenizer, request)
    real = budget_mod.check_budget
    monkeypatch.setattr(budget_mod, "check_budget", lambda *a, **k: real(*a, **k | {"tolerance": -1.0}))
    with pytest.raises(BudgetMissed) as err:
        apply(METHODS.get("asvd"), copy.deepcopy(model), tokenizer, request)
    assert set(err.value.meta["stage_seconds"]) == {"scaling", "sensitivity", "factoring"}
    assert err.value.meta["ranks"] == meta["ranks"] and err.value.meta["params_removed"] == meta["params_removed"]
