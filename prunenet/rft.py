"""Recovery fine-tuning (RFT): LoRA on a pruned checkpoint, merged back into a plain HF checkpoint.

Samples
    * WikiText-2 / PTB: the split's raw text is concatenated, tokenized once and cut into
      non-overlapping blocks of ``seq_len`` tokens (:func:`prunenet.data.token_blocks`);
      one sample = one block, every token is a target.
    * Alpaca: one sample = one record in the Stanford Alpaca template
      (:func:`prunenet.data.format_alpaca`, with/without the ``### Input:`` section),
      followed by EOS, truncated to ``seq_len`` and right-padded. Padding is masked out of
      the loss (label -100); the prompt is *not* masked — the whole record (instruction +
      input + response) is a target, as in alpaca-lora's default ``train_on_inputs=True``
      and SliceGPT's RFT, so WikiText-2 and Alpaca RFT optimise the same LM objective.

``n_samples`` is the number of RFT *training* samples; ``round(val_fraction * n_samples)``
(at least 1) further, disjoint samples form the RFT validation set. Both come from one
seeded random permutation of the available samples. With a hub (``data_dir=None``) WikiText-2
and PTB use their real train split; offline (``data_dir`` set) there is none, so both
RFT train and RFT validation samples come from the validation split and test-split
perplexity is reported — ``info['train_source']`` / ``info['eval_source']`` say so.

Training is a plain torch loop (AdamW, linear warmup over 5 % of the steps then linear
decay to 0, gradient clipping at 1.0), deterministic for a seed on CPU.
"""
from __future__ import annotations

import csv
import math
import os
import resource
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .artifacts import atomic_file
from .data import check_name, load_texts, split_note, token_blocks
from .errors import PruneNetError
from .models import PER_LAYER_KEY, load_model, read_meta, save_checkpoint

_LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# config.model_type -> LoRA target module names (attention projections + FFN), as in the paper's RFT.
LORA_TARGETS: dict[str, list[str]] = {
    "llama": _LLAMA_TARGETS,
    "mistral": _LLAMA_TARGETS,
    "qwen2": _LLAMA_TARGETS,
    "qwen3": _LLAMA_TARGETS,
    "gemma": _LLAMA_TARGETS,
    "gemma2": _LLAMA_TARGETS,
    "gemma3_text": _LLAMA_TARGETS,
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
}

PACKED_DATASETS = ("wikitext2", "ptb")
Dataset = dict[str, torch.Tensor]  # input_ids, attention_mask, labels: each [n, seq_len]


# --------------------------------------------------------------------------- data


def _adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS first by default (then every sample starts with BOS too)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a").input_ids
    return len(ids) > 0 and ids[0] == bos


def _encode_record(tokenizer, text: str, seq_len: int, add_bos: bool) -> tuple[list[int], int, bool]:
    """(padded ids, number of real tokens, truncated?) for one Alpaca record."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if add_bos:
        ids = [tokenizer.bos_token_id] + ids
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    truncated = len(ids) > seq_len
    ids = ids[:seq_len]
    n = len(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return ids + [pad] * (seq_len - n), n, truncated


def alpaca_samples(tokenizer, texts: list[str], seq_len: int, add_bos: bool | None = None) -> tuple[Dataset, int]:
    """Tokenize formatted Alpaca records into fixed-length samples; padding gets label -100.

    Returns the samples and how many records were truncated to ``seq_len``.
    """
    if add_bos is None:
        add_bos = _adds_bos(tokenizer)
    rows, lengths, n_trunc = [], [], 0
    for text in texts:
        ids, n, truncated = _encode_record(tokenizer, text, seq_len, add_bos)
        rows.append(ids)
        lengths.append(n)
        n_trunc += truncated
    input_ids = torch.tensor(rows, dtype=torch.long).view(len(rows), seq_len)
    mask = (torch.arange(seq_len)[None, :] < torch.tensor(lengths)[:, None]).long()
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}, n_trunc


def _packed(blocks: torch.Tensor) -> Dataset:
    return {"input_ids": blocks, "attention_mask": torch.ones_like(blocks), "labels": blocks.clone()}


def _take(data: Dataset, idx: torch.Tensor) -> Dataset:
    return {k: v[idx] for k, v in data.items()}


def rft_dataset(
    tokenizer,
    dataset: str,
    n_samples: int,
    seq_len: int,
    data_dir: str | os.PathLike | None,
    val_fraction: float = 0.1,
    seed: int = 0,
    allow_truncate: bool = False,
) -> tuple[Dataset, Dataset, dict]:
    """The RFT train and validation sets (dicts of ``[n, seq_len]`` tensors) and a description.

    ``n_samples`` counts training samples (blocks of ``seq_len`` tokens for WikiText-2/PTB,
    records for Alpaca); ``max(1, round(val_fraction * n_samples))`` validation samples come
    on top. Asking for more than the split holds is an error naming the available count,
    unless ``allow_truncate`` (then the largest n_samples that fits is used).
    """
    check_name(dataset)
    if seq_len < 2:
        raise PruneNetError(f"seq_len must be at least 2, got {seq_len}")
    if not 0.0 < val_fraction < 1.0:
        raise PruneNetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if n_samples < 1:
        raise PruneNetError(f"n_samples must be at least 1, got {n_samples}")
    add_bos = _adds_bos(tokenizer)
    offline = data_dir is not None
    split = "validation" if (dataset in PACKED_DATASETS and offline) else "train"
    texts = load_texts(dataset, split, data_dir)
    if dataset in PACKED_DATASETS:
        blocks = token_blocks(tokenizer, texts, seq_len, add_bos=add_bos)
        available, unit = blocks.shape[0], f"blocks of {seq_len} tokens"
    else:
        blocks, available, unit = None, len(texts), "records"
    info: dict = {"dataset": dataset, "seq_len": seq_len, "seed": seed, "val_fraction": val_fraction,
                  "available": available, "add_bos": add_bos}
    def n_val_for(n: int) -> int:
        return max(1, round(val_fraction * n))

    if n_samples + n_val_for(n_samples) > available:
        fits = next((n for n in range(min(n_samples, available), 0, -1) if n + n_val_for(n) <= available), 0)
        if not allow_truncate or fits == 0:
            raise PruneNetError(
                f"{dataset}/{split} has only {available} {unit} available, but n_samples={n_samples} training + "
                f"{n_val_for(n_samples)} validation samples were requested: lower n_samples to at most {fits}"
                + (" or lower seq_len" if blocks is not None else "")
            )
        info["requested_n_samples"] = n_samples
        n_samples = fits
    n_train, n_val = n_samples, n_val_for(n_samples)
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(available, generator=gen)[:n_train + n_val]
    train_idx, val_idx = chosen[:n_train], chosen[n_train:]

    source = split_note(dataset, split, data_dir)
    if blocks is not None:
        train, val = _packed(blocks[train_idx]), _packed(blocks[val_idx])
        info["sample"] = f"block of {seq_len} packed tokens"
        if offline:
            info["train_source"] = f"{source}: {n_train} blocks (offline: no train split, RFT trains on validation)"
            info["val_source"] = f"{source}: {n_val} held-out blocks (disjoint from the RFT train blocks)"
        else:
            info["train_source"] = f"{source}: {n_train} blocks"
            info["val_source"] = f"{source}: {n_val} held-out blocks"
        info["eval_source"] = split_note(dataset, "test", data_dir) + " (perplexity)"
    else:
        train_texts = [texts[i] for i in train_idx.tolist()]
        val_texts = [texts[i] for i in val_idx.tolist()]
        train, trunc_t = alpaca_samples(tokenizer, train_texts, seq_len, add_bos)
        val, trunc_v = alpaca_samples(tokenizer, val_texts, seq_len, add_bos)
        info["sample"] = "one Stanford-Alpaca-template record + EOS, truncated/right-padded to seq_len, padding masked"
        info["n_truncated"] = trunc_t + trunc_v
        info["train_source"] = f"{source}: {n_train} records"
        info["val_source"] = f"{source}: {n_val} held-out records"
        info["eval_source"] = f"{source}: {n_val} held-out records (alpaca has no test split)"
    info.update(n_samples=n_train, n_train=n_train, n_val=n_val)
    return train, val, info


# --------------------------------------------------------------------------- LoRA


def default_targets(model: nn.Module) -> list[str]:
    """The LoRA target module names for ``model``'s architecture, or an error listing the known ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LORA_TARGETS:
        raise PruneNetError(
            f"no default LoRA target modules for model_type {model_type!r} (known: {', '.join(sorted(LORA_TARGETS))}): "
            f"pass target_modules explicitly"
        )
    return list(LORA_TARGETS[model_type])


def attach_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.05,
                target_modules: list[str] | None = None, seed: int = 0):
    """Wrap ``model`` in a peft LoRA model (A: seeded Kaiming init, B: zeros); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise PruneNetError(f"lora_r must be a positive integer, got {r}")
    targets = list(target_modules) if target_modules else default_targets(model)
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in names]
    if missing:
        raise PruneNetError(f"LoRA target modules {missing} not found in the model (its linear layers: {', '.join(sorted(names))})")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
                        task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def merge_lora(peft_model) -> nn.Module:
    """Fold every adapter into its base weight (W + alpha/r * B @ A) and return the plain model."""
    model = peft_model.merge_and_unload()
    return model


# --------------------------------------------------------------------------- training


def _forward_inputs(batch: Dataset) -> dict:
    inputs = {"input_ids": batch["input_ids"]}
    if not bool(batch["attention_mask"].all()):  # packed blocks: no mask keeps the fast SDPA path
        inputs["attention_mask"] = batch["attention_mask"]
    return inputs


def _to(batch: Dataset, device: str) -> Dataset:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def eval_loss(model: nn.Module, data: Dataset, batch_size: int, device: str = "cpu") -> float:
    """Token-weighted mean next-token cross-entropy over ``data`` (labels -100 ignored)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    n = data["input_ids"].shape[0]
    for start in range(0, n, batch_size):
        batch = _to({k: v[start:start + batch_size] for k, v in data.items()}, device)
        logits = model(**_forward_inputs(batch), use_cache=False).logits[:, :-1].float()
        target = batch["labels"][:, 1:]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           ignore_index=-100, reduction="sum")
        total += loss.item()
        count += int((target != -100).sum())
    model.train(was_training)
    if count == 0:
        raise PruneNetError("evaluation set has no target tokens: raise seq_len or n_samples")
    return total / count


def _accumulate_grads(model: nn.Module, batch: Dataset, micro: int) -> float:
    """Backpropagate the batch's token-weighted mean next-token loss in chunks of ``micro`` samples."""
    n_tokens = int((batch["labels"][:, 1:] != -100).sum())
    if n_tokens == 0:
        raise PruneNetError("a training batch has no target tokens: raise seq_len")
    total = 0.0
    for start in range(0, batch["input_ids"].shape[0], micro):
        chunk = {k: v[start:start + micro] for k, v in batch.items()}
        logits = model(**_forward_inputs(chunk), use_cache=False).logits[:, :-1].float()
        target = chunk["labels"][:, 1:]
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           ignore_index=-100, reduction="sum") / n_tokens
        loss.backward()
        total += loss.item()
        del logits, loss
    return total


def _ppl(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else float("inf")


def _lr_factor(step: int, total: int) -> float:
    """Linear warmup over 5 % of the steps (at least one), then linear decay to 0 (0-based step)."""
    warmup = max(1, math.ceil(0.05 * total))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _write_log(path: str | os.PathLike, rows: list[tuple[int, str, float]]) -> None:
    with atomic_file(path) as tmp:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "split", "loss"])
            for step, split, loss in rows:
                w.writerow([step, split, f"{loss:.6f}"])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def finetune(
    model_path: str,
    out_dir: str | os.PathLike,
    dataset: str,
    n_samples: int,
    data_dir: str | os.PathLike | None,
    seq_len: int = 256,
    batch_size: int = 8,
    lr: float = 2e-4,
    epochs: float = 1.0,
    max_steps: int | None = None,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    target_modules: list[str] | None = None,
    eval_every: int = 10,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "auto",
    log_csv: str | os.PathLike | None = None,
    on_metrics: Callable[[str, float, int], None] | None = None,
    val_fraction: float = 0.1,
    test_blocks: int = 16,
    allow_truncate: bool = False,
    micro_batch_size: int | None = 2,
) -> dict:
    """LoRA-fine-tune ``model_path`` on ``dataset``, merge the adapters and save a plain HF checkpoint.

    Steps: ``max_steps`` if given, else ``ceil(epochs * n_train / batch_size)``; batches are drawn
    from a seeded stream of per-epoch permutations. Train loss is logged every step,
    validation loss at step 0, every ``eval_every`` steps and at the end (on the merged model).
    Test-split perplexity (WikiText-2/PTB, first ``test_blocks`` blocks of ``seq_len``) is
    measured before and after. The checkpoint in ``out_dir`` (written atomically) keeps the
    source config — including per-layer FFN sizes of pruned models — and its
    ``prunenet_meta.json`` gets the source's meta plus this run's summary under ``rft``.
    Each optimizer step's batch is run in chunks of ``micro_batch_size`` samples with
    gradient accumulation (same token-weighted loss as one pass; ``None`` = one pass): on
    SmolLM2 at seq_len 256 a batch of 8 in one pass peaks near 11 GB RSS, mostly logits.
    Returns that JSON-able summary.
    """
    t_start = time.perf_counter()
    if batch_size < 1 or (max_steps is not None and max_steps < 1) or epochs <= 0 or lr <= 0:
        raise PruneNetError("batch_size, max_steps, epochs and lr must be positive")
    if micro_batch_size is not None and micro_batch_size < 1:
        raise PruneNetError(f"micro_batch_size must be positive or None (one pass per batch), got {micro_batch_size}")
    if eval_every < 1:
        raise PruneNetError(f"eval_every must be at least 1, got {eval_every}")
    check_name(dataset)
    model, tokenizer = load_model(str(model_path), device=device, dtype=dtype)
    source_meta = read_meta(model_path) if Path(str(model_path)).is_dir() else {}
    train, val, info = rft_dataset(tokenizer, dataset, n_samples, seq_len, data_dir, val_fraction, seed, allow_truncate)
    test = None
    if dataset in PACKED_DATASETS and test_blocks > 0:
        add_bos = info["add_bos"]
        test = _packed(token_blocks(tokenizer, load_texts(dataset, "test", data_dir), seq_len, test_blocks, add_bos))
        info["eval_source"] = f"{split_note(dataset, 'test', data_dir)}: first {test['input_ids'].shape[0]} blocks of {seq_len} tokens (perplexity)"

    n_train = train["input_ids"].shape[0]
    micro = min(batch_size, micro_batch_size or batch_size)
    steps = max_steps if max_steps is not None else max(1, math.ceil(epochs * n_train / batch_size))
    per_layer = getattr(model.config, PER_LAYER_KEY, None)

    rows: list[tuple[int, str, float]] = []

    eval_seconds = 0.0

    def timed_eval(m: nn.Module, data: Dataset | None) -> float | None:
        nonlocal eval_seconds
        if data is None:
            return None
        t0 = time.perf_counter()
        loss = eval_loss(m, data, batch_size, device)
        eval_seconds += time.perf_counter() - t0
        return loss

    def emit(name: str, value: float, step: int) -> None:
        if on_metrics is not None:
            on_metrics(name, float(value), step)

    # Baselines on the unmodified model (identical to the LoRA model at init, since B = 0).
    test_before = timed_eval(model, test)
    val_before = timed_eval(model, val)
    rows.append((0, "val", val_before))
    emit("val_loss", val_before, 0)

    peft_model = attach_lora(model, lora_r, lora_alpha, lora_dropout, target_modules, seed)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps))

    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    torch.manual_seed(seed)  # LoRA dropout
    peft_model.train()
    tokens, train_seconds, losses = 0, 0.0, []
    val_last = val_before
    bar = tqdm(total=steps, desc=f"rft {dataset}", unit="step", dynamic_ncols=True)
    for step in range(1, steps + 1):
        while len(order) < batch_size:
            order.extend(torch.randperm(n_train, generator=gen).tolist())
        idx, order = torch.tensor(order[:batch_size]), order[batch_size:]
        batch = _to(_take(train, idx), device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = _accumulate_grads(peft_model, batch, micro)
        if not math.isfinite(loss):
            raise PruneNetError(f"training loss became {loss} at step {step}: lower lr (now {lr})")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        train_seconds += time.perf_counter() - t0
        tokens += int(batch["attention_mask"].sum())
        losses.append(loss)
        rows.append((step, "train", losses[-1]))
        emit("train_loss", losses[-1], step)
        if step % eval_every == 0 and step != steps:
            val_last = timed_eval(peft_model, val)
            rows.append((step, "val", val_last))
            emit("val_loss", val_last, step)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", val=f"{val_last:.3f}", tok_s=f"{tokens / max(train_seconds, 1e-9):.0f}")
    bar.close()

    peft_model.eval()
    merged = merge_lora(peft_model)
    merged.eval()
    val_after = timed_eval(merged, val)
    rows.append((steps, "val", val_after))
    emit("val_loss", val_after, steps)
    test_after = timed_eval(merged, test)
    if per_layer and list(getattr(merged.config, PER_LAYER_KEY, None) or []) != list(per_layer):
        raise PruneNetError(f"merged model lost its {PER_LAYER_KEY} config entry: this is a bug, please report it")

    tail = losses[-min(len(losses), 5):]
    summary = {
        "dataset": dataset,
        "n_samples": info["n_samples"],
        "n_train": info["n_train"],
        "n_val": info["n_val"],
        "sample": info["sample"],
        "seq_len": seq_len,
        "batch_size": batch_size,
        "micro_batch_size": micro,
        "lr": lr,
        "epochs": epochs if max_steps is None else steps * batch_size / n_train,
        "steps": steps,
        "tokens": tokens,
        "train_source": info["train_source"],
        "val_source": info["val_source"],
        "eval_source": info["eval_source"],
        "val_ppl_before": _ppl(val_before),
        "val_ppl_after": _ppl(val_after),
        "test_ppl_before": _ppl(test_before),
        "test_ppl_after": _ppl(test_after),
        "final_train_loss": sum(tail) / len(tail),
        "final_val_loss": val_after,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "seconds": time.perf_counter() - t_start,  # everything but the final save
        "tokens_per_s": tokens / train_seconds if train_seconds > 0 else None,
        "peak_rss_mb": _peak_rss_mb(),
        "lora": {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout,
                 "target_modules": list(target_modules) if target_modules else default_targets(merged),
                 "trainable_params": trainable},
        "optimizer": "AdamW (wd 0), linear warmup 5% + linear decay, grad clip 1.0",
        "seed": seed,
        "source_checkpoint": str(model_path),
        "device": device,
        "dtype": str(next(merged.parameters()).dtype).removeprefix("torch."),
    }
    for name in ("val_ppl_before", "val_ppl_after", "test_ppl_before", "test_ppl_after"):
        if summary[name] is not None:
            emit(name, summary[name], 0 if name.endswith("before") else steps)
    meta = {**source_meta, "rft": summary, "rft_dataset": dataset, "rft_samples": info["n_train"]}
    save_checkpoint(merged, tokenizer, out_dir, meta)
    if log_csv is not None:
        _write_log(log_csv, rows)
    return summary
