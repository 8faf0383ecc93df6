"""Recovery fine-tuning: data preparation, LoRA training, merging and the saved checkpoint."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from prunenet.arch import get_adapter
from prunenet.checkpoints import per_layer_shapes
from prunenet.data import format_alpaca, load_texts, token_blocks
from prunenet.errors import PruneNetError
from prunenet.models import load_model, read_meta, save_checkpoint
from prunenet.rft import alpaca_samples, attach_lora, default_targets, finetune, merge_lora, rft_dataset
from prunenet.rft.loss import accumulate_grads


@pytest.fixture
def tiny_ckpt(tiny_model, tokenizer, tmp_path):
    """A tiny random LLaMA saved as a local checkpoint (with a meta entry to carry over)."""
    return str(save_checkpoint(tiny_model("llama"), tokenizer, tmp_path / "tiny", {"stage": "pruned", "ratio": 0.2}))


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(next(iter(sorted(path.glob("*.safetensors"))))))


# --------------------------------------------------------------------------- data


def test_offline_wikitext_trains_on_validation_split(tokenizer, data_dir):
    train, val, info = rft_dataset(tokenizer, "wikitext2", 40, 32, str(data_dir), val_fraction=0.25, seed=0)
    assert info["n_samples"] == 40  # n_samples counts training samples; validation comes on top
    assert "validation" in info["train_source"] and "offline" in info["train_source"]
    assert "test" in info["eval_source"]
    assert (info["n_train"], info["n_val"]) == (40, 10)
    assert train["input_ids"].shape == (40, 32) and val["input_ids"].shape == (10, 32)
    assert torch.equal(train["labels"], train["input_ids"]) and bool(train["attention_mask"].all())
    # train and validation blocks are disjoint; the selection is seeded
    rows = {tuple(r) for r in train["input_ids"].tolist()}
    assert not rows & {tuple(r) for r in val["input_ids"].tolist()}
    again, _, _ = rft_dataset(tokenizer, "wikitext2", 40, 32, str(data_dir), val_fraction=0.25, seed=0)
    other, _, _ = rft_dataset(tokenizer, "wikitext2", 40, 32, str(data_dir), val_fraction=0.25, seed=1)
    assert torch.equal(again["input_ids"], train["input_ids"])
    assert not torch.equal(other["input_ids"], train["input_ids"])


def test_too_many_samples_names_available_count(tokenizer, data_dir):
    available = token_blocks(tokenizer, load_texts("ptb", "validation", data_dir), 256).shape[0]
    with pytest.raises(PruneNetError, match=rf"only {available} blocks of 256 tokens available.*at most \d+"):
        rft_dataset(tokenizer, "ptb", available, 256, str(data_dir))  # + 10 % validation does not fit
    _, _, info = rft_dataset(tokenizer, "ptb", available, 256, str(data_dir), allow_truncate=True)
    assert info["requested_n_samples"] == available
    assert available - 1 <= info["n_train"] + info["n_val"] <= available
    assert info["n_val"] == round(0.1 * info["n_train"])


def test_unknown_dataset_lists_known(tokenizer, data_dir):
    with pytest.raises(PruneNetError, match="wikitext2, ptb, alpaca"):
        rft_dataset(tokenizer, "c4", 10, 32, str(data_dir))


def test_alpaca_template_and_label_masking(tokenizer, data_dir):
    records = json.loads((data_dir / "alpaca" / "alpaca_data.json").read_text())
    record = next(r for r in records if r["input"])
    text = format_alpaca(record)
    assert text.startswith("Below is an instruction that describes a task, paired with an input")
    assert (
        f"### Instruction:\n{record['instruction']}\n\n### Input:\n{record['input']}\n\n"
        f"### Response:\n{record['output']}"
    ) in text

    data, n_trunc = alpaca_samples(tokenizer, [text], 512)
    ids, mask, labels = data["input_ids"][0], data["attention_mask"][0], data["labels"][0]
    expected = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    n = len(expected)
    assert n_trunc == 0 and n < 512
    assert ids[:n].tolist() == expected  # whole record + EOS, prompt included as a target
    assert mask[:n].all() and not mask[n:].any()
    assert labels[:n].tolist() == expected  # the EOS is a target even though pad == eos here
    assert (labels[n:] == -100).all()

    short, n_trunc = alpaca_samples(tokenizer, [text], 16)
    assert n_trunc == 1 and short["input_ids"][0].tolist() == expected[:16] and (short["labels"][0] != -100).all()

    train, val, info = rft_dataset(tokenizer, "alpaca", 10, 64, str(data_dir), seed=0)
    assert train["input_ids"].shape == (10, 64) and val["input_ids"].shape == (1, 64)
    assert "alpaca/train" in info["train_source"] and info["available"] == len(records)


# --------------------------------------------------------------------------- LoRA


def test_merge_equals_base_plus_scaled_lora_product(tiny_model):
    model = tiny_model("llama")
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = attach_lora(model, r=4, alpha=12, dropout=0.0, seed=0)
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at 0: give it values as training would
            p.data.normal_(0, 0.1)
    expected = {}
    for short in ("layers.0.self_attn.q_proj", "layers.2.mlp.down_proj"):
        layer = peft_model.get_submodule(f"base_model.model.model.{short}")
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        expected[short] = base[f"model.{short}.weight"] + (12 / 4) * b.detach() @ a.detach()
    merged = merge_lora(peft_model)
    assert type(merged).__name__ == "LlamaForCausalLM"
    for short, want in expected.items():
        got = merged.get_submodule(f"model.{short}").weight
        assert not torch.allclose(got, base[f"model.{short}.weight"])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_default_targets_per_family(tiny_model):
    for family, expected in (("opt", "out_proj"), ("phi", "dense")):
        model = tiny_model(family)
        assert expected in default_targets(model)
        peft_model = attach_lora(model, seed=0)
        n_lora = sum(1 for n, _ in peft_model.named_modules() if n.endswith("lora_A.default"))
        assert n_lora == 3 * 6  # 3 layers x (q, k, v, out + 2 FFN)
    model = tiny_model("llama")
    model.config.model_type = "mystery"
    with pytest.raises(PruneNetError, match="supported model_types are .*llama"):
        default_targets(model)


def test_default_targets_are_the_adapters_lora_targets(tiny_model):
    """The LoRA targets are stated once, on the architecture adapter."""
    for family in ("llama", "opt", "phi"):
        model = tiny_model(family)
        targets = default_targets(model)
        assert targets == list(get_adapter(model).lora_targets) and isinstance(targets, list)


def test_micro_batches_give_the_same_gradient(tiny_model, tokenizer, data_dir):
    """Gradient accumulation over micro-batches equals one pass over the batch (padding included)."""
    texts = load_texts("alpaca", "train", data_dir)[:4]
    batch, _ = alpaca_samples(tokenizer, texts, 96)
    assert (batch["labels"] == -100).any()
    peft_model = attach_lora(tiny_model("llama"), dropout=0.0, seed=0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)
    grads = []
    for micro in (4, 1):
        peft_model.zero_grad(set_to_none=True)
        loss = accumulate_grads(peft_model, batch, micro)
        grads.append((loss, [p.grad.clone() for p in peft_model.parameters() if p.requires_grad]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- finetune


def test_finetune_lowers_loss_and_saves_reloadable_checkpoint(tiny_ckpt, data_dir, tmp_path):
    metrics = []
    out = tmp_path / "rft"
    summary = finetune(
        tiny_ckpt,
        str(out),
        "wikitext2",
        100,
        str(data_dir),
        seq_len=32,
        batch_size=4,
        lr=1e-2,
        max_steps=30,
        eval_every=10,
        seed=0,
        log_csv=str(tmp_path / "log.csv"),
        on_metrics=lambda name, value, step: metrics.append((name, value, step)),
        test_blocks=4,
    )
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    train = [float(r["loss"]) for r in rows if r["split"] == "train"]
    val = [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == "val"]
    assert len(train) == 30 and [s for s, _ in val] == [0, 10, 20, 30]
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 0.05
    assert val[-1][1] < val[0][1]
    assert summary["val_ppl_after"] < summary["val_ppl_before"]
    assert summary["val_ppl_before"] == pytest.approx(math.exp(val[0][1]))
    assert summary["test_ppl_after"] < summary["test_ppl_before"]
    assert summary["steps"] == 30 and summary["tokens"] == 30 * 4 * 32 and summary["tokens_per_s"] > 0
    assert "validation" in summary["train_source"] and "test" in summary["eval_source"]
    assert {n for n, _, _ in metrics} >= {"train_loss", "val_loss", "val_ppl_after", "test_ppl_after"}
    json.dumps(summary)  # JSON-able

    meta = read_meta(out)
    assert meta["stage"] == "pruned" and meta["rft"]["steps"] == 30  # source meta carried over
    assert meta["rft_dataset"] == "wikitext2" and meta["rft_samples"] == 100
    model = AutoModelForCausalLM.from_pretrained(str(out))  # plain HF, no peft
    assert not any("lora" in n for n, _ in model.named_parameters())
    logits = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all()
    assert not list(tmp_path.glob(".rft.tmp-*"))


def test_same_seed_gives_identical_weights(tiny_ckpt, data_dir, tmp_path):
    kw = dict(
        dataset="wikitext2",
        n_samples=20,
        data_dir=str(data_dir),
        seq_len=32,
        batch_size=4,
        lr=1e-2,
        max_steps=3,
        test_blocks=0,
    )
    finetune(tiny_ckpt, str(tmp_path / "a"), seed=0, **kw)
    finetune(tiny_ckpt, str(tmp_path / "b"), seed=0, **kw)
    finetune(tiny_ckpt, str(tmp_path / "c"), seed=1, **kw)
    a, b, c = (_weights(tmp_path / x) for x in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_per_layer_pruned_checkpoint_keeps_sizes(tiny_model, tokenizer, data_dir, tmp_path):
    model = tiny_model("llama")
    sizes = [96, 40, 64]
    per_layer_shapes.resize_ffn(model, sizes)
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    setattr(model.config, per_layer_shapes.KEY, sizes)
    src = save_checkpoint(model, tokenizer, tmp_path / "pruned")
    finetune(
        str(src),
        str(tmp_path / "rft"),
        "ptb",
        12,
        str(data_dir),
        seq_len=32,
        batch_size=4,
        lr=1e-2,
        max_steps=2,
        test_blocks=2,
    )
    config = json.loads((tmp_path / "rft" / "config.json").read_text())
    assert config[per_layer_shapes.KEY] == sizes
    reloaded, _ = load_model(str(tmp_path / "rft"))
    assert [layer.mlp.up_proj.out_features for layer in reloaded.model.layers] == sizes


def test_low_rank_checkpoints_are_refused_before_loading(tmp_path):
    """peft cannot wrap a factored projection: one line naming what to do instead, no weights read."""
    import json

    from prunenet.errors import PruneNetError
    from prunenet.rft.train import load

    (tmp_path / "config.json").write_text(json.dumps({"prunenet_low_rank": {"model.layers.0.mlp.up_proj": 4}}))
    with pytest.raises(PruneNetError, match="low-rank .* checkpoint: LoRA recovery fine-tuning"):
        load(str(tmp_path), {}, 1, "cpu", "float32")  # no weights there: reaching load_model would fail differently


def test_slicegpt_checkpoint_fine_tunes_and_reloads(tiny_model, tokenizer, data_dir, tmp_path):
    """RFT of a SliceGPT checkpoint (paper Tables 11, 12, 15): it loads through its format, LoRA finds its
    projections, the shortcut matrices stay as sliced (LoRA does not target them), each projection moves by at most
    a rank-r update, and the saved model reloads sliced with the merged weights."""
    from prunenet import slicegpt as sg
    from prunenet.slicegpt import checkpoint as sg_format

    model = tiny_model("llama")
    calib = torch.randint(0, model.config.vocab_size, (6, 32), generator=torch.Generator().manual_seed(1))
    sliced = sg.slice_model(model, None, 0.3, calib, progress=False)
    src = sg_format.save(sliced, tokenizer, tmp_path / "sliced", {"method": "slicegpt"})
    summary = finetune(
        str(src), str(tmp_path / "rft"), "wikitext2", 12, str(data_dir), seq_len=32, batch_size=4, lr=1e-2,
        max_steps=2, lora_r=2, test_blocks=0,
    )  # fmt: skip
    assert summary["lora"]["target_modules"] == list(get_adapter(sliced).lora_targets)
    before, after = _weights(src), _weights(tmp_path / "rft")
    assert before.keys() == after.keys()
    shortcuts = [k for k in before if "shortcut" in k]
    assert shortcuts and all(torch.equal(before[k], after[k]) for k in shortcuts)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and all(k.rsplit(".", 2)[-2] in summary["lora"]["target_modules"] for k in moved)
    assert all(torch.linalg.matrix_rank(after[k] - before[k], atol=1e-6) <= 2 for k in moved)
    reloaded, _ = load_model(str(tmp_path / "rft"))
    assert sg.is_sliced_config(reloaded.config)
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(reloaded) == shapes(sliced)
