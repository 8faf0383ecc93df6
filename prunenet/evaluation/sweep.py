"""Perplexity against compression ratio for one method and seed: the cheap sweep behind ``ppl_vs_ratio``.

Each point prunes a fresh copy of the dense model in memory with exactly what ``prunenet prune``
would run (:func:`prunenet.methods.pipeline.apply` on the same request), so a point equals the perplexity of the
checkpoint ``prune`` would have written, without writing one per ratio; a method's ratio-independent
stage runs once for all points.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any

from torch import nn

from ..methods import METHODS
from ..methods.base import PruneRequest
from ..methods.pipeline import apply
from ..stats import model_stats
from .ppl import perplexity


def ppl_sweep(
    model: nn.Module,
    tokenizer: Any,
    method: str,
    requests: list[PruneRequest],
    texts: list[str],
    seq_len: int,
    max_blocks: int | None,
    batch_size: int = 8,
) -> list[dict]:
    """One point per request: ratio, parameters, effective sparsity and perplexity of the pruned copy.

    A method's ratio-independent stage (:attr:`Method.prepare`) runs once, on the dense model, for all points.
    """
    spec = METHODS.get(method)
    dense_params = model_stats(model)["params"]
    if spec.prepare is not None and requests and requests[0].prepared is None:
        state = spec.prepare(model, tokenizer, requests[0])
        requests = [replace(r, prepared=state) for r in requests]
    points = []
    for request in requests:
        t0 = time.perf_counter()
        pruned, _ = apply(spec, copy.deepcopy(model), tokenizer, request)
        pruned.to(request.device)  # a layer-by-layer method's model waits on the host: evaluated on the device
        stats = model_stats(pruned, dense_params)
        ppl = perplexity(pruned, tokenizer, texts, seq_len, max_blocks, batch_size, desc=f"ppl r={request.ratio}")
        points.append(
            {
                "ratio": float(request.ratio),
                "policy": request.policy,
                "params": stats["params"],
                "effective_sparsity": stats["effective_sparsity"],
                "seconds": time.perf_counter() - t0,
            }
            | ppl
        )
        del pruned
    return points


def sweep_requests(base: PruneRequest, ratios: list[float], policies: list[str]) -> list[PruneRequest]:
    """The base request at each ratio, with the policy file of that ratio where the method takes one."""
    if not policies:
        return [replace(base, ratio=r) for r in ratios]
    return [replace(base, ratio=r, policy=p) for r, p in zip(ratios, policies, strict=True)]
