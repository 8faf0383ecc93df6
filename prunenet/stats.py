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
    lookups free), plus attention scores and weighted sum: 4·seq_len·(heads·head_dim) per layer.
    """
    linear = sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    attention = 4 * seq_len * heads * head_dim * cfg.num_hidden_layers
    return int(linear + attention)


def model_stats(model: nn.Module, dense_params: int | None = None, seq_len: int = 2048) -> dict:
    params = count_params(model)
    out = {"params": params, "flops_per_token": flops_per_token(model, seq_len), "flops_seq_len": seq_len}
    if dense_params:
        out["dense_params"] = dense_params
        out["effective_sparsity"] = effective_sparsity(params, dense_params)
    return out
