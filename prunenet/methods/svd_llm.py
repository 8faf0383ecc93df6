"""SVD-LLM (Wang, Zheng, Wan, Zhang 2024, arXiv 2403.07378) as a method: whitened truncated SVD of every projection.

The algorithm lives in :mod:`prunenet.lowrank.svd_llm`. Every attention and FFN projection of every decoder
block is factored at one uniform parameter ratio, bisected so that the model loses the parameters PruneNet
removes at ``--ratio`` (:func:`prunenet.budget.ffn_rows_budget`); the checkpoint is
:mod:`prunenet.checkpoints.low_rank`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import register
from .base import CPU_WINDOWS, OFFLINE_SPLIT, Method, Option, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: int) -> tuple[nn.Module, dict]:
    from ..checkpoints.low_rank import mark
    from ..lowrank.budget import check_budget
    from ..lowrank.svd_llm import compress_svd_llm
    from ..stats import count_params

    dense = count_params(model)
    update = request.option("update", SVD_LLM)
    model, res = compress_svd_llm(model, request.calibration(tokenizer), budget, update=update)
    removed = dense - count_params(model)
    check_budget(removed, budget, dense, "svd-llm")
    mark(model, res.ranks)
    meta = {
        "param_budget": budget,
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
        checkpoint="low-rank",
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
