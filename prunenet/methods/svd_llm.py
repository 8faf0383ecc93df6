"""SVD-LLM (Wang, Zheng, Wan, Zhang 2024, arXiv 2403.07378) as a method: whitened truncated SVD of every projection.

The algorithm lives in :mod:`prunenet.lowrank.svd_llm`. Every attention and FFN projection of every decoder
block is factored at one uniform parameter ratio, bisected so that the model loses the parameters PruneNet
removes at ``--ratio`` (:func:`prunenet.budget.ffn_rows_budget`), or at ``budget: ratio`` factored at the
parameter ratio ``1 − r`` itself as the release does; the checkpoint is
:mod:`prunenet.checkpoints.low_rank`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import register
from .base import CPU_WINDOWS, EQUAL_SIZE, OFFLINE_SPLIT, Budget, Method, Option, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: Budget) -> tuple[nn.Module, dict]:
    from ..checkpoints.low_rank import mark
    from ..lowrank.budget import check_budget
    from ..lowrank.svd_llm import compress_svd_llm
    from ..stats import count_params

    dense = count_params(model)
    update = request.option("update", SVD_LLM)
    keep = 1.0 - budget.ratio if budget.nominal else None  # the release's --ratio is the fraction removed
    calib = request.calibration(tokenizer)
    model, res = compress_svd_llm(model, calib, budget.params, update=update, keep=keep, device=request.device)
    removed = dense - count_params(model)
    if not budget.nominal:
        check_budget(removed, budget.params, dense, "svd-llm")
    mark(model, res.ranks)
    meta = {
        "param_budget": budget.params,
        "params_removed": removed,
        "param_ratio": round(res.ratio, 8),  # fraction of each factored matrix's weights kept
        "update": update,
        "ranks": res.ranks,
        "truncated_energy": {p: round(v, 6) for p, v in res.loss_share.items()},
        "whitening_damping": res.damped,
    }
    return model, meta


# Where its release's values were read (Method.release).
RELEASE = "AIoT-MLSys-Lab/SVD-LLM SVDLLM.py"

SVD_LLM = register(
    Method(
        name="svd-llm",
        summary="whitened truncated SVD of every decoder projection at one parameter ratio (needs calibration)",
        run=run,
        needs_calibration=True,
        budget=True,
        nominal="every decoder projection (m x n) factored at rank int(m n (1 - r) / (m + n)), about r of its weights"
        " removed (the release's --ratio)",
        checkpoint="low-rank",
        offload=True,  # the model and its calibration activations wait on the host; one block visits the device
        stochastic=False,
        options=(
            Option(
                "update",
                str,
                "none",
                "none: truncation-aware whitening + SVD only (the release's pipeline for ratios <= 0.3); "
                "closed-form: then refit each U by least squares on the inputs of the compressed earlier blocks "
                "(paper v1's layer-wise closed-form update, recommended above 0.3)",
                choices=("none", "closed-form"),
            ),
        ),
        release=(
            Release(
                "budget",
                "ratio: --ratio removed from every projection (ratio = 1 - --ratio; rank int(m n ratio / (m + n)))",
                RELEASE,
                EQUAL_SIZE + "; paper.yaml: ratio (paper Table 5)",
            ),
            Release(
                "update",
                "none with --step 1 (whitening only); closed-form with --step 2",
                RELEASE,
            ),
            Release(
                "calib_dataset",
                "wikitext2 (--dataset; get_calib_train_data)",
                RELEASE,
                OFFLINE_SPLIT,
            ),
            Release("calib_samples", "256 (--whitening_nsamples)", RELEASE, CPU_WINDOWS),
            Release("calib_seq_len", "2048 (--model_seq_len)", RELEASE, CPU_WINDOWS),
        ),
    ),
)
