"""LLM-Pruner: groups against a masked dense model, Taylor scores against finite differences, checkpoints against
the in-memory model (the groups it removes and the budget rule: tests/test_llm_pruner_ranking.py)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunenet.arch import get_adapter
from prunenet.budget import ffn_rows_budget
from prunenet.checkpoints import format_for, per_layer_shapes
from prunenet.errors import PruneNetError
from prunenet.methods import METHODS, PruneRequest
from prunenet.methods.pipeline import apply
from prunenet.models import load_model, save_checkpoint
from prunenet.slicing import prune_ffn
from prunenet.stats import count_params
from prunenet.structured.budget import group_params
from prunenet.structured.groups import aggregate, attention_members, ffn_members, kept
from prunenet.structured.taylor import Gradients, gradients, member_scores, sample_loss, scored_params
from prunenet.surgery import slice_attention

FAMILIES = ["llama", "opt", "phi"]


def _ids(vocab: int, shape=(2, 10), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _request(data_dir, ratio=0.3, **options) -> PruneRequest:
    options = {"first": 1, "last": 0} | options
    return PruneRequest(ratio=ratio, data_dir=str(data_dir), calib_samples=3, calib_seq_len=16, seed=0, options=options)


# ------------------------------------------------------------------------------------------------------- groups


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_groups_equal_the_masked_dense_model(tiny_model, family):
    """Removing KV groups and FFN channels = zeroing those heads' o columns and those channels' down columns."""
    model = tiny_model(family)
    masked, pruned = copy.deepcopy(model), copy.deepcopy(model)
    adapter = get_adapter(masked)
    a = adapter.attention(adapter.layers()[1])
    drop_groups, drop_rows = [0], [1, 5, 40, 95]
    with torch.no_grad():
        for layer in adapter.layers()[1:]:
            lay = adapter.attention(layer)
            for g in drop_groups:
                lay.o.weight[:, g * a.group_size * a.head_dim : (g + 1) * a.group_size * a.head_dim] = 0
            adapter.ffn(layer)[2].weight[:, drop_rows] = 0
    p_adapter = get_adapter(pruned)
    rows = []
    for i, layer in enumerate(p_adapter.layers()):
        n = p_adapter.ffn(layer)[0].out_features
        keep = [r for r in range(n) if i == 0 or r not in drop_rows]
        rows.append(torch.tensor(keep))
        if i > 0:
            keep = torch.tensor([g for g in range(a.num_kv_heads) if g not in drop_groups])
            left = slice_attention(pruned, layer, keep)
            assert left == a.num_kv_heads - len(drop_groups)
    prune_ffn(pruned, rows)
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids).logits, masked(ids).logits, atol=1e-5, rtol=0)
        # with a KV cache too: decode one token after the prompt
        out = pruned(ids[:, :-1], use_cache=True)
        step = pruned(ids[:, -1:], past_key_values=out.past_key_values).logits
        torch.testing.assert_close(step[:, -1], masked(ids).logits[:, -1], atol=1e-5, rtol=0)


def test_group_parameters_are_what_slicing_removes(tiny_model):
    for family in FAMILIES:
        model = tiny_model(family)
        layer = get_adapter(model).layers()[1]
        before = count_params(model)
        ffn, attn = ffn_members(model, layer), attention_members(model, layer)
        kv = attn[0].index.shape[0]
        slice_attention(model, layer, torch.arange(1, kv))
        assert before - count_params(model) == group_params(attn)
        rows = [torch.arange(get_adapter(model).ffn(lay)[0].out_features) for lay in get_adapter(model).layers()]
        rows[1] = rows[1][2:]
        mid = count_params(model)
        prune_ffn(model, rows)
        assert mid - count_params(model) == 2 * group_params(ffn)


def test_aggregations_and_kept_groups():
    scores = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 0.5, 1.0])]
    assert aggregate(scores, "sum").tolist() == [5.0, 2.5, 4.0]
    assert aggregate(scores, "prod").tolist() == [4.0, 1.0, 3.0]
    assert aggregate(scores, "max").tolist() == [4.0, 2.0, 3.0]
    assert aggregate(scores, "last").tolist() == [4.0, 0.5, 1.0]
    assert kept(torch.tensor([5.0, 2.5, 4.0, 2.5]), 2).tolist() == [0, 2]
    assert kept(torch.tensor([1.0, 1.0, 1.0]), 1).tolist() == [0, 1]  # ties: the lower index stays
    with pytest.raises(PruneNetError):
        kept(torch.tensor([1.0, 2.0]), 2)


# ------------------------------------------------------------------------------------------------------- Taylor


def _double_model(tiny_model, family="opt"):
    """Float64 throughout: OPT's LayerNorm keeps the input dtype (LLaMA's RMSNorm rounds through float32, which
    drowns a finite difference)."""
    return tiny_model(family).double()


def test_taylor_scores_equal_finite_differences(tiny_model):
    """vector: Σ g·w of a member (bias entries of rows included) = dL/dt of L(θ + t·member) by central differences;
    element1: Σ|g_k w_k| with each g_k from central differences; L = mean over windows of the mean token loss."""
    model = _double_model(tiny_model)
    ids = _ids(model.config.vocab_size, (2, 8))
    layer = get_adapter(model).layers()[1]
    members = ffn_members(model, layer) + attention_members(model, layer)
    stats = gradients(model, ids, scored_params(members), fisher=False)

    def loss() -> float:
        with torch.no_grad():
            return float(sum(sample_loss(model, w[None]) for w in ids) / len(ids))

    def central(params_and_directions, eps=1e-6) -> float:
        with torch.no_grad():
            for p, d in params_and_directions:
                p += eps * d
            up = loss()
            for p, d in params_and_directions:
                p -= 2 * eps * d
            down = loss()
            for p, d in params_and_directions:
                p += eps * d
        return (up - down) / (2 * eps)

    for m in members:  # fc1 rows (+ bias), fc2 columns, q/k/v rows (+ bias), out_proj columns
        for g in (0, 1):
            idx = m.index[g]
            moves = []
            direction = torch.zeros_like(m.linear.weight)
            if m.dim == 0:
                direction[idx] = m.linear.weight[idx]
                bias = torch.zeros_like(m.linear.bias)
                bias[idx] = m.linear.bias[idx]
                moves.append((m.linear.bias, bias))
            else:
                direction[:, idx] = m.linear.weight[:, idx]
            moves.append((m.linear.weight, direction))
            fd = central(moves)
            assert member_scores(m, stats, "vector")[g].item() == pytest.approx(abs(fd), rel=1e-4)
    m = members[1]  # fc2 columns, element-wise on a few weights of column 3
    w = m.linear.weight
    for row in (0, 7, 31):
        unit = torch.zeros_like(w)
        unit[row, 3] = 1.0
        assert stats.mean(w)[row, 3].item() == pytest.approx(central([(w, unit)]), rel=1e-4, abs=1e-10)
    direct = (stats.mean(w)[:, 3] * w[:, 3].detach()).abs().sum()
    assert member_scores(m, stats, "element1")[3].item() == pytest.approx(direct.item(), rel=1e-12)


def test_fisher_diagonal_is_the_mean_squared_per_sample_gradient(tiny_model):
    model = _double_model(tiny_model, "opt")
    ids = _ids(model.config.vocab_size, (3, 8))
    layer = get_adapter(model).layers()[0]
    members = ffn_members(model, layer)
    stats = gradients(model, ids, scored_params(members), fisher=True)
    w = members[0].linear.weight
    per = []
    for window in ids:
        model.zero_grad()
        sample_loss(model, window[None]).backward()
        per.append(w.grad.detach().clone())
    model.zero_grad()
    torch.testing.assert_close(stats.fisher_mean(w), torch.stack(per).pow(2).mean(0))
    torch.testing.assert_close(stats.mean(w), torch.stack(per).mean(0))
    m = members[0]
    h, g, wd = stats.fisher_mean(w)[5], stats.mean(w)[5], w[5].detach()
    expect = (g * wd - 0.5 * h * wd * wd).abs().sum() + 0  # OPT's fc1 has a bias entry per row too
    b = m.linear.bias
    expect += (stats.mean(b)[5] * b[5] - 0.5 * stats.fisher_mean(b)[5] * b[5] ** 2).abs()
    assert member_scores(m, stats, "element2")[5].item() == pytest.approx(expect.item(), rel=1e-12)
    assert all(p.grad is None for p in model.parameters())  # nothing left behind


def _gradients_after_backward(model, blocks, params, fisher):
    """The former path: each window's whole backward first, then every .grad added to the sums at once."""
    stats = Gradients(params, fisher)
    for p in model.parameters():
        p.requires_grad_(p in set(stats.params))
    for ids in blocks:
        sample_loss(model, ids[None]).backward()
        for p in stats.params:
            g = p.grad.double()
            stats.grad[p] += g
            if fisher:
                stats.fisher[p] += g * g
            p.grad = None
        stats.samples += 1
    for p in model.parameters():
        p.requires_grad_(True)
    return stats


@pytest.mark.parametrize("importance", ["element1", "element2"])
def test_gradients_folded_in_hooks_equal_the_whole_backward_path(
    tiny_model, tokenizer, data_dir, monkeypatch, importance
):
    """Folding each .grad into the sums in its post-accumulate hook (and freeing it) gives bit-identical sums, scores
    and pruned model, and no two scored parameters hold a .grad at once."""
    import prunenet.structured.taylor as taylor

    model = tiny_model("llama")
    layer = get_adapter(model).layers()[1]
    members = ffn_members(model, layer) + attention_members(model, layer)
    ids = _ids(model.config.vocab_size, (3, 12))
    live = []
    fold = taylor.Gradients.fold
    counted = lambda s, p: live.append(sum(q.grad is not None for q in s.params)) or fold(s, p)  # noqa: E731
    monkeypatch.setattr(taylor.Gradients, "fold", counted)
    hooked = gradients(model, ids, scored_params(members), fisher=importance == "element2")
    monkeypatch.setattr(taylor.Gradients, "fold", fold)
    assert live and max(live) == 1  # only the parameter being folded has a gradient
    whole = _gradients_after_backward(model, ids, scored_params(members), importance == "element2")
    for p, q in zip(hooked.params, whole.params, strict=True):
        assert torch.equal(hooked.grad[p], whole.grad[q])
        if importance == "element2":
            assert torch.equal(hooked.fisher[p], whole.fisher[q])
    request = _request(data_dir, 0.3, importance=importance)
    new, meta = apply(METHODS.get("llm-pruner"), copy.deepcopy(model), tokenizer, request)
    monkeypatch.setattr(taylor, "gradients", _gradients_after_backward)
    old, old_meta = apply(METHODS.get("llm-pruner"), copy.deepcopy(model), tokenizer, request)
    assert meta["removed_kv_groups"] == old_meta["removed_kv_groups"]
    assert new.state_dict().keys() == old.state_dict().keys()
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in new.state_dict().items())


def test_gradient_sums_live_in_host_memory_whatever_the_models_device():
    """The float64 sums (twice a float32 model) stay off the accelerator: parameters on another device (here
    ``meta``, which holds no data) get host sums, so a GPU holds the model and one gradient at a time."""
    import prunenet.structured.taylor as taylor

    params = [nn.Parameter(torch.empty(3, 4, device="meta")), nn.Parameter(torch.empty(4, device="meta"))]
    stats = taylor.Gradients(params, fisher=True)
    for p in params:
        for sums in (stats.grad[p], stats.fisher[p]):
            assert sums.device.type == "cpu" and sums.dtype == torch.float64 and sums.shape == p.shape


# ------------------------------------------------------------------------------------------------------- method


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("structures", ["ffn+attention", "ffn"])
def test_method_meets_the_budget_and_reloads(tiny_model, tokenizer, data_dir, tmp_path, family, structures):
    model = tiny_model(family)
    dense = count_params(model)
    request = _request(data_dir, 0.4, structures=structures)
    pruned, meta = apply(METHODS.get("llm-pruner"), copy.deepcopy(model), tokenizer, request)
    assert meta["params_removed"] == dense - count_params(pruned)
    assert meta["param_budget"] == ffn_rows_budget(model, 0.4)
    assert abs(meta["params_removed"] - meta["param_budget"]) <= 0.01 * dense
    assert meta["kv_heads"][0] == get_adapter(model).attention(get_adapter(model).layers()[0]).num_kv_heads
    if structures == "ffn":
        assert meta["kv_groups_removed_per_layer"] == 0
    save_checkpoint(pruned, tokenizer, tmp_path / "m", meta)
    reloaded, _ = load_model(str(tmp_path / "m"), dtype="float32")
    if meta["kv_groups_removed_per_layer"]:
        assert format_for(reloaded.config) is per_layer_shapes
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, pruned(ids).logits, atol=1e-5, rtol=0)
    assert count_params(reloaded) == count_params(pruned)


@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.6])
def test_nominal_ratio_is_the_releases_pruning_ratio(tiny_model, tokenizer, data_dir, family, ratio):
    """budget=ratio: each pruned layer loses what hf_prune.py's --pruning_ratio removes there (MetaPruner:
    n − int(n·(1 − r)) of gate_proj's n channels; of q_proj's q rows q − int(q·(1 − r)), in whole head groups),
    sized here from the modules' own shapes."""
    model = tiny_model(family)
    adapter = get_adapter(model)
    layer = adapter.layers()[1]
    up, gate, down = adapter.ffn(layer)
    a = adapter.attention(layer)
    per_channel = sum(lin.in_features + (lin.bias is not None) for lin in (up, gate) if lin is not None)
    per_channel += down.out_features
    unit = a.group_size * a.head_dim  # q rows of one KV group (one head in the release's LLaMA)
    rows = lambda lin, k: k * (lin.in_features + (lin.bias is not None))  # noqa: E731
    per_group = rows(a.q, unit) + rows(a.k, a.head_dim) + rows(a.v, a.head_dim) + unit * a.o.out_features
    n, q = up.out_features, a.q.out_features
    c, h = n - int(n * (1 - ratio)), (q - int(q * (1 - ratio))) // unit
    request = _request(data_dir, ratio, budget="ratio")
    pruned, meta = apply(METHODS.get("llm-pruner"), copy.deepcopy(model), tokenizer, request)
    assert (meta["channels_removed_per_layer"], meta["kv_groups_removed_per_layer"]) == (c, h)
    layers = len(adapter.layers()) - 1  # first = 1, last = 0
    assert (
        meta["params_removed"]
        == count_params(model) - count_params(pruned)
        == layers * (c * per_channel + h * per_group)
    )
    assert meta["budget"] == "ratio" and meta["param_budget"] is None


def test_heads_are_pruned_when_the_budget_calls_for_them(tiny_model, tokenizer, data_dir):
    """Tiny LLaMA at 0.6: the rule removes one of the two KV groups in each pruned layer; the first stays whole."""
    model = tiny_model("llama")
    pruned, meta = apply(METHODS.get("llm-pruner"), copy.deepcopy(model), tokenizer, _request(data_dir, 0.6))
    assert meta["kv_groups_removed_per_layer"] == 1 and meta["kv_heads"] == [2, 1, 1]
    adapter = get_adapter(pruned)
    assert [adapter.attention(lay).num_heads for lay in adapter.layers()] == [4, 2, 2]


def test_nothing_removed_is_the_identity(tiny_model, tokenizer, data_dir):
    model = tiny_model("llama")
    pruned, meta = apply(METHODS.get("llm-pruner"), copy.deepcopy(model), tokenizer, _request(data_dir, 0.0001))
    assert meta["params_removed"] == 0 and meta["channels_removed_per_layer"] == 0
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids).logits, model(ids).logits, atol=0, rtol=0)


def test_layer_range_is_checked(tiny_model, tokenizer, data_dir):
    with pytest.raises(PruneNetError, match="first"):
        METHODS.get("llm-pruner").check(_request(data_dir, first=-1))
    with pytest.raises(PruneNetError, match="leave no layer"):
        apply(METHODS.get("llm-pruner"), tiny_model("llama"), tokenizer, _request(data_dir, first=2, last=1))


def test_recovery_fine_tuning_keeps_the_pruned_heads(tiny_model, tokenizer, data_dir, tmp_path):
    """The paper's "w/ tune" rows: this workflow's LoRA RFT on an LLM-Pruner checkpoint keeps its per-layer
    shapes and reloads to the logits of the merged model it saved."""
    from prunenet.rft import finetune

    pruned, meta = apply(METHODS.get("llm-pruner"), tiny_model("llama"), tokenizer, _request(data_dir, 0.6))
    src = save_checkpoint(pruned, tokenizer, tmp_path / "pruned", meta)
    finetune(str(src), str(tmp_path / "rft"), "ptb", 12, str(data_dir), seq_len=32, batch_size=4, max_steps=2)
    tuned, _ = load_model(str(tmp_path / "rft"), dtype="float32")
    assert getattr(tuned.config, per_layer_shapes.HEADS_KEY) == [2, 1, 1]
    adapter = get_adapter(tuned)
    assert [adapter.attention(lay).num_kv_heads for lay in adapter.layers()] == [2, 1, 1]
    assert count_params(tuned) == count_params(pruned)
