"""The RFT run: load the checkpoint and samples, train LoRA, merge and evaluate, save.

:func:`finetune` chains :func:`load`, :func:`baseline`, :func:`train`, :func:`evaluate` and
:func:`save`. The order of everything that touches the global torch RNG is fixed
(``attach_lora`` seeds before the adapters' init, then the loop seeds LoRA dropout; batch
order has its own generator), so a seed gives byte-identical checkpoints and loss logs.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoints import per_layer_shapes
from ..data import check_name
from ..errors import PruneNetError
from ..models import load_model, read_meta, save_checkpoint
from .data import Dataset, perplexity_blocks, rft_dataset, take
from .lora import attach_lora, default_targets, merge_lora
from .loss import Log, accumulate_grads, ppl, to_device

OPTIMIZER = "AdamW (wd 0), linear warmup 5% + linear decay, grad clip 1.0"


def _lr_factor(step: int, total: int) -> float:
    """Linear warmup over 5 % of the steps (at least one), then linear decay to 0 (0-based step)."""
    warmup = max(1, math.ceil(0.05 * total))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


# --------------------------------------------------------------------------- run state


@dataclass
class Splits:
    """The RFT samples and their description (:func:`prunenet.rft.rft_dataset`'s ``info``)."""

    train: Dataset
    val: Dataset
    test: Dataset | None
    info: dict


@dataclass(frozen=True)
class Hyper:
    """The training loop's settings, resolved from :func:`finetune`'s arguments."""

    steps: int
    batch_size: int
    micro: int
    lr: float
    eval_every: int
    seed: int
    device: str
    lora: dict  # attach_lora's r, alpha, dropout, target_modules


@dataclass
class Trained:
    """What the loop leaves: the LoRA model, per-step train losses, throughput and adapter size."""

    peft_model: Any
    losses: list[float]
    tokens: int
    train_seconds: float
    trainable: int


# --------------------------------------------------------------------------- steps


def _check_args(
    dataset: str,
    batch_size: int,
    max_steps: int | None,
    epochs: float,
    lr: float,
    micro_batch_size: int | None,
    eval_every: int,
) -> None:
    """Refuse bad settings before the model is loaded."""
    if batch_size < 1 or (max_steps is not None and max_steps < 1) or epochs <= 0 or lr <= 0:
        raise PruneNetError("batch_size, max_steps, epochs and lr must be positive")
    if micro_batch_size is not None and micro_batch_size < 1:
        raise PruneNetError(f"micro_batch_size must be positive or None (one pass per batch), got {micro_batch_size}")
    if eval_every < 1:
        raise PruneNetError(f"eval_every must be at least 1, got {eval_every}")
    check_name(dataset)


def _refuse_low_rank(model_path: str) -> None:
    """LoRA targets projections by name, and peft cannot wrap a factored projection (SVD-LLM, ASVD checkpoints):
    refuse before any weights load rather than inside peft."""
    config = Path(str(model_path)) / "config.json"
    if config.is_file():
        import json

        from ..checkpoints import low_rank

        if json.loads(config.read_text()).get(low_rank.KEY):
            raise PruneNetError(
                f"{model_path} is a low-rank (SVD-LLM/ASVD) checkpoint: LoRA recovery fine-tuning of factored "
                "projections is not supported; fine-tune a row-pruned, SliceGPT or layer-pruned model instead"
            )


def load(model_path: str, data: dict, test_blocks: int, device: str, dtype: str) -> tuple[nn.Module, Any, dict, Splits]:
    """(model, tokenizer, the source's meta, samples); ``data`` holds :func:`rft_dataset`'s arguments."""
    _refuse_low_rank(model_path)
    model, tokenizer = load_model(str(model_path), device=device, dtype=dtype)
    source_meta = read_meta(model_path) if Path(str(model_path)).is_dir() else {}
    train_set, val, info = rft_dataset(tokenizer, **data)
    test = perplexity_blocks(tokenizer, info, data["data_dir"], test_blocks)
    return model, tokenizer, source_meta, Splits(train_set, val, test, info)


def baseline(model: nn.Module, splits: Splits, log: Log) -> tuple[float, float | None]:
    """(val, test) losses of the unmodified model: the LoRA model's at init too, since B = 0."""
    test_before = log.loss(model, splits.test)
    val_before = log.loss(model, splits.val)
    log.record(0, "val", val_before)
    return val_before, test_before


class _Batches:
    """A seeded stream of per-epoch permutations of the training samples, cut into batches."""

    def __init__(self, data: Dataset, batch_size: int, seed: int, device: str):
        self.data, self.batch_size, self.device = data, batch_size, device
        self.gen = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def next(self) -> Dataset:
        n = self.data["input_ids"].shape[0]
        while len(self.order) < self.batch_size:
            self.order.extend(torch.randperm(n, generator=self.gen).tolist())
        idx, self.order = torch.tensor(self.order[: self.batch_size]), self.order[self.batch_size :]
        return to_device(take(self.data, idx), self.device)


def train(model: nn.Module, splits: Splits, hp: Hyper, log: Log, val_before: float, desc: str) -> Trained:
    """Attach LoRA and run ``hp.steps`` AdamW steps; validation every ``hp.eval_every`` steps (not the last)."""
    peft_model = attach_lora(model, seed=hp.seed, **hp.lora)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, hp.steps))
    batches = _Batches(splits.train, hp.batch_size, hp.seed, hp.device)
    torch.manual_seed(hp.seed)  # LoRA dropout
    peft_model.train()
    out = Trained(peft_model, [], 0, 0.0, sum(p.numel() for p in params))
    val_last = val_before
    bar = tqdm(total=hp.steps, desc=desc, unit="step", dynamic_ncols=True)
    for step in range(1, hp.steps + 1):
        batch = batches.next()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = accumulate_grads(peft_model, batch, hp.micro)
        if not math.isfinite(loss):
            raise PruneNetError(f"training loss became {loss} at step {step}: lower lr (now {hp.lr})")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        out.train_seconds += time.perf_counter() - t0
        out.tokens += int(batch["attention_mask"].sum())
        out.losses.append(loss)
        log.record(step, "train", loss)
        if step % hp.eval_every == 0 and step != hp.steps:
            val_last = log.loss(peft_model, splits.val)
            log.record(step, "val", val_last)
        bar.update(1)
        tok_s = out.tokens / max(out.train_seconds, 1e-9)
        bar.set_postfix(loss=f"{loss:.3f}", val=f"{val_last:.3f}", tok_s=f"{tok_s:.0f}")
    bar.close()
    return out


def evaluate(
    peft_model, splits: Splits, log: Log, steps: int, per_layer: list[int] | None
) -> tuple[nn.Module, tuple[float, float | None]]:
    """Merge the adapters, then (merged model, (val, test) losses); the merge must keep per-layer FFN sizes."""
    peft_model.eval()
    merged = merge_lora(peft_model)
    merged.eval()
    val_after = log.loss(merged, splits.val)
    log.record(steps, "val", val_after)
    test_after = log.loss(merged, splits.test)
    if per_layer and per_layer_shapes.sizes(merged.config) != list(per_layer):
        raise PruneNetError(
            f"merged model lost its {per_layer_shapes.KEY} config entry: this is a bug, please report it"
        )
    return merged, (val_after, test_after)


def save(
    merged: nn.Module, tokenizer, out_dir: str | os.PathLike, meta: dict, log_csv: str | os.PathLike | None, log: Log
) -> None:
    """The merged checkpoint (atomically, in the format its config calls for) and the loss CSV."""
    save_checkpoint(merged, tokenizer, out_dir, meta)
    if log_csv is not None:
        log.write_csv(log_csv)


def _summary(
    dataset: str,
    seq_len: int,
    epochs: float,
    hp: Hyper,
    info: dict,
    out: Trained,
    log: Log,
    before: tuple[float, float | None],
    after: tuple[float, float | None],
    merged: nn.Module,
    t_start: float,
    model_path: str,
) -> dict:
    """The JSON-able run summary (returned, and stored under ``rft`` in the checkpoint's meta)."""
    tail = out.losses[-min(len(out.losses), 5) :]
    target_modules = hp.lora["target_modules"]
    return {
        "dataset": dataset,
        "n_samples": info["n_samples"],
        "n_train": info["n_train"],
        "n_val": info["n_val"],
        "sample": info["sample"],
        "seq_len": seq_len,
        "batch_size": hp.batch_size,
        "micro_batch_size": hp.micro,
        "lr": hp.lr,
        "epochs": epochs,
        "steps": hp.steps,
        "tokens": out.tokens,
        "train_source": info["train_source"],
        "val_source": info["val_source"],
        "eval_source": info["eval_source"],
        "val_ppl_before": ppl(before[0]),
        "val_ppl_after": ppl(after[0]),
        "test_ppl_before": ppl(before[1]),
        "test_ppl_after": ppl(after[1]),
        "final_train_loss": sum(tail) / len(tail),
        "final_val_loss": after[0],
        "train_seconds": out.train_seconds,
        "eval_seconds": log.eval_seconds,
        "seconds": time.perf_counter() - t_start,  # everything but the final save
        "tokens_per_s": out.tokens / out.train_seconds if out.train_seconds > 0 else None,
        "peak_rss_mb": _peak_rss_mb(),
        "lora": {
            "r": hp.lora["r"],
            "alpha": hp.lora["alpha"],
            "dropout": hp.lora["dropout"],
            "target_modules": list(target_modules) if target_modules else default_targets(merged),
            "trainable_params": out.trainable,
        },
        "optimizer": OPTIMIZER,
        "seed": hp.seed,
        "source_checkpoint": str(model_path),
        "device": hp.device,
        "dtype": str(next(merged.parameters()).dtype).removeprefix("torch."),
    }


def _emit_perplexities(log: Log, summary: dict, steps: int) -> None:
    """Validation and test perplexity before (step 0) and after (the last step) fine-tuning, where measured."""
    for name in ("val_ppl_before", "val_ppl_after", "test_ppl_before", "test_ppl_after"):
        if summary[name] is not None:
            log.emit(name, summary[name], 0 if name.endswith("before") else steps)


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

    Steps: ``max_steps`` if given, else ``ceil(epochs * n_train / batch_size)``; batches come from a seeded stream
    of per-epoch permutations. Train loss every step, validation loss at step 0, every ``eval_every`` steps and at
    the end (merged model); test-split perplexity (first ``test_blocks`` blocks of ``seq_len``) before and after.
    The checkpoint (written atomically) keeps the source config, per-layer FFN sizes included; its
    ``prunenet_meta.json`` adds this run's summary under ``rft``. A step's batch runs in chunks of
    ``micro_batch_size`` with gradient accumulation (same token-weighted loss; ``None`` = one pass): on SmolLM2
    at seq_len 256 a batch of 8 in one pass peaks near 11 GB RSS, mostly logits. Returns the JSON-able summary.
    """
    t_start = time.perf_counter()
    _check_args(dataset, batch_size, max_steps, epochs, lr, micro_batch_size, eval_every)
    data = {"dataset": dataset, "n_samples": n_samples, "seq_len": seq_len, "data_dir": data_dir}
    data |= {"val_fraction": val_fraction, "seed": seed, "allow_truncate": allow_truncate}
    model, tokenizer, source_meta, splits = load(model_path, data, test_blocks, device, dtype)
    n_train = splits.train["input_ids"].shape[0]
    steps = max_steps if max_steps is not None else max(1, math.ceil(epochs * n_train / batch_size))
    lora = dict(r=lora_r, alpha=lora_alpha, dropout=lora_dropout, target_modules=target_modules)
    hp = Hyper(steps, batch_size, min(batch_size, micro_batch_size or batch_size), lr, eval_every, seed, device, lora)
    per_layer = per_layer_shapes.sizes(model.config)
    log = Log(batch_size, device, on_metrics)

    before = baseline(model, splits, log)
    trained = train(model, splits, hp, log, before[0], desc=f"rft {dataset}")
    merged, after = evaluate(trained.peft_model, splits, log, steps, per_layer)

    run_epochs = epochs if max_steps is None else steps * batch_size / n_train
    summary = _summary(
        dataset, seq_len, run_epochs, hp, splits.info, trained, log, before, after, merged, t_start, model_path
    )
    _emit_perplexities(log, summary, steps)
    meta = {**source_meta, "rft": summary, "rft_dataset": dataset, "rft_samples": splits.info["n_train"]}
    save(merged, tokenizer, out_dir, meta, log_csv, log)
    return summary
