"""What pruning buys at inference: prefill and decode throughput of a model, measured (paper Table 9b).

Why a protocol of its own: a single timing of a forward pass mostly measures allocator warm-up and noise. Here
every (batch size) cell runs ``warmup`` untimed repetitions, then ``repeats`` timed ones, and reports the median
with the quartiles and extremes. One repetition is one generation with the KV cache:

- **prefill**: one forward over ``batch × prompt_len`` prompt tokens (cache filled; the last position's logits
  give the first generated token);
- **decode**: the other ``gen_len − 1`` tokens, one single-token step each on that cache, feeding the greedy
  token of the previous step.

Tokens/s are ``batch·prompt_len / t_prefill`` and ``batch·(gen_len − 1) / t_decode``. On CUDA every timer stops after
``torch.cuda.synchronize()`` (kernels are asynchronous). Prompts are seeded random token ids: speed depends on
shapes, not on content. The FLOPs-ideal speed-up of a pruned model is the ratio of forward FLOPs per token
(:func:`prunenet.stats.flops_per_token`) at the measured context length, so measured and ideal compare like
for like.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .stats import flops_per_token, peak_memory_mb


@dataclass(frozen=True)
class SpeedSettings:
    """One measurement protocol; recorded in every output so numbers are never read without it."""

    batch_sizes: tuple[int, ...] = (1, 8)
    prompt_len: int = 128
    gen_len: int = 32
    warmup: int = 1
    repeats: int = 5
    seed: int = 0

    def check(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.prompt_len < 1 or self.gen_len < 2 or self.warmup < 0 or self.repeats < 1:
            raise ValueError("prompt_len and repeats must be >= 1, gen_len >= 2, warmup >= 0")


def spread(values: list[float]) -> dict[str, float | list[float]]:
    """Median, quartiles and extremes of repeated timings (and the values themselves)."""
    qs = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {
        "median": statistics.median(values),
        "q1": qs[0],
        "q3": qs[2],
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _last_logits_only(model: nn.Module) -> dict:
    """``logits_to_keep=1`` where the model takes it (the LM head then runs on the last position only, as in
    ``generate``); other models compute every position's logits."""
    import inspect

    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


@torch.no_grad()
def generate_once(model: nn.Module, ids: torch.Tensor, gen_len: int) -> tuple[float, float, torch.Tensor]:
    """(prefill seconds, decode seconds, generated ids ``[batch, gen_len]``) of one greedy generation."""
    device = ids.device
    _sync(device)
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=True, **_last_logits_only(model))
    token = out.logits[:, -1].argmax(-1, keepdim=True)
    _sync(device)
    t1 = time.perf_counter()
    cache, generated = out.past_key_values, [token]
    for _ in range(gen_len - 1):
        out = model(input_ids=token, past_key_values=cache, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        generated.append(token)
    _sync(device)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, torch.cat(generated, dim=1)


@dataclass
class SpeedResult:
    settings: dict
    device: str
    threads: int
    flops_per_token: int  # at the context length prompt_len + gen_len
    cells: dict[str, dict] = field(default_factory=dict)  # "b1", "b8" -> {"prefill_tok_s": spread, ...}
    peak_memory_mb: float = 0.0


def measure(model: nn.Module, vocab_size: int, settings: SpeedSettings = SpeedSettings()) -> SpeedResult:
    """Prefill and decode tokens/s of ``model`` (on its own device and dtype) at each batch size."""
    settings.check()
    device = next(model.parameters()).device
    model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    gen = torch.Generator().manual_seed(settings.seed)
    result = SpeedResult(
        settings=asdict(settings),
        device=str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        threads=torch.get_num_threads(),
        flops_per_token=flops_per_token(model, settings.prompt_len + settings.gen_len),
    )
    for b in settings.batch_sizes:
        ids = torch.randint(0, vocab_size, (b, settings.prompt_len), generator=gen).to(device)
        for _ in range(settings.warmup):
            generate_once(model, ids, settings.gen_len)
        pre, dec = [], []
        for _ in range(settings.repeats):
            tp, td, _ = generate_once(model, ids, settings.gen_len)
            pre.append(b * settings.prompt_len / tp)
            dec.append(b * (settings.gen_len - 1) / td)
        result.cells[f"b{b}"] = {"batch_size": b, "prefill_tok_s": spread(pre), "decode_tok_s": spread(dec)}
    result.peak_memory_mb = peak_memory_mb(str(device))
    return result
