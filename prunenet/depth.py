"""Depth pruning: how much each decoder layer changes the residual stream, and removing layers.

ShortGPT (Men et al., 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than
You Expect", Eq. 1) scores layer l by its Block Influence on calibration text,

    BI_l = 1 − E_{tokens} [ x_l · x_{l+1} / (‖x_l‖ ‖x_{l+1}‖) ],

x_l being the hidden state entering layer l and x_{l+1} the one leaving it: a layer that barely
turns the residual stream (BI near 0) can go. Removing layers keeps the model a standard
checkpoint: the remaining layers are renumbered (the KV cache is indexed by ``layer_idx``) and
every per-layer config list is cut the same way, so ``AutoModelForCausalLM.from_pretrained``
loads the result as it is.

Fair budgets: :func:`prunenet.budget.ffn_rows_budget` is the parameter count PruneNet removes at a ratio,
and :func:`layers_for_budget` picks the number of layers whose removal comes nearest to it. At the nominal
ratio (``budget: ratio``) the count is :func:`nominal_layers` instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .arch import get_adapter
from .errors import PruneNetError

# Config entries holding one value per decoder layer (Gemma-3 / Qwen2-3 / Mistral ``layer_types``, SmolLM3's
# ``no_rope_layers``): cut with the layers so the attention pattern of every kept layer is unchanged.
PER_LAYER_CONFIG = ("layer_types", "no_rope_layers")


def _hidden(x) -> torch.Tensor:
    """A decoder layer's hidden-state output (some families return a tuple, some the tensor)."""
    return x[0] if isinstance(x, (tuple, list)) else x


@torch.no_grad()
def block_influence(model: nn.Module, blocks: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """BI_l of every decoder layer (float64, length L) over all tokens of the ``blocks`` (``[n, seq]`` ids).

    Forward hooks read each layer's input and output on the model's own forward pass, so attention
    masks, rotary embeddings and caches are exactly the model's; nothing is stored but running sums.
    """
    layers = get_adapter(model).layers()
    sums = torch.zeros(len(layers), dtype=torch.float64)
    tokens = 0

    def hook(i: int):
        def fn(module, args, kwargs, out):
            x_in = args[0] if args else kwargs["hidden_states"]
            cos = F.cosine_similarity(x_in.double(), _hidden(out).double(), dim=-1)
            sums[i] += cos.sum().cpu()

        return fn

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    try:
        for b in range(0, blocks.shape[0], batch_size):
            ids = blocks[b : b + batch_size].to(device)
            model(input_ids=ids, use_cache=False)
            tokens += ids.numel()
    finally:
        for h in handles:
            h.remove()
    return 1.0 - sums / tokens


def layers_for_budget(scores: torch.Tensor, layer_params: Sequence[int], budget: int) -> list[int]:
    """Layers to remove, lowest score first: the count whose parameters come nearest to ``budget``.

    Ties go to fewer layers; at least one layer always stays. Returned in ascending index order.
    """
    if len(scores) != len(layer_params):
        raise PruneNetError(f"{len(scores)} layer scores for {len(layer_params)} layers")
    order = torch.argsort(torch.as_tensor(scores), stable=True).tolist()[: len(layer_params) - 1]
    best_k, best_gap, removed = 0, abs(budget), 0
    for k, i in enumerate(order, start=1):
        removed += int(layer_params[i])
        if abs(removed - budget) < best_gap:
            best_k, best_gap = k, abs(removed - budget)
    return sorted(order[:best_k])


def nominal_layers(ratio: float, n_layers: int) -> int:
    """Layers a depth pruner removes at its nominal ratio: ``⌊r·L⌋`` (at most ``L − 1``).

    Why the floor: neither release takes a ratio (ShortGPT's takes a count, ``n_prune_layers``; LaCo's walk stops
    where its threshold does); ShortGPT's README removes 9 of LLaMA-2-7B's 32 layers, and the paper's Table 4 labels
    that row (taken from Men et al. 2024) "30 %": ⌊0.3·32⌋ = 9, where rounding gives 10.
    """
    return min(math.floor(ratio * n_layers + 1e-9), n_layers - 1)  # 1e-9: 0.58·50 is 28.999… in floating point


def lowest_layers(scores: torch.Tensor, k: int) -> list[int]:
    """The ``k`` layers with the lowest scores (ties: the lower index), in ascending index order."""
    return sorted(torch.argsort(torch.as_tensor(scores), stable=True).tolist()[:k])


def remove_layers(model: nn.Module, drop: Sequence[int]) -> nn.Module:
    """Delete decoder layers ``drop`` in place; renumber the rest and cut per-layer config entries."""
    adapter = get_adapter(model)
    layers = list(adapter.layers())
    drop = set(int(i) for i in drop)
    if not drop <= set(range(len(layers))) or len(drop) >= len(layers):
        raise PruneNetError(f"cannot remove layers {sorted(drop)} of a {len(layers)}-layer model (keep at least one)")
    keep = [layer for i, layer in enumerate(layers) if i not in drop]
    adapter.set_layers(keep)
    for new, layer in enumerate(keep):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new
    config = model.config
    for key in PER_LAYER_CONFIG:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == len(layers):
            setattr(config, key, type(values)(v for i, v in enumerate(values) if i not in drop))
    config.num_hidden_layers = len(keep)
    return model
