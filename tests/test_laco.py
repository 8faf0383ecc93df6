"""LaCo: RDSC merge arithmetic, the representation similarity, Algorithm 1's walk, the budget and the checkpoint."""

from __future__ import annotations

import copy
import itertools
import math
import random
from fractions import Fraction

import pytest
import torch
from conftest import tiny_config
from torch import nn
from transformers import AutoModelForCausalLM, Gemma3TextConfig, Qwen3Config

from prunenet.arch import get_adapter
from prunenet.budget import ffn_rows_budget
from prunenet.checkpoints import read_meta
from prunenet.errors import PruneNetError
from prunenet.layer_collapse import Walk, _search, apply_collapse, layer_collapse, max_removable
from prunenet.layer_merge import (
    dense_states,
    final_states,
    merge_layer,
    merged_linears,
    rdsc_merge,
    representation_similarity,
)
from prunenet.methods import METHODS, PruneRequest, compress
from prunenet.methods.pipeline import apply
from prunenet.models import save_checkpoint
from prunenet.stats import count_params

FAMILIES = ["llama", "opt", "phi"]
LACO = METHODS.get("laco")


def _ids(vocab: int, shape=(3, 12), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _model(family: str, vocab: int, layers: int = 8, seed: int = 0) -> nn.Module:
    """A tiny random model of ``family`` with ``layers`` decoder layers (qwen3, gemma3: alternating sliding and
    full attention), every parameter (biases, norms) perturbed so that no two layers share a value."""
    if family in ("qwen3", "gemma3"):
        config_cls, extra = (Qwen3Config, {"use_sliding_window": True}) if family == "qwen3" else (Gemma3TextConfig, {})
        types = ["sliding_attention", "full_attention"] * layers
        config = config_cls(
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            vocab_size=vocab,
            sliding_window=4,
            layer_types=types[:layers],
            **extra,
        )
    else:
        config = tiny_config(family, vocab)
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():  # biases start at 0 and norms at 1 in every layer: make every layer's parameters its own
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@torch.no_grad()
def _direct_similarity(dense: nn.Module, pruned: nn.Module, ids: torch.Tensor) -> float:
    """Mean over samples of the cosine of the flattened last hidden states (``hidden_states[-1]``, final norm on)."""
    a = dense(ids, output_hidden_states=True).hidden_states[-1]
    b = pruned(ids, output_hidden_states=True).hidden_states[-1]
    return torch.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=-1).mean().item()


def _nearest_count(per_layer: int, n_layers: int, budget: int) -> int:
    """Brute force: the layer count k < n_layers whose parameters come nearest to ``budget`` (ties: fewer)."""
    return min(range(n_layers), key=lambda k: (abs(k * per_layer - budget), k))


# --------------------------------------------------------------------------------------------- RDSC merge


@pytest.mark.parametrize("family", [*FAMILIES, "qwen3"])
@pytest.mark.parametrize(("base", "m"), [(0, 1), (0, 2), (1, 1)])
def test_rdsc_merge_is_parameter_arithmetic(tokenizer, family, base, m):
    """Every projection parameter of the merged layer is θ_l + Σ_k (θ_{l+k} − θ_l) computed from the dense
    state dict; every other parameter is a norm and stays layer l's; the layers above move down unchanged."""
    model = _model(family, len(tokenizer), layers=3)
    dense = [dict(layer.named_parameters()) for layer in get_adapter(model).layers()]
    merged_paths = set(merged_linears(model))
    merged = rdsc_merge(copy.deepcopy(model), base, m)
    layers = get_adapter(merged).layers()
    assert len(layers) == merged.config.num_hidden_layers == 3 - m
    n_merged = 0
    for name, p in layers[base].named_parameters():
        theta = dense[base][name]
        if name.rsplit(".", 1)[0] in merged_paths:
            expected = theta + sum(dense[base + k][name] - theta for k in range(1, m + 1))
            torch.testing.assert_close(p, expected, atol=1e-6, rtol=0)
            assert not torch.equal(p, theta)
            n_merged += 1
        else:
            assert "norm" in name, f"{name} is neither a merged projection nor a norm"
            assert torch.equal(p, theta)
    # q, k, v, o, up, (gate), down: weights, plus biases where the family has them
    n_proj = len(merged_paths)
    assert n_merged == {"llama": n_proj, "qwen3": n_proj, "opt": 2 * n_proj, "phi": 2 * n_proj}[family]
    for new, old in zip(range(base + 1, 3 - m), range(base + m + 1, 3)):
        for name, p in layers[new].named_parameters():
            assert torch.equal(p, dense[old][name])
        assert all(getattr(mod, "layer_idx", new) == new for mod in layers[new].modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_merging_nothing_is_the_dense_model(tokenizer, family):
    """m = 0 and a collapse with nothing to remove leave the model's logits exactly as they were."""
    model = _model(family, len(tokenizer), layers=3)
    ids = _ids(len(tokenizer))
    with torch.no_grad():
        ref = model(ids).logits
        assert torch.equal(rdsc_merge(copy.deepcopy(model), 1, 0)(ids).logits, ref)
        single = merge_layer(model, [get_adapter(model).layers()[1]])
        for (name, p), q in zip(single.named_parameters(), get_adapter(model).layers()[1].parameters()):
            assert torch.equal(p, q), name
        collapse = layer_collapse(model, ids, 0)
        assert collapse.merges == [] and collapse.passes == 0
        assert torch.equal(apply_collapse(copy.deepcopy(model), collapse)(ids).logits, ref)


def test_ratio_below_one_layer_returns_the_dense_model(tokenizer, data_dir):
    """A ratio whose budget is nearer to zero layers than to one merges nothing: same logits, nothing recorded."""
    model = _model("llama", len(tokenizer), layers=3)
    per_layer = count_params(get_adapter(model).layers()[0])
    assert ffn_rows_budget(model, 0.01) < per_layer / 2
    req = PruneRequest(ratio=0.01, data_dir=str(data_dir), calib_samples=2, calib_seq_len=16)
    pruned, meta = apply(LACO, copy.deepcopy(model), tokenizer, req)
    ids = _ids(len(tokenizer))
    with torch.no_grad():
        assert torch.equal(pruned(ids).logits, model(ids).logits)
    assert meta["merges"] == [] and meta["layers_removed"] == 0 and meta["params_removed"] == 0


# ----------------------------------------------------------------------------------------------- similarity


@pytest.mark.parametrize("family", [*FAMILIES, "qwen3", "gemma3"])
def test_similarity_equals_hidden_state_cosines(tokenizer, family):
    """s of a candidate (run from its merge position up on cached dense states, in batches) equals the cosine of
    flattened ``hidden_states[-1]`` of the RDSC-merged model against the dense model, averaged over samples."""
    model = _model(family, len(tokenizer), layers=6)
    ids = _ids(len(tokenizer), (5, 10))
    with torch.no_grad():
        before = model(ids).logits
    entries, reference = dense_states(model, ids, [2, 3], batch_size=2)
    with torch.no_grad():
        h = model(ids, output_hidden_states=True).hidden_states
    torch.testing.assert_close(reference, h[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(entries[3], h[3], atol=1e-5, rtol=0)
    for pos, size in [(2, 2), (3, 3), (2, 4)]:
        direct = _direct_similarity(model, rdsc_merge(copy.deepcopy(model), pos, size - 1), ids)
        layers = list(get_adapter(model).layers())
        cand = layers[:pos] + [merge_layer(model, layers[pos : pos + size])] + layers[pos + size :]
        cfg = {}
        if family in ("qwen3", "gemma3"):  # the stack's attention types: the kept base layers' own
            cfg = {"layer_types": [model.config.layer_types[i] for i in [*range(pos + 1), *range(pos + size, 6)]]}
        out = final_states(model, cand, ids, cfg, pos, entries[pos], batch_size=2)
        assert representation_similarity(reference, out) == pytest.approx(direct, abs=1e-6)
        assert direct < 0.9999  # a real change, not the dense model again
    assert len(get_adapter(model).layers()) == model.config.num_hidden_layers == 6  # the stack is restored
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)


def test_representation_similarity_flattens_each_sample():
    """Per sample the whole [seq, d] matrix is one vector: scaling one token changes s, scaling a sample does not."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 5, generator=gen), torch.randn(3, 4, 5, generator=gen)
    expected = sum(torch.dot(a[i].flatten(), b[i].flatten()) / (a[i].norm() * b[i].norm()) for i in range(3)) / 3
    assert representation_similarity(a, b) == pytest.approx(float(expected), abs=1e-6)
    assert representation_similarity(a, b * torch.tensor([2.0, 1.0, 5.0])[:, None, None]) == pytest.approx(
        float(expected), abs=1e-6
    )
    assert representation_similarity(a, a) == pytest.approx(1.0, abs=1e-12)


def test_recorded_similarities_are_those_of_the_merged_models(tokenizer, data_dir):
    """Each accepted merge's recorded s equals the direct cosine of the model after the merges so far, and the
    method's model is exactly those merges applied in order."""
    model = _model("llama", len(tokenizer), layers=10)
    req = PruneRequest(
        ratio=0.5,
        data_dir=str(data_dir),
        calib_samples=3,
        calib_seq_len=16,
        options={"merge": 2, "threshold": 0.0},
    )
    pruned, meta = apply(LACO, copy.deepcopy(model), tokenizer, req)
    blocks = req.calibration(tokenizer)
    assert len(meta["merges"]) == 3  # merges of 2 layers remove one each
    replay = copy.deepcopy(model)
    for merge in meta["merges"]:
        replay = rdsc_merge(replay, merge["base"], len(merge["layers"]) - 1)
        assert merge["similarity"] == pytest.approx(_direct_similarity(model, replay, blocks), abs=1e-5)
        assert merge["similarity"] > meta["threshold_used"]
    ids = _ids(len(tokenizer))
    with torch.no_grad():
        assert torch.equal(pruned(ids).logits, replay(ids).logits)
    accepted = [row for row in meta["final_pass"] if row["accepted"]]
    assert [row["layers"] for row in accepted] == [m["layers"] for m in meta["merges"]]
    assert all(row["similarity"] <= meta["threshold_used"] for row in meta["final_pass"] if not row["accepted"])


# ------------------------------------------------------------------------------------------ walk and budget


def _paper_walk(n_layers: int, n_remove: int, walk: Walk, decide) -> list[tuple[int, int]]:
    """Algorithm 1 as printed (plus the budget stop), without the early exit of doomed passes."""
    merges, length, removed = [], n_layers, 0
    pos = n_layers - walk.keep_last - walk.merge
    while pos >= walk.lowest and removed < n_remove:
        size = min(walk.merge, n_remove - removed + 1)
        if decide(tuple(merges), pos, size):
            merges.append((pos, size))
            length -= size - 1
            removed += size - 1
            pos = min(pos - walk.interval, length - walk.keep_last - walk.merge)
        else:
            pos -= 1
    return merges


def test_walk_matches_algorithm_1_and_its_bound():
    """Against the plain loop over many accept patterns: no walk removes more than max_removable (so refusing
    a range up front is right), and every walk that reaches the budget is the one _search takes."""
    rng = random.Random(0)
    checked = 0
    for n_layers, merge, lowest, keep_last, interval in itertools.product(
        [6, 9, 14], [2, 3, 4], [0, 1, 3], [0, 1, 2], [1, 2, 3]
    ):
        walk = Walk(merge, lowest, keep_last, interval)
        if walk.start(n_layers) < lowest:
            continue
        for n_remove in range(1, n_layers):
            bound = max_removable(n_layers, n_remove, walk)
            for _ in range(6):
                p = rng.random()
                table: dict = {}

                def decide(history, pos, size, table=table, p=p):
                    return table.setdefault((history, pos, size), rng.random() < p)

                plain = _paper_walk(n_layers, n_remove, walk, decide)
                removed = sum(size - 1 for _, size in plain)
                assert removed <= bound
                trace = _search(n_layers, n_remove, walk, lambda h, pos, size: (0.0, decide(h, pos, size)))
                if removed == n_remove:
                    assert [(pos, size) for pos, size, _, ok in trace if ok] == plain
                    checked += 1
            everything = _paper_walk(n_layers, n_remove, walk, lambda *a: True)
            assert sum(size - 1 for _, size in everything) == bound
    assert checked > 500


@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_removed_layers_are_the_nearest_whole_layer_count(tokenizer, data_dir, family, ratio):
    model = _model(family, len(tokenizer), layers=10)
    per_layer = count_params(get_adapter(model).layers()[0])
    budget = ffn_rows_budget(model, ratio)
    k = _nearest_count(per_layer, 10, budget)
    assert k == {"llama": {0.1: 1, 0.3: 2, 0.5: 3}, "opt": {0.1: 0, 0.3: 1, 0.5: 2}}[family][ratio]
    req = PruneRequest(ratio=ratio, data_dir=str(data_dir), calib_samples=3, calib_seq_len=16, seed=1)
    pruned, meta = apply(LACO, copy.deepcopy(model), tokenizer, req)
    assert meta["layers_removed"] == len(meta["removed_layers"]) == k
    assert pruned.config.num_hidden_layers == len(get_adapter(pruned).layers()) == 10 - k
    assert meta["params_removed"] == count_params(model) - count_params(pruned) == k * per_layer
    assert meta["param_budget"] == budget
    assert sum(len(g) - 1 for g in meta["merged_groups"]) == k
    assert all(m["similarity"] > meta["threshold_used"] for m in meta["merges"])
    assert all(len(m["layers"]) <= 4 for m in meta["merges"])  # C = 4 layers at most per merge


@pytest.mark.parametrize("ratio", [0.3, 0.35])
def test_nominal_ratio_removes_floor_r_l_layers(tokenizer, data_dir, ratio):
    """budget=ratio: the walk removes ⌊r·L⌋ layers (round(0.35·10) would be 4), whatever PruneNet's budget is."""
    model = _model("llama", len(tokenizer), layers=10)
    per_layer = count_params(get_adapter(model).layers()[0])
    req = PruneRequest(ratio, data_dir=str(data_dir), calib_samples=3, calib_seq_len=16, options={"budget": "ratio"})
    pruned, meta = apply(LACO, copy.deepcopy(model), tokenizer, req)
    k = math.floor(Fraction(str(ratio)) * 10)
    assert meta["layers_removed"] == len(meta["removed_layers"]) == k and meta["budget"] == "ratio"
    assert meta["params_removed"] == count_params(model) - count_params(pruned) == k * per_layer
    assert meta["param_budget"] is None and k != _nearest_count(per_layer, 10, ffn_rows_budget(model, ratio))


def test_threshold_relaxes_until_the_budget_is_met(tokenizer, data_dir):
    """T = 1 passes nothing (s <= 1): T is lowered by the step until the first candidate passes, which removes the
    whole budget, so the threshold used is the largest grid value below its directly computed similarity."""
    model = _model("llama", len(tokenizer), layers=10)
    req = PruneRequest(
        ratio=0.5,
        data_dir=str(data_dir),
        calib_samples=3,
        calib_seq_len=16,
        options={"threshold": 1.0, "threshold_step": 0.05},
    )
    _, meta = apply(LACO, copy.deepcopy(model), tokenizer, req)
    s = _direct_similarity(model, rdsc_merge(copy.deepcopy(model), 5, 3), req.calibration(tokenizer))
    passes = next(k for k in range(100) if round(1.0 - 0.05 * k, 10) < s) + 1
    assert meta["merges"] == [{"base": 5, "layers": [5, 6, 7, 8], "similarity": pytest.approx(s, abs=1e-5)}]
    assert meta["threshold_passes"] == passes > 1
    assert meta["threshold_used"] == round(1.0 - 0.05 * (passes - 1), 10) < s
    # the failing passes tried bases 5, 4, 3, 2 (H = 2) with nothing merged yet: each computed once, then looked up
    assert meta["candidates_evaluated"] == 4


def test_range_too_small_is_refused(tokenizer, data_dir):
    model = _model("llama", len(tokenizer), layers=10)
    req = PruneRequest(
        ratio=0.5, data_dir=str(data_dir), calib_samples=2, calib_seq_len=16, options={"merge": 2, "lowest": 5}
    )
    assert max_removable(10, 3, Walk(merge=2, lowest=5)) == 2
    with pytest.raises(PruneNetError, match="at most 2 of the 3 layers.*lower laco.lowest"):
        apply(LACO, copy.deepcopy(model), tokenizer, req)
    with pytest.raises(PruneNetError, match="laco.merge must be at least 2"):
        apply(LACO, copy.deepcopy(model), tokenizer, PruneRequest(ratio=0.5, options={"merge": 1}))
    with pytest.raises(PruneNetError, match="no merge of [0-9]+ layers fits"):
        apply(LACO, _model("llama", len(tokenizer), layers=3), tokenizer, PruneRequest(ratio=0.5))


def test_laco_is_deterministic_for_a_seed(tokenizer, data_dir):
    model = _model("llama", len(tokenizer), layers=10)
    req = PruneRequest(ratio=0.3, data_dir=str(data_dir), calib_samples=3, calib_seq_len=16, seed=2)
    metas = [apply(LACO, copy.deepcopy(model), tokenizer, req)[1] for _ in range(2)]
    for key in ("merges", "final_pass", "threshold_used", "threshold_passes"):
        assert metas[0][key] == metas[1][key]


# --------------------------------------------------------------------------------------------- checkpoint


@pytest.mark.parametrize("family", ["llama", "opt", "qwen3"])
def test_laco_saves_a_plain_checkpoint(tokenizer, data_dir, tmp_path, family):
    """compress() end to end: plain from_pretrained reloads the in-memory model's logits (with and without a KV
    cache), the config's layer count and per-layer attention types follow the kept base layers."""
    model = _model(family, len(tokenizer), layers=8)
    src = tmp_path / "dense"
    save_checkpoint(model, tokenizer, src)
    req = PruneRequest(ratio=0.5, data_dir=str(data_dir), calib_samples=3, calib_seq_len=16, seed=1)
    meta, _ = compress(str(src), tmp_path / "laco", "laco", req)
    expected, own = apply(LACO, copy.deepcopy(model), tokenizer, req)
    assert own["merges"] == meta["merges"] and meta["layers_removed"] >= 1
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "laco"), dtype=torch.float32).eval()
    kept = [i for i in range(8) if i not in meta["removed_layers"]]
    assert reloaded.config.num_hidden_layers == len(get_adapter(reloaded).layers()) == len(kept)
    if family == "qwen3":
        assert reloaded.config.layer_types == [model.config.layer_types[i] for i in kept]
    assert count_params(reloaded) == count_params(model) - meta["params_removed"]
    assert read_meta(tmp_path / "laco")["stats"]["params"] == count_params(reloaded)
    ids = _ids(len(tokenizer))
    with torch.no_grad():
        ref = expected(ids).logits
        torch.testing.assert_close(reloaded(ids).logits, ref, atol=1e-5, rtol=0)
        prefix = reloaded(ids[:, :-1], use_cache=True)
        step = reloaded(ids[:, -1:], past_key_values=prefix.past_key_values, use_cache=True).logits
    torch.testing.assert_close(step[:, -1], ref[:, -1], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------- SmolLM2


@pytest.mark.slow
def test_smollm2_laco_at_0_2(smollm2, data_dir, one_thread):
    """The embedded model at r = 0.2: 4 layers go (the nearest whole-layer count), every accepted merge passed
    the threshold finally used, and the last merge's s is the final model's own similarity to the dense one."""
    dense, tok = smollm2
    req = PruneRequest(ratio=0.2, data_dir=str(data_dir), calib_samples=8, calib_seq_len=64, seed=0)
    per_layer = count_params(get_adapter(dense).layers()[0])
    k = _nearest_count(per_layer, 30, ffn_rows_budget(dense, 0.2))
    assert k == 4
    pruned, meta = apply(LACO, copy.deepcopy(dense), tok, req)
    assert meta["layers_removed"] == k and pruned.config.num_hidden_layers == 30 - k
    assert meta["params_removed"] == k * per_layer
    assert meta["merges"] and all(m["similarity"] > meta["threshold_used"] for m in meta["merges"])
    assert meta["threshold_used"] <= 0.65
    s = _direct_similarity(dense, pruned, req.calibration(tok))
    assert meta["merges"][-1]["similarity"] == pytest.approx(s, abs=1e-4)
