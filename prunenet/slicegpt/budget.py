"""SliceGPT on a parameter budget: the hidden width whose sliced model has a given parameter count.

SliceGPT's ratio is the fraction of the residual stream's width it deletes (paper: "slicing
ratio" = the compression ratio), but a sliced model also gains parameters: a ``d' × d'``
shortcut per residual connection and, for models with tied embeddings (SmolLM2, OPT), an
untied LM head. At the same nominal ratio it is therefore much larger than a PruneNet model
(SmolLM2 at 0.3: 8.8 % effective sparsity against PruneNet's 17.8 %). ``budget: params``
picks instead the width whose sliced model has the parameter count PruneNet leaves at that
ratio, so both sit on the same budget; ``budget: ratio`` keeps the paper's convention.

Counting needs no calibration and no weights: the sliced structure is built on the meta
device from the config (:func:`prunenet.slicegpt.checkpoint.build_sliced_structure`, the
loader's own code) and its parameters are counted.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..stats import count_params
from .checkpoint import build_sliced_structure
from .fuse import slicegpt_adapter


def sliced_params(model: nn.Module, kept: int) -> int:
    """Parameters of ``model`` sliced to residual width ``kept`` (shortcuts and an untied head included)."""
    from transformers import AutoModelForCausalLM

    adapter = slicegpt_adapter(model)
    config = copy.deepcopy(model.config)
    with torch.device("meta"):
        shell = AutoModelForCausalLM.from_config(config)
    layers = config.num_hidden_layers
    norms = len(adapter.block(adapter.layers()[0]).norms)
    dims = [kept, kept] if adapter.parallel_block else [kept, kept, kept]
    spec = {
        "family": adapter.family,
        "embedding_dim": kept,
        "layer_dims": [dims] * layers,
        "norm_eps": [[1e-5] * norms] * layers,  # structure only
        "final_norm_eps": 1e-5,
    }  # biases: as fusing the norms leaves them (OPT's LayerNorm shifts become reader and LM-head biases)
    return count_params(build_sliced_structure(shell, spec))


def width_for_params(model: nn.Module, target: int, round_to: int = 8) -> int:
    """The multiple of ``round_to`` (at most the hidden size) whose sliced model's count is nearest ``target``.

    Ties go to the wider model. The count grows with the width, so a bisection finds the crossing.
    """
    d = model.config.hidden_size
    widths = list(range(round_to, d + 1, round_to))
    lo, hi = 0, len(widths) - 1
    while lo < hi:  # first width whose count reaches the target
        mid = (lo + hi) // 2
        if sliced_params(model, widths[mid]) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = {w: sliced_params(model, w) for w in widths[max(lo - 1, 0) : lo + 1]}
    return min(candidates, key=lambda w: (abs(candidates[w] - target), -w))
