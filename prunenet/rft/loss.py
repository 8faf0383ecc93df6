"""The one objective RFT trains and reports: token-weighted next-token cross-entropy, and its log.

Training (:func:`accumulate_grads`) and evaluation (:func:`eval_loss`) share the loss
(:func:`_summed_loss`), so packed blocks and padded Alpaca records are weighted the same way
in both. :class:`Log` keeps the CSV rows and the time spent evaluating, so the reported
tokens/s is training throughput only.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..artifacts import atomic_file
from ..errors import PruneNetError
from .data import Dataset

Metrics = Callable[[str, float, int], None]


def _forward_inputs(batch: Dataset) -> dict:
    inputs = {"input_ids": batch["input_ids"]}
    if not bool(batch["attention_mask"].all()):  # packed blocks: no mask keeps the fast SDPA path
        inputs["attention_mask"] = batch["attention_mask"]
    return inputs


def to_device(batch: Dataset, device: str) -> Dataset:
    return {k: v.to(device) for k, v in batch.items()}


def _summed_loss(model: nn.Module, batch: Dataset) -> torch.Tensor:
    """Summed next-token cross-entropy of a batch (labels -100 ignored), in float32."""
    logits = model(**_forward_inputs(batch), use_cache=False).logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )


@torch.no_grad()
def eval_loss(model: nn.Module, data: Dataset, batch_size: int, device: str = "cpu") -> float:
    """Token-weighted mean next-token cross-entropy over ``data`` (labels -100 ignored)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    n = data["input_ids"].shape[0]
    for start in range(0, n, batch_size):
        batch = to_device({k: v[start : start + batch_size] for k, v in data.items()}, device)
        total += _summed_loss(model, batch).item()
        count += int((batch["labels"][:, 1:] != -100).sum())
    model.train(was_training)
    if count == 0:
        raise PruneNetError("evaluation set has no target tokens: raise seq_len or n_samples")
    return total / count


def accumulate_grads(model: nn.Module, batch: Dataset, micro: int) -> float:
    """Backpropagate the batch's token-weighted mean next-token loss in chunks of ``micro`` samples.

    Each chunk's summed loss is divided by the whole batch's target count, so the gradient
    equals one pass over the batch while only one chunk's logits are alive at a time.
    """
    n_tokens = int((batch["labels"][:, 1:] != -100).sum())
    if n_tokens == 0:
        raise PruneNetError("a training batch has no target tokens: raise seq_len")
    total = 0.0
    for start in range(0, batch["input_ids"].shape[0], micro):
        chunk = {k: v[start : start + micro] for k, v in batch.items()}
        loss = _summed_loss(model, chunk) / n_tokens
        loss.backward()
        total += loss.item()
        del loss
    return total


def ppl(loss: float | None) -> float | None:
    """Perplexity of a mean loss (inf rather than an overflow error for a diverged run)."""
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else float("inf")


@dataclass
class Log:
    """Loss-log rows (the CSV), the metric callback and the time spent evaluating."""

    batch_size: int
    device: str
    on_metrics: Metrics | None
    rows: list[tuple[int, str, float]] = field(default_factory=list)
    eval_seconds: float = 0.0

    def loss(self, model: nn.Module, data: Dataset | None) -> float | None:
        """Timed :func:`eval_loss`, or None without data."""
        if data is None:
            return None
        t0 = time.perf_counter()
        loss = eval_loss(model, data, self.batch_size, self.device)
        self.eval_seconds += time.perf_counter() - t0
        return loss

    def emit(self, name: str, value: float, step: int) -> None:
        if self.on_metrics is not None:
            self.on_metrics(name, float(value), step)

    def record(self, step: int, split: str, loss: float) -> None:
        """One CSV row, also sent as the ``<split>_loss`` metric."""
        self.rows.append((step, split, loss))
        self.emit(f"{split}_loss", loss, step)

    def write_csv(self, path: str | os.PathLike) -> None:
        """``step,split,loss`` rows (loss to 6 decimals), written atomically."""
        with atomic_file(path) as tmp:
            with tmp.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["step", "split", "loss"])
                for step, split, loss in self.rows:
                    w.writerow([step, split, f"{loss:.6f}"])
