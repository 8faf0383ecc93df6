"""ShortGPT (Men et al., 2024) as a method: remove the decoder layers with the lowest Block Influence.

Block Influence is measured on calibration windows (:func:`prunenet.depth.block_influence`); the
number of layers removed is the one whose parameters come nearest to what PruneNet removes at the
same ratio (:func:`prunenet.budget.ffn_rows_budget`, :func:`prunenet.depth.layers_for_budget`), so
rows of a table compare models of (nearly) the same size: a layer is the unit, so the match is as
close as one layer's parameters allow (SmolLM2: 2.6 % of the model), and every checkpoint reports
its real parameter count and effective sparsity. The result is a plain ``from_pretrained``
checkpoint with fewer layers. At ``budget: ratio`` the count is ⌊r·L⌋ (:func:`prunenet.depth.nominal_layers`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import register
from .base import CPU_WINDOWS, EQUAL_SIZE, Budget, Method, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


def prepare(model: nn.Module, tokenizer: Any, request: PruneRequest) -> dict:
    """Block Influence of every layer: the ratio only decides how many of the lowest go."""
    from ..depth import block_influence

    return {"block_influence": block_influence(model, request.calibration(tokenizer))}


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: Budget) -> tuple[nn.Module, dict]:
    from ..arch import get_adapter
    from ..depth import layers_for_budget, lowest_layers, nominal_layers, remove_layers
    from ..stats import count_params

    t0 = time.perf_counter()
    scores = SHORTGPT.state(model, tokenizer, request)["block_influence"]
    layer_params = [count_params(layer) for layer in get_adapter(model).layers()]
    if budget.nominal:
        drop = lowest_layers(scores, nominal_layers(budget.ratio, len(layer_params)))
    else:
        drop = layers_for_budget(scores, layer_params, budget.params)
    remove_layers(model, drop)
    meta = {
        "block_influence": [round(float(s), 6) for s in scores],
        "removed_layers": drop,
        "param_budget": budget.params,
        "params_removed": sum(layer_params[i] for i in drop),
        "score_seconds": time.perf_counter() - t0,
    }
    return model, meta


# Where its release's values were read (Method.release).
RELEASE = "icip-cas/ShortGPT shortgpt/run_shortgpt.py, shortgpt/shortgpt.py"

SHORTGPT = register(
    Method(
        name="shortgpt",
        summary="remove whole decoder layers with the lowest Block Influence (needs calibration)",
        run=run,
        prepare=prepare,
        needs_calibration=True,
        budget=True,
        nominal="floor(r L) of the L decoder layers removed, the lowest Block Influence first (the release takes that"
        " count, n_prune_layers)",
        checkpoint="hf",
        stochastic=False,
        release=(
            Release(
                "budget",
                "a layer count, not a ratio (n_prune_layers: 9 of Llama-2-7B's 32)",
                RELEASE,
                EQUAL_SIZE + "; paper.yaml: ratio (paper Table 4)",
            ),
            Release(
                "calib_dataset",
                "pg19, validation split (emozilla/pg19)",
                RELEASE,
                "no PG19 copy offline or corpus choice here: WikiText-2",
            ),
            Release(
                "calib_samples",
                "every book of the split, each cut into 256-token windows (eval_importance stride)",
                RELEASE,
                CPU_WINDOWS + "; a whole corpus is not a window count this workflow can name",
            ),
            Release("calib_seq_len", "256 (stride)", RELEASE),
        ),
    ),
)
