"""Size and cost of a model: parameters, effective sparsity, forward FLOPs per token (paper T1)."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module) -> int:
    """Unique parameters (tied embeddings counted once), including any added matrices."""
    return sum(p.numel() for p in model.parameters())


def effective_sparsity(params: int, dense_params: int) -> float:
    """1 − params/dense_params; negative when a method adds more than it removes (SliceGPT, Lemma 3.1)."""
    return 1.0 - params / dense_params


def flops_per_token(model: nn.Module, seq_len: int = 2048) -> int:
    """Forward FLOPs for one token at context length ``seq_len``.

    2·in·out for every ``nn.Linear`` applied once per token (LM head included, embedding
    lookups free), plus attention scores and weighted sum: 4·seq_len·(heads·head_dim) per layer, each
    layer's heads counted from its projections (head pruning leaves layers with different counts).
    """
    from .arch import get_adapter

    linear = sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    adapter = get_adapter(model)
    layouts = [adapter.attention(layer) for layer in adapter.layers()]
    attention = 4 * seq_len * sum(a.num_heads * a.head_dim for a in layouts)
    return int(linear + attention)


def peak_memory_mb(device: str = "cpu") -> float:
    """Peak memory of this process so far: CUDA's allocator peak on a GPU, else the resident-set peak."""
    import resource

    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def model_stats(model: nn.Module, dense_params: int | None = None, seq_len: int = 2048) -> dict:
    params = count_params(model)
    out = {"params": params, "flops_per_token": flops_per_token(model, seq_len), "flops_seq_len": seq_len}
    if dense_params:
        out["dense_params"] = dense_params
        out["effective_sparsity"] = effective_sparsity(params, dense_params)
    return out
