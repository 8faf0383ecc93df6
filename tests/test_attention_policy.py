"""PruneNet on attention (paper T20): the state's rows are the groups' rows, the draw's distribution equals brute-force
enumeration, the pruned model equals the dense one with those heads' outputs masked, the penalty is scipy's KS,
checkpoints reload with the same logits, and policies of the other target are refused before any model loads."""

from __future__ import annotations

import copy
import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from prunenet.arch import get_adapter
from prunenet.attention_policy import (
    draw_groups,
    group_penalties,
    group_states,
    kept_total,
    mean_group_penalty,
    prune_attention,
    train_attention,
)
from prunenet.cli import main
from prunenet.errors import PruneNetError
from prunenet.models import load_model, save_checkpoint
from prunenet.penalties import spectra
from prunenet.policy import PolicyNetwork
from prunenet.stats import count_params
from prunenet.structured.budget import group_params
from prunenet.structured.groups import attention_members
from prunenet.training import TrainConfig

FAMILIES = ["llama", "opt", "phi"]


def _ids(vocab: int, shape=(2, 10), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _policy(states: torch.Tensor, seed: int = 0) -> PolicyNetwork:
    return PolicyNetwork(states.shape[1], states.shape[2], generator=torch.Generator().manual_seed(seed)).eval()


def test_one_layers_state_at_a_time_beside_the_model(tiny_model, monkeypatch):
    """group_states and prune_attention copy one layer's state while no earlier layer's copy is alive (LLaMA-2-7B:
    6.4 GB of float32 states beside the model otherwise), and prune_attention's layer-by-layer importances give the
    draw the whole-model states give."""
    import weakref

    import prunenet.attention_policy as ap

    real, made, alive_at_call = ap.layer_state, [], []

    def spy(model, layer):
        alive_at_call.append(sum(r() is not None for r in made))
        mat = real(model, layer)
        made.append(weakref.ref(mat))
        return mat

    model = tiny_model("llama")
    states, groups = group_states(model)
    policy = _policy(states)
    ref = copy.deepcopy(model)
    monkeypatch.setattr(ap, "layer_state", spy)
    assert torch.equal(group_states(model)[0], states)
    monkeypatch.setattr(ap, "group_states", lambda *_: pytest.fail("prune_attention built every layer's state"))
    meta = prune_attention(model, policy, 0.34, seed=3)
    assert len(alive_at_call) == 2 * len(states) and not any(alive_at_call)
    importance = ap.group_importance(policy, states, groups)  # the whole-model computation, by hand
    gen = torch.Generator().manual_seed(3)
    kept = ap.select_groups("policy", importance, (len(states), groups), kept_total(len(states), groups, 0.34), gen)
    assert meta["kv_heads"] == prune_attention(ref, policy, 0.34, seed=3)["kv_heads"]
    assert meta["removed_kv_groups"] == {i: sorted(set(range(groups)) - set(k.tolist())) for i, k in enumerate(kept)}


def test_state_stacks_each_groups_q_k_v_rows(tiny_model):
    """Tiny LLaMA: 4 query heads, 2 KV heads of 16 dims -> per group [q heads 2g, 2g+1; k head g; v head g]."""
    model = tiny_model("llama")
    states, groups = group_states(model)
    assert groups == 2 and states.shape == (3, 2 * 4 * 16, 64)
    a = get_adapter(model).attention(get_adapter(model).layers()[1])
    for g in range(2):
        expect = torch.cat(
            [a.q.weight[32 * g : 32 * (g + 1)], a.k.weight[16 * g : 16 * (g + 1)], a.v.weight[16 * g : 16 * (g + 1)]]
        )
        torch.testing.assert_close(states[1, 64 * g : 64 * (g + 1)], expect, rtol=0, atol=0)


def _brute_force_sets(w: torch.Tensor, total: int) -> dict[tuple, float]:
    """P(kept set) of the two-stage draw, by enumerating every stage-1 choice and every stage-2 order."""
    L, g = w.shape
    out: Counter = Counter()
    for first in itertools.product(range(g), repeat=L):
        p1 = math.prod(float(w[l, first[l]] / w[l].sum()) for l in range(L))
        pool = [(l, j) for l in range(L) for j in range(g) if j != first[l]]
        for order in itertools.permutations(pool, total - L):
            p2, left = 1.0, sum(float(w[x]) for x in pool)
            for x in order:
                p2 *= float(w[x]) / left
                left -= float(w[x])
            kept = tuple(sorted({(l, first[l]) for l in range(L)} | set(order)))
            out[kept] += p1 * p2
    return dict(out)


def test_draw_keeps_one_per_layer_and_follows_the_brute_force_distribution():
    w = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.7, 0.4]], dtype=torch.float64)
    exact = _brute_force_sets(w, 4)
    assert abs(sum(exact.values()) - 1) < 1e-12
    gen, n = torch.Generator().manual_seed(0), 6000
    seen: Counter = Counter()
    for _ in range(n):
        kept, _ = draw_groups(w, 4, gen)
        assert all(len(k) >= 1 for k in kept) and sum(len(k) for k in kept) == 4
        seen[tuple(sorted((l, int(j)) for l, k in enumerate(kept) for j in k))] += 1
    assert set(seen) <= set(exact)
    for key, p in exact.items():  # binomial sd <= 0.0065 at n = 6000
        assert abs(seen[key] / n - p) < 0.03, (key, seen[key] / n, p)


def test_stage_one_log_probability_is_the_product_of_layer_categoricals():
    """With one group kept per layer the draw is stage 1 alone: log π = Σ_l log w[l, kept_l] / Σ_j w[l, j]."""
    w = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.7, 0.4]], dtype=torch.float64)
    kept, log_prob = draw_groups(w, 2, torch.Generator().manual_seed(3))
    expect = sum(math.log(float(w[l, k[0]] / w[l].sum())) for l, k in enumerate(kept))
    assert abs(float(log_prob) - expect) < 1e-6


def test_budget_rule():
    assert kept_total(30, 3, 0.3) == 63 and kept_total(30, 3, 0.1) == 81 and kept_total(30, 3, 0.0) == 90
    with pytest.raises(PruneNetError, match="fewer than one KV group"):
        kept_total(30, 3, 0.7)


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_model_equals_the_masked_dense_model_and_reloads(tiny_model, tokenizer, tmp_path, family):
    """Dropping a KV group = zeroing its query heads' o columns; parameters fall by the groups' count; reload."""
    model = tiny_model(family)
    states, groups = group_states(model)
    pruned = copy.deepcopy(model)
    meta = prune_attention(pruned, _policy(states), 0.5, seed=1)
    removed = meta["removed_kv_groups"]
    assert sum(map(len, removed.values())) == round(0.5 * len(states) * groups)
    assert all(len(r) < groups for r in removed.values())
    masked, adapter = copy.deepcopy(model), get_adapter(model)
    with torch.no_grad():
        for i, layer in enumerate(get_adapter(masked).layers()):
            a = get_adapter(masked).attention(layer)
            for g in removed[i]:
                a.o.weight[:, g * a.group_size * a.head_dim : (g + 1) * a.group_size * a.head_dim] = 0
    per_group = group_params(attention_members(model, adapter.layers()[0]))
    assert count_params(model) - count_params(pruned) == per_group * sum(map(len, removed.values()))
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids).logits, masked(ids).logits, atol=1e-5, rtol=0)
    save_checkpoint(pruned, tokenizer, tmp_path / "m", {"method": "prunenet-attention"} | meta)
    reloaded, _ = load_model(str(tmp_path / "m"), dtype="float32")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, pruned(ids).logits, atol=1e-5, rtol=0)
    assert count_params(reloaded) == count_params(pruned)


def test_penalty_is_scipys_ks_of_the_kept_groups_singular_values(tiny_model):
    states, groups = group_states(tiny_model("llama"))
    kept = [torch.tensor([0]), torch.tensor([0, 1]), torch.tensor([1])]
    pens = group_penalties(states, groups, kept, "ks", "svd", spectra(states, "svd"))
    rows = states.shape[1] // groups
    for l, k in enumerate(kept):
        sub = torch.cat([states[l, g * rows : (g + 1) * rows] for g in k.tolist()])
        a = np.linalg.svd(states[l].double().numpy(), compute_uv=False)
        b = np.linalg.svd(sub.double().numpy(), compute_uv=False)
        assert abs(float(pens[l]) - ks_2samp(a, b).statistic) < 1e-9


def test_training_lowers_the_penalty_below_random_groups(tiny_model):
    """A policy trained on planted layers (group 0 of each layer carries the spectrum) beats random groups."""
    gen = torch.Generator().manual_seed(0)
    L, g, rows, d = 6, 3, 24, 16
    states = 0.05 * torch.randn(L, g * rows, d, generator=gen)
    states[:, :rows] += torch.randn(L, rows, d, generator=gen) * 3 + 2.0  # group 0: large, shared direction
    cfg = TrainConfig(ratio=0.6, episodes=60, lr=0.05, seed=0)
    result = train_attention(states, g, cfg, progress=False)
    trained = mean_group_penalty(states, g, "policy", 0.6, result.network(), 40, seed=5)
    random = mean_group_penalty(states, g, "random", 0.6, None, 40, seed=5)
    assert trained < 0.8 * random


def _train(model_dir, out, state, capsys):
    capsys.readouterr()
    argv = ["train", "--model", str(model_dir), "--out", str(out), "--meta-out", str(out.with_suffix(".json"))]
    return main(argv + ["--ratio", "0.5", "--episodes", "2", "--state", state, "--eval-samples", "1"])


def test_cli_trains_and_prunes_and_refuses_the_other_targets_policy(tiny_model, tokenizer, tmp_path, capsys):
    save_checkpoint(tiny_model("llama"), tokenizer, tmp_path / "dense", {})
    assert _train(tmp_path / "dense", tmp_path / "attn.safetensors", "qkv", capsys) == 0
    assert _train(tmp_path / "dense", tmp_path / "ffn.safetensors", "up", capsys) == 0
    prune = ["prune", "--model", str(tmp_path / "dense"), "--ratio", "0.5", "--seed", "0"]
    ok = prune + ["--method", "prunenet-attention", "--policy", str(tmp_path / "attn.safetensors")]
    assert main(ok + ["--out", str(tmp_path / "pruned")]) == 0
    reloaded, _ = load_model(str(tmp_path / "pruned"), dtype="float32")
    heads = [get_adapter(reloaded).attention(lay).num_kv_heads for lay in get_adapter(reloaded).layers()]
    assert sum(heads) == 3 and min(heads) >= 1
    for method, policy in (("prunenet-attention", "ffn"), ("prunenet", "attn")):
        capsys.readouterr()
        argv = prune + ["--method", method, "--policy", str(tmp_path / f"{policy}.safetensors")]
        assert main(argv + ["--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "does not prune" in err[0]
        assert not (tmp_path / "bad").exists()
