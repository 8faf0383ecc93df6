"""The second model family (Gemma-3-270m, paper Tables 21/22): BOS at the start of every window for a tokenizer
that starts texts with BOS (and nothing changed for one that does not), and the embedded GGUF's checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from prunenet.data import adds_bos, calibration_blocks, load_texts, token_blocks
from prunenet.embedded import EMBEDDED
from prunenet.evaluation import perplexity


@pytest.fixture(scope="module")
def tokenizers(smollm2_dir):
    """SmolLM2's tokenizer as it is (no BOS) and told to start every text with BOS, as Gemma's does."""
    plain = AutoTokenizer.from_pretrained(str(smollm2_dir))
    bos = AutoTokenizer.from_pretrained(str(smollm2_dir), add_bos_token=True)
    return plain, bos


def test_adds_bos_reads_the_tokenizers_own_habit(tokenizers):
    plain, bos = tokenizers
    assert not adds_bos(plain) and adds_bos(bos)


def test_perplexity_blocks_start_with_bos_and_keep_the_text_order(tokenizers, data_dir):
    plain, bos = tokenizers
    texts = load_texts("wikitext2", "test", data_dir)[:200]
    with_bos = token_blocks(bos, texts, 32, max_blocks=4)
    text_only = token_blocks(plain, texts, 31, max_blocks=4, add_bos=False)  # the same text, 31 tokens a block
    assert torch.equal(with_bos[:, 0], torch.full((4,), bos.bos_token_id))
    assert torch.equal(with_bos[:, 1:], text_only)
    assert torch.equal(token_blocks(plain, texts, 32, max_blocks=4), token_blocks(plain, texts, 32, 4, add_bos=False))


def test_calibration_windows_start_with_bos_and_are_unchanged_without(tokenizers, data_dir):
    plain, bos = tokenizers
    # without BOS: exactly the windows of the earlier code (a refactor that changes no result)
    texts = load_texts("wikitext2", "validation", data_dir)
    stream = token_blocks(plain, texts, 64, add_bos=False).reshape(-1)
    gen = torch.Generator().manual_seed(3)
    starts = torch.randint(0, stream.numel() - 64 + 1, (5,), generator=gen)
    expected = torch.stack([stream[s : s + 64] for s in starts.tolist()])
    assert torch.equal(calibration_blocks(plain, "wikitext2", data_dir, 5, 64, seed=3), expected)
    # with BOS: BOS, then 63 consecutive tokens of the same stream (cut at multiples of 63)
    windows = calibration_blocks(bos, "wikitext2", data_dir, 5, 64, seed=3)
    stream63 = token_blocks(plain, texts, 63, add_bos=False).reshape(-1)
    gen = torch.Generator().manual_seed(3)
    starts = torch.randint(0, stream63.numel() - 63 + 1, (5,), generator=gen)
    assert windows.shape == (5, 64) and (windows[:, 0] == bos.bos_token_id).all()
    assert torch.equal(windows[:, 1:], torch.stack([stream63[s : s + 63] for s in starts.tolist()]))


def test_perplexity_follows_the_tokenizer(tiny_model, tokenizers, data_dir):
    plain, bos = tokenizers
    model = tiny_model("llama")
    texts = load_texts("wikitext2", "test", data_dir)[:200]
    by_default = perplexity(model, bos, texts, seq_len=32, max_blocks=2)
    told = perplexity(model, plain, texts, seq_len=32, max_blocks=2, add_bos=True)
    assert by_default == told and by_default["n_tokens"] == 2 * 31


@pytest.mark.slow
def test_embedded_gemma3_checkpoint_reloads_with_the_same_logits(tmp_path, monkeypatch):
    """The split GGUF assembles (SHA-256 checked by its package), dequantizes to Gemma-3 (18 layers, FFN 2048),
    saves as a plain checkpoint that reloads with the same logits, and its tokenizer starts texts with BOS."""
    from prunenet.models import load_model, save_checkpoint

    monkeypatch.setenv("PRUNENET_CACHE", str(tmp_path / "cache"))
    model, tok = load_model("gemma3-270m", dtype="float32")  # dequantizing takes ~1 min: done once here
    assert (tmp_path / "cache" / EMBEDDED["gemma3-270m"].filename).is_file()  # assembled into the cache
    assert model.config.model_type == EMBEDDED["gemma3-270m"].model_type == "gemma3_text"
    assert (model.config.num_hidden_layers, model.config.intermediate_size) == (18, 2048)
    assert adds_bos(tok)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = model(ids).logits
    n_params = sum(p.numel() for p in model.parameters())
    out = save_checkpoint(model, tok, tmp_path / "gemma3", {"source": "gemma3-270m", "params": n_params})  # materialize
    del model
    again, tok2 = load_model(str(out), dtype="float32")
    assert adds_bos(tok2) and torch.equal(tok2("The capital of France is", return_tensors="pt").input_ids, ids)
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, ref, rtol=0, atol=1e-4)
    meta = json.loads((out / "prunenet_meta.json").read_text())
    assert meta["source"] == "gemma3-270m" and meta["params"] == sum(p.numel() for p in again.parameters())
