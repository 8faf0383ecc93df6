"""Depth pruning (ShortGPT): Block Influence, the parameter budget, layer removal, the saved checkpoint."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from fractions import Fraction

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, Gemma3TextConfig, Qwen3Config

from prunenet.arch import get_adapter
from prunenet.budget import ffn_rows_budget
from prunenet.checkpoints import hf, read_meta
from prunenet.depth import block_influence, layers_for_budget, nominal_layers, remove_layers
from prunenet.errors import PruneNetError
from prunenet.methods import METHODS, PruneRequest, compress
from prunenet.methods.pipeline import apply
from prunenet.models import save_checkpoint
from prunenet.stats import count_params

FAMILIES = ["llama", "opt", "phi"]


def _ids(vocab: int, shape=(2, 12), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _logits_skipping(model: nn.Module, drop: list[int], ids: torch.Tensor) -> torch.Tensor:
    """The dense model's logits with decoder layers ``drop`` made identities (forward hooks replacing outputs)."""

    def hook(module, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        return (x, *out[1:]) if isinstance(out, tuple) else x

    layers = get_adapter(model).layers()
    handles = [layers[j].register_forward_hook(hook, with_kwargs=True) for j in drop]
    try:
        return model(ids).logits
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_block_influence_equals_direct_cosines(tiny_model, family):
    """BI_l = 1 − mean cos(x_l, x_{l+1}) over every token, x from the model's own hidden states (final norm off)."""
    model = tiny_model(family)
    ids = _ids(model.config.vocab_size, (3, 10))
    bi = block_influence(model, ids, batch_size=2)  # two batches: the mean is over all tokens
    ref_model = copy.deepcopy(model)
    get_adapter(ref_model).set_final_norm(nn.Identity())  # hidden_states[-1] = the last layer's raw output
    with torch.no_grad():
        h = ref_model(ids, output_hidden_states=True).hidden_states
    ref = torch.stack([1 - torch.cosine_similarity(a.double(), b.double(), dim=-1).mean() for a, b in zip(h, h[1:])])
    assert bi.shape == (model.config.num_hidden_layers,)
    # float32 forwards in batches of 2 vs one batch of 3 round differently (BLAS blocking varies by host): ~1e-9;
    # a wrong pair or a wrong mean is off by > 1e-2
    torch.testing.assert_close(bi, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_layer_equals_identity_block(tiny_model, family):
    """Removing layer j gives the dense model's logits with layer j replaced by the identity, with and without
    a KV cache (the kept layers are renumbered, so incremental decoding indexes the right cache entries)."""
    model = tiny_model(family)
    ids = _ids(model.config.vocab_size)
    for drop in ([], [1], [0, 2]):
        ref = _logits_skipping(model, drop, ids)
        pruned = remove_layers(copy.deepcopy(model), drop)
        assert pruned.config.num_hidden_layers == 3 - len(drop)
        with torch.no_grad():
            torch.testing.assert_close(pruned(ids).logits, ref, atol=1e-5, rtol=0)
            prefix = pruned(ids[:, :-1], use_cache=True)
            step = pruned(ids[:, -1:], past_key_values=prefix.past_key_values, use_cache=True).logits
        torch.testing.assert_close(step[:, -1], ref[:, -1], atol=1e-5, rtol=0)


def test_remove_layers_refuses_to_empty_the_model(tiny_model):
    model = tiny_model("llama")
    with pytest.raises(PruneNetError, match="keep at least one"):
        remove_layers(model, [0, 1, 2])
    with pytest.raises(PruneNetError, match="cannot remove"):
        remove_layers(model, [5])


@pytest.mark.parametrize(
    ("config_cls", "extra"),
    [(Qwen3Config, {"use_sliding_window": True}), (Gemma3TextConfig, {})],
    ids=["qwen3", "gemma3"],
)
def test_per_layer_config_is_cut_and_reloads(config_cls, extra, tmp_path, tokenizer):
    """Per-layer attention types follow their layers; plain from_pretrained reloads the same logits."""
    config = config_cls(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=len(tokenizer),
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        **extra,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    types = list(model.config.layer_types)
    ids = _ids(len(tokenizer), (2, 12))
    ref = _logits_skipping(model, [1], ids)
    pruned = remove_layers(model, [1])
    assert pruned.config.layer_types == [types[0], types[2]]
    hf.save(pruned, tokenizer, tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32).eval()
    assert reloaded.config.num_hidden_layers == 2 and reloaded.config.layer_types == [types[0], types[2]]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_ffn_rows_budget_is_what_row_pruning_removes(tiny_model, tokenizer, family, ratio):
    model = tiny_model(family)
    dense = count_params(model)
    pruned, _ = METHODS.get("random").run(copy.deepcopy(model), tokenizer, PruneRequest(ratio=ratio))
    assert ffn_rows_budget(model, ratio) == dense - count_params(pruned)


def test_layers_for_budget_is_the_nearest_count_of_lowest_scores():
    """Against brute force over every count k: the k lowest-score layers, k minimising |removed − budget|."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        L = int(torch.randint(2, 8, (1,), generator=gen))
        scores = torch.rand(L, generator=gen, dtype=torch.float64)
        params = torch.randint(1, 10, (L,), generator=gen).tolist()
        budget = int(torch.randint(0, sum(params) + 5, (1,), generator=gen))
        order = torch.argsort(scores).tolist()
        gaps = [abs(sum(params[i] for i in order[:k]) - budget) for k in range(L)]  # k <= L - 1
        k = min(range(L), key=lambda k: (gaps[k], k))
        assert layers_for_budget(scores, params, budget) == sorted(order[:k])
    assert layers_for_budget(torch.tensor([0.3, 0.1, 0.2]), [5, 5, 5], 10**6) == [1, 2]  # one layer always stays
    assert layers_for_budget(torch.tensor([0.3, 0.1, 0.2]), [4, 4, 4], 6) == [1]  # tie 4 vs 8: fewer layers


def test_shortgpt_method_saves_a_plain_checkpoint(tiny_model, tokenizer, data_dir, tmp_path):
    """compress() end to end: the lowest-BI layers go, the checkpoint reloads with plain from_pretrained to the
    in-memory model's logits, and its parameter count is the dense count minus the removed layers'."""
    model = tiny_model("llama")
    src = tmp_path / "dense"
    save_checkpoint(model, tokenizer, src)
    req = PruneRequest(ratio=0.5, data_dir=str(data_dir), calib_samples=4, calib_seq_len=32, seed=1)
    meta, _ = compress(str(src), tmp_path / "short", "shortgpt", req)
    bi = torch.tensor(meta["block_influence"])
    drop = meta["removed_layers"]
    assert drop and set(drop) == set(torch.argsort(bi).tolist()[: len(drop)])
    per_layer = [count_params(layer) for layer in get_adapter(model).layers()]
    assert meta["params_removed"] == sum(per_layer[i] for i in drop)
    gaps = [abs(sum(sorted(per_layer)[:k]) - meta["param_budget"]) for k in range(3)]
    assert abs(meta["params_removed"] - meta["param_budget"]) == min(gaps)
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "short"), dtype=torch.float32).eval()
    assert count_params(reloaded) == count_params(model) - meta["params_removed"]
    assert read_meta(tmp_path / "short")["stats"]["params"] == count_params(reloaded)
    expected = remove_layers(copy.deepcopy(model), drop)
    ids = _ids(len(tokenizer))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, expected(ids).logits, atol=1e-6, rtol=0)


def test_nominal_layer_count_is_the_floor_of_r_times_l():
    """⌊r·L⌋ in exact arithmetic (0.58·50 is 28.999… in floating point), at most L − 1."""
    for n in range(1, 129):
        for r in [k / 100 for k in range(1, 100)]:
            assert nominal_layers(r, n) == min(math.floor(Fraction(str(r)) * n), n - 1), (r, n)


@pytest.mark.parametrize("ratio", [0.3, 0.35])
def test_shortgpt_at_the_nominal_ratio_removes_floor_r_l_layers(tokenizer, data_dir, ratio):
    """budget=ratio: the ⌊r·L⌋ lowest-BI layers go (the release takes a layer count; round(0.35·10) would be 4),
    recorded as such; budget=params (the default) still removes the count nearest PruneNet's parameter budget."""
    from conftest import tiny_config

    config = tiny_config("llama", len(tokenizer))
    config.num_hidden_layers = 10
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    per_layer = [count_params(layer) for layer in get_adapter(model).layers()]
    base = PruneRequest(ratio=ratio, data_dir=str(data_dir), calib_samples=3, calib_seq_len=24)
    pruned, meta = apply(
        METHODS.get("shortgpt"), copy.deepcopy(model), tokenizer, replace(base, options={"budget": "ratio"})
    )
    bi = torch.tensor(meta["block_influence"])
    k = math.floor(Fraction(str(ratio)) * 10)
    assert meta["removed_layers"] == sorted(torch.argsort(bi, stable=True).tolist()[:k]) and meta["budget"] == "ratio"
    assert count_params(model) - count_params(pruned) == meta["params_removed"] == k * per_layer[0]
    _, default = apply(METHODS.get("shortgpt"), copy.deepcopy(model), tokenizer, base)
    assert "budget" not in default and default["param_budget"] == ffn_rows_budget(model, ratio)
    assert default["removed_layers"] == layers_for_budget(bi, per_layer, default["param_budget"])


def test_shortgpt_is_deterministic_for_a_seed(tiny_model, tokenizer, data_dir):
    model = tiny_model("llama")
    req = PruneRequest(ratio=0.3, data_dir=str(data_dir), calib_samples=3, calib_seq_len=24, seed=2)
    metas = [apply(METHODS.get("shortgpt"), copy.deepcopy(model), tokenizer, req)[1] for _ in range(2)]
    assert metas[0]["block_influence"] == metas[1]["block_influence"]
    assert metas[0]["removed_layers"] == metas[1]["removed_layers"]


def test_smollm2_block_influence_and_removal(smollm2, data_dir, tmp_path):
    """On the embedded model: BI equals the direct cosines of its hidden states; removing the lowest-BI layers
    equals skipping them; the budget rule picks what it says at r = 0.2; the saved model reloads exactly."""
    from prunenet.data import calibration_blocks

    dense, tok = smollm2
    calib = calibration_blocks(tok, "wikitext2", data_dir, n_samples=2, seq_len=64, seed=0)
    bi = block_influence(dense, calib)
    with torch.no_grad():
        h = dense(calib, output_hidden_states=True).hidden_states  # h[l] enters layer l; the last one is normed
    ref = torch.stack([1 - torch.cosine_similarity(a.double(), b.double(), dim=-1).mean() for a, b in zip(h, h[1:-1])])
    torch.testing.assert_close(bi[:-1], ref, atol=1e-9, rtol=0)
    per_layer = [count_params(layer) for layer in get_adapter(dense).layers()]
    budget = ffn_rows_budget(dense, 0.2)
    assert budget == 30 * round(0.2 * 1536) * 3 * 576  # up + gate rows and down columns, no biases
    drop = layers_for_budget(bi, per_layer, budget)
    assert drop == sorted(torch.argsort(bi).tolist()[: round(budget / per_layer[0])])  # identical layers: nearest k
    ids = calib[:1, :32]
    ref_logits = _logits_skipping(dense, drop, ids)
    pruned = remove_layers(copy.deepcopy(dense), drop)
    hf.save(pruned, tok, tmp_path / "short")
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "short"), dtype=torch.float32).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, ref_logits, atol=1e-4, rtol=0)
