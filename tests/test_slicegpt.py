"""SliceGPT baseline: invariance (exact), closed-form sizes, save/load, determinism, errors, SmolLM2.

Every architecture fact comes from the adapters (prunenet.arch): llama/opt/phi are the tiny
fixtures, mistral/qwen2/qwen3/gemma tiny configs built here; Gemma 2/3 must be refused.

Tolerances (float32): norm fusion and the full rotation at r=0 (round_to=1, nothing
deleted) reproduce the tiny models' logits to atol 1e-5 (observed ~5e-7); on the real
30-layer SmolLM2 the r=0 rotation matches to atol 2e-2 on logits of magnitude ~20
(mean abs error < 2e-3): float32 rounding accumulates through 30 rotated layers.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

from prunenet import slicegpt as sg
from prunenet.data import load_texts, token_blocks
from prunenet.errors import PruneNetError
from prunenet.slicegpt import checkpoint as sg_format
from prunenet.stats import count_params

FAMILIES = ["llama", "opt", "phi"]


def _perturb_norms(model: torch.nn.Module, seed: int = 1) -> None:
    """Random models have norm weight 1 / bias 0, which would make the fusion test vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def _ids(vocab: int, shape=(2, 24), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def family_model(tiny_model):
    def make(family: str):
        model = tiny_model(family, seed=0)
        _perturb_norms(model)
        return model

    return make


# ------------------------------------------------------------------------ dims / errors


def test_sliced_dim():
    assert sg.sliced_dim(576, 0.25) == 432
    assert sg.sliced_dim(64, 0.3) == 40  # 44.8 -> 40
    assert sg.sliced_dim(64, 0.3, round_to=1) == 44
    assert sg.sliced_dim(64, 0.0) == 64
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(PruneNetError, match="ratio"):
            sg.sliced_dim(64, bad)
    with pytest.raises(PruneNetError, match="leaves no dimensions"):
        sg.sliced_dim(64, 0.9)  # 6.4 -> 0 at round_to=8


# ---------------------------------------------------------------- invariance (exact)


@pytest.mark.parametrize("family", FAMILIES)
def test_norm_fusion_keeps_logits(family_model, family):
    model = family_model(family)
    ids = _ids(model.config.vocab_size)
    with torch.no_grad():
        ref = model(ids).logits
        fused = sg.fuse_norms(copy.deepcopy(model))
        out = fused(ids).logits
    assert all(not isinstance(m, torch.nn.LayerNorm) and "RMSNorm" not in type(m).__name__ for m in fused.modules())
    assert fused.lm_head.weight.data_ptr() != fused.get_input_embeddings().weight.data_ptr()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_rotation_at_r0_keeps_logits(family_model, family):
    model = family_model(family)
    ids = _ids(model.config.vocab_size)
    calib = _ids(model.config.vocab_size, (6, 32), seed=1)
    with torch.no_grad():
        ref = model(ids).logits
        rotated = sg.slice_model(copy.deepcopy(model), None, 0.0, calib, round_to=1, progress=False)
        out = rotated(ids).logits
        # padded batch (left padding) goes through the same path as lm-eval's batches
        mask = torch.ones_like(ids)
        mask[0, :5] = 0
        ref_m, out_m = model(ids, attention_mask=mask).logits, rotated(ids, attention_mask=mask).logits
    assert rotated.config.prunenet_slicegpt["embedding_dim"] == model.config.hidden_size
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_m[:, 5:], ref_m[:, 5:], atol=1e-5, rtol=0)


def _tiny_other(config_cls) -> torch.nn.Module:
    """A 2-layer random model of one of the other LLaMA-like types (vocabulary 300), norms perturbed."""
    torch.manual_seed(0)
    cfg = config_cls(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    _perturb_norms(model)
    return model


OTHER_TYPES = [MistralConfig, Qwen2Config, Qwen3Config, GemmaConfig]


@pytest.mark.parametrize("config_cls", OTHER_TYPES)
def test_other_llama_family_types_rotate_exactly(config_cls):
    """mistral / qwen2 (q/k/v biases) / qwen3 (per-head q/k norms, untouched by rotations of the stream) share
    the LLaMA path; gemma too, with its ``1 + w`` norm scale folded (and its sqrt(d) embedding scale, which
    commutes with rotations)."""
    model = _tiny_other(config_cls)
    ids = _ids(300)
    with torch.no_grad():
        ref = model(ids).logits
        fused = sg.fuse_norms(copy.deepcopy(model))(ids).logits
        rotated = sg.slice_model(copy.deepcopy(model), None, 0.0, _ids(300, (4, 16), 1), round_to=1, progress=False)
        out = rotated(ids).logits
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("config_cls", [Qwen3Config, GemmaConfig])
def test_other_llama_family_types_save_and_reload(config_cls, tmp_path):
    model = _tiny_other(config_cls)
    ids = _ids(300)
    sliced = sg.slice_model(copy.deepcopy(model), None, 0.25, _ids(300, (4, 16), 1), progress=False)
    assert sliced.config.prunenet_slicegpt["family"] == ("gemma" if config_cls is GemmaConfig else "llama")
    path = sg.save_sliced(sliced, None, tmp_path / "sliced", {"method": "slicegpt"})
    reloaded = sg.load_sliced(path, AutoConfig.from_pretrained(str(path)), torch.float32)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, sliced(ids).logits)


@pytest.mark.parametrize("config_cls", [Gemma2Config, Gemma3TextConfig])
def test_gemma2_and_gemma3_are_refused(config_cls):
    """Their post-attention/post-FFN norms act on block outputs: no rotation of the stream commutes with them."""
    model = _tiny_other(config_cls)
    cfg = model.config
    for call in (lambda m: sg.slice_model(m, None, 0.25, _ids(300, (2, 16)), progress=False), sg.fuse_norms):
        with pytest.raises(PruneNetError, match=f"SliceGPT cannot slice {cfg.model_type}: its post-attention") as err:
            call(model)
        assert "\n" not in str(err.value) and "no rotation of the residual stream commutes" in str(err.value)
    assert not any(type(m).__name__ == "RMSN" for m in model.modules())  # refused before touching the model


def test_padding_is_masked_out_of_the_pca(family_model):
    """Right-padded calibration rows: what sits under calib_mask == 0 cannot change the sliced weights."""
    model = family_model("llama")
    V = model.config.vocab_size
    calib = _ids(V, (3, 24), seed=2)
    mask = torch.ones_like(calib)
    mask[1, 10:] = 0
    other = calib.clone()
    other[1, 10:] = _ids(V, (1, 14), seed=9)
    a = sg.slice_model(copy.deepcopy(model), None, 0.25, calib, calib_mask=mask, progress=False).state_dict()
    b = sg.slice_model(copy.deepcopy(model), None, 0.25, other, calib_mask=mask, progress=False).state_dict()
    c = sg.slice_model(copy.deepcopy(model), None, 0.25, other, progress=False).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert any(not torch.allclose(a[k], c[k], atol=1e-4) for k in a)


# -------------------------------------------------------------- sizes, save / load


def expected_params(cfg, family: str, dp: int) -> int:
    """Closed form for a model sliced to width d' (= dp), shortcut matrices included.

    Embeddings d'V (+ OPT's learned positions (P+2)d'), per layer every stream reader has
    d' input columns and every writer d' output rows (+ biases), d'xd' shortcuts (2 per
    sequential block, 1 per parallel Phi block), no norm parameters, LM head d'V (+ V
    bias for OPT, from its final LayerNorm shift, and for Phi).
    """
    V, d, L = cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers
    if family == "llama":
        nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        hd = getattr(cfg, "head_dim", None) or d // nh
        inter = cfg.intermediate_size
        layer = dp * nh * hd + 2 * dp * nkv * hd + nh * hd * dp + 3 * dp * inter + 2 * dp * dp
        return V * dp + L * layer + V * dp
    if family == "opt":
        F = cfg.ffn_dim
        layer = 3 * (dp * d + d) + (d * dp + dp) + (dp * F + F) + (F * dp + dp) + 2 * dp * dp
        return V * dp + (cfg.max_position_embeddings + 2) * dp + L * layer + V * dp + V
    F = cfg.intermediate_size
    layer = 3 * (dp * d + d) + (d * dp + dp) + (dp * F + F) + (F * dp + dp) + dp * dp
    return V * dp + L * layer + V * dp + V


@pytest.mark.parametrize("family", FAMILIES)
def test_sliced_size_finite_and_reload(family_model, family, tmp_path, tokenizer):
    model = family_model(family)
    V = model.config.vocab_size
    ids = _ids(V)
    calib = _ids(V, (6, 32), seed=1)
    sliced = sg.slice_model(copy.deepcopy(model), None, 0.3, calib, progress=False)
    dp = sg.sliced_dim(model.config.hidden_size, 0.3)
    assert dp == 40
    assert count_params(sliced) == expected_params(model.config, family, dp)
    # with the 49k vocabulary the untied head dominates the tiny models; the decoder layers shrink
    body = lambda m: sum(p.numel() for n, p in m.named_parameters() if ".layers." in n)  # noqa: E731
    assert body(sliced) < body(model)
    with torch.no_grad():
        out = sliced(ids).logits
        # KV-cache decoding (HF generate) agrees with the full forward
        pre = sliced(ids[:, :-1], use_cache=True)
        step = sliced(ids[:, -1:], past_key_values=pre.past_key_values, use_cache=True).logits
    assert torch.isfinite(out).all()
    torch.testing.assert_close(step[:, -1], out[:, -1], atol=1e-5, rtol=0)
    gen = sliced.generate(ids[:1, :8], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert gen.shape == (1, 12)

    # through the checkpoint-format interface (prunenet.checkpoints): NAME, detect, save, load
    assert sg_format.NAME == "slicegpt"
    path = sg_format.save(sliced, tokenizer, tmp_path / "sliced", {"method": "slicegpt"})
    assert (path / "prunenet_meta.json").is_file() and (path / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(str(path))
    assert sg_format.detect(config) and not sg_format.detect(model.config)
    assert sg.is_sliced_config(config) and not sg.is_sliced_config(model.config)
    assert config.prunenet_slicegpt["layer_dims"][0][-1] == dp
    reloaded = sg_format.load(path, config, torch.float32)
    assert count_params(reloaded) == count_params(sliced)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, out)


@pytest.mark.parametrize("family", ["llama"])
def test_shortcuts_can_add_parameters(family_model, family):
    """Lemma 3.1 of the paper: at small ratios the d'xd' shortcuts (and the untied head) cost more than they save."""
    model = family_model(family)
    sliced = sg.slice_model(copy.deepcopy(model), None, 0.05, _ids(model.config.vocab_size, (2, 16)), progress=False)
    assert count_params(sliced) > count_params(model)
    shortcuts = [m for n, m in sliced.named_modules() if n.endswith("shortcut")]
    assert len(shortcuts) == 2 * model.config.num_hidden_layers
    assert all(isinstance(m, torch.nn.Linear) and m.bias is None for m in shortcuts)


def test_calibration_is_deterministic(family_model, tokenizer, data_dir):
    a = sg.calibration_blocks(tokenizer, "wikitext2", data_dir, n_samples=4, seq_len=32, seed=3)
    b = sg.calibration_blocks(tokenizer, "wikitext2", data_dir, n_samples=4, seq_len=32, seed=3)
    c = sg.calibration_blocks(tokenizer, "wikitext2", data_dir, n_samples=4, seq_len=32, seed=4)
    assert a.shape == (4, 32) and torch.equal(a, b) and not torch.equal(a, c)
    calib = a % 1000  # keep ids inside the tiny model's vocabulary regardless of its size
    model = family_model("llama")
    s1 = sg.slice_model(copy.deepcopy(model), tokenizer, 0.25, calib, progress=False).state_dict()
    s2 = sg.slice_model(copy.deepcopy(model), tokenizer, 0.25, calib, progress=False).state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def test_bad_inputs(family_model, tokenizer, tmp_path):
    model = family_model("llama")
    calib = _ids(model.config.vocab_size, (2, 16))
    for ratio in (1.0, -0.2):
        with pytest.raises(PruneNetError, match="ratio"):
            sg.slice_model(copy.deepcopy(model), None, ratio, calib, progress=False)
    with pytest.raises(PruneNetError, match="leaves no dimensions"):
        sg.slice_model(copy.deepcopy(model), None, 0.95, calib, progress=False)
    with pytest.raises(PruneNetError, match="token ids"):
        sg.slice_model(copy.deepcopy(model), None, 0.25, calib.float(), progress=False)
    with pytest.raises(PruneNetError, match="vocabulary"):
        sg.slice_model(copy.deepcopy(model), None, 0.25, calib + 10**7, progress=False)
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=100))
    with pytest.raises(PruneNetError, match="supported model_types are llama, mistral, qwen2, qwen3, gemma, opt, phi"):
        sg.slice_model(gpt2, None, 0.25, calib % 100, progress=False)
    with pytest.raises(PruneNetError, match="missing data file"):
        sg.calibration_blocks(tokenizer, "wikitext2", tmp_path, 2, 16, 0)
    with pytest.raises(PruneNetError, match="unknown dataset"):
        sg.calibration_blocks(tokenizer, "c4", tmp_path, 2, 16, 0)
    sliced = sg.slice_model(copy.deepcopy(model), None, 0.25, calib, progress=False)
    with pytest.raises(PruneNetError, match="already sliced"):
        sg.slice_model(sliced, None, 0.25, calib, progress=False)
    with pytest.raises(PruneNetError, match="not a SliceGPT checkpoint"):
        sg.load_sliced(tmp_path, model.config, torch.float32)
    with pytest.raises(PruneNetError, match="produced by slice_model"):
        sg.save_sliced(model, None, tmp_path / "x")


# ----------------------------------------------------------------------------- SmolLM2


def _ppl(model, blocks: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(blocks).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1))
    return math.exp(nll.item())


def test_smollm2_slicegpt(smollm2, data_dir):
    dense, tok = smollm2
    test = token_blocks(tok, load_texts("wikitext2", "test", data_dir), 128, max_blocks=4)
    calib = sg.calibration_blocks(tok, "wikitext2", data_dir, n_samples=4, seq_len=128, seed=0)

    # r = 0, full rotation (nothing deleted): same function
    rotated = sg.slice_model(copy.deepcopy(dense), tok, 0.0, calib[:2, :64], round_to=1, progress=False)
    with torch.no_grad():
        ref, out = dense(test[:1]).logits, rotated(test[:1]).logits
    err = (out - ref).abs()
    print(f"\nSmolLM2 r=0 full rotation: max |dlogit| {err.max().item():.2e}, mean {err.mean().item():.2e}")
    assert err.max().item() < 2e-2 and err.mean().item() < 2e-3
    del rotated

    sliced = sg.slice_model(copy.deepcopy(dense), tok, 0.25, calib, progress=False)
    assert sliced.config.prunenet_slicegpt["embedding_dim"] == 432
    ppl_dense, ppl_sliced = _ppl(dense, test), _ppl(sliced, test)
    print(
        f"SmolLM2 WikiText-2 test ppl ({test.shape[0]}x{test.shape[1]} tokens, calib 4x128 validation): "
        f"dense {ppl_dense:.2f}, SliceGPT 25% {ppl_sliced:.2f}; params dense {count_params(dense):,} "
        f"sliced {count_params(sliced):,} (LM head untied)"
    )
    assert math.isfinite(ppl_sliced) and ppl_dense < ppl_sliced < 50 * ppl_dense
    assert dense.config.tie_word_embeddings  # the session fixture was not touched


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_budget_width(family_model, family, tokenizer):
    """budget=params: the counted structure equals the closed form, the chosen width is the nearest to PruneNet's
    parameter count, and the sliced model really has the counted size."""
    from prunenet.budget import ffn_rows_budget
    from prunenet.methods import METHODS, PruneRequest
    from prunenet.slicegpt.budget import sliced_params, width_for_params

    model = family_model(family)
    for dp in (8, 40, 64):
        assert sliced_params(model, dp) == expected_params(model.config, family, dp)
    target = count_params(model) - ffn_rows_budget(model, 0.3)
    kept = width_for_params(model, target, round_to=8)
    gaps = {w: abs(expected_params(model.config, family, w) - target) for w in range(8, 65, 8)}
    assert gaps[kept] == min(gaps.values())
    request = PruneRequest(ratio=0.3, calib_samples=2, calib_seq_len=16)
    calib = _ids(model.config.vocab_size, (2, 16))
    slicegpt = METHODS.get("slicegpt")
    fixed = dataclasses.replace(request, options={"budget": "ratio"})
    from prunenet.methods.pipeline import budget
    from prunenet.methods.slicegpt import slicing_ratio

    # what pipeline.apply hands the method: PruneNet's count by default, the ratio alone at budget: ratio
    assert budget(slicegpt, model, request).params == ffn_rows_budget(model, 0.3)
    ratio, meta = slicing_ratio(model, request, budget(slicegpt, model, request))
    assert meta["kept_width"] == kept and sg.sliced_dim(model.config.hidden_size, ratio) == kept
    assert slicing_ratio(model, fixed, budget(slicegpt, model, fixed)) == (0.3, {"budget": "ratio"})
    sliced = sg.slice_model(copy.deepcopy(model), None, ratio, calib, progress=False)
    assert count_params(sliced) == expected_params(model.config, family, kept)
    assert slicegpt.options[0].default == "params"


@pytest.mark.parametrize("family", FAMILIES)
def test_nominal_ratio_is_the_releases_width(family_model, family, tmp_path, tokenizer, data_dir):
    """budget=ratio: the kept width is the release's (run_slicegpt.py: int((1 - sparsity) * d), then down to a
    multiple of --round-interval 8), so the model has the closed-form count of that width."""
    from prunenet.methods import PruneRequest, compress
    from prunenet.models import save_checkpoint

    model = family_model(family)
    save_checkpoint(model, tokenizer, tmp_path / "dense")
    d = model.config.hidden_size
    for r in (0.2, 0.3):
        width = int((1 - r) * d)
        width -= width % 8
        req = PruneRequest(r, data_dir=str(data_dir), calib_samples=2, calib_seq_len=16, options={"budget": "ratio"})
        meta, _ = compress(str(tmp_path / "dense"), tmp_path / f"r{r}", "slicegpt", req)
        assert meta["budget"] == "ratio" and meta["stats"]["params"] == expected_params(model.config, family, width)


def test_the_kept_subspace_is_the_top_principal_directions_of_the_calibration_stream(family_model):
    """At r > 0 the embeddings keep the span of the leading principal directions (uncentred, as SliceGPT's PCA)
    of the stream layer 0 reads on the calibration text, the tokens' embeddings: the kept rotation columns,
    recovered from the sliced embeddings, span exactly the top right-singular vectors of that stream."""
    model = family_model("llama")
    calib = _ids(model.config.vocab_size, (4, 24), seed=3)
    emb = model.get_input_embeddings().weight.detach().double().clone()
    sliced = sg.slice_model(copy.deepcopy(model), None, 0.25, calib, progress=False)
    kept = sg.sliced_dim(model.config.hidden_size, 0.25)
    new = sliced.get_input_embeddings().weight.detach().double()
    assert 0 < kept < model.config.hidden_size and new.shape == (model.config.vocab_size, kept)
    q = torch.linalg.lstsq(emb, new).solution  # d × kept: the columns of the rotation that were kept
    torch.testing.assert_close(emb @ q, new, atol=1e-5, rtol=0)  # the sliced embeddings are a rotation of these
    top = torch.linalg.svd(emb[calib.reshape(-1)], full_matrices=False).Vh[:kept].T
    torch.testing.assert_close(q.T @ q, torch.eye(kept, dtype=q.dtype), atol=1e-5, rtol=0)
    torch.testing.assert_close(q @ q.T, top @ top.T, atol=1e-5, rtol=0)


def test_calibration_batches_are_computed_on_the_device_and_kept_at_home():
    """The activations wait where the model waits (the host, for a GPU run) and visit the device one batch at a
    time (``meta`` stands in for a second device: it holds no data, so a batch kept there shows where it went)."""
    from prunenet.slicegpt.rotate import _Calibration

    seen = []
    cal = _Calibration([{"k": 1}, {"k": 2}], [None, None], 0.01, 2, "cpu", torch.device("meta"))
    out = cal.map(lambda x, kw: seen.append((x.device.type, kw["k"])) or x * 2, [torch.ones(2), torch.zeros(2)])
    assert seen == [("cpu", 1), ("cpu", 2)]  # each batch computed on the device with its own kwargs
    assert [o.device.type for o in out] == ["meta", "meta"]
