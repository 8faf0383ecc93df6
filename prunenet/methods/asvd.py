"""ASVD (Yuan et al. 2023, arXiv 2312.05821) as a method: activation-aware SVD with searched per-matrix ranks.

The algorithm lives in :mod:`prunenet.lowrank.asvd`. The sensitivity-based truncation rank search picks
each projection's parameter ratio from ``ratios`` with the threshold whose total removal is nearest the
parameters PruneNet removes at ``--ratio`` (:func:`prunenet.budget.ffn_rows_budget`), or at ``budget: ratio``
nearest ``r`` of the decoder projections' weights (:func:`nominal_target`); the checkpoint is
:mod:`prunenet.checkpoints.low_rank`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import PruneNetError
from . import register
from .base import CPU_WINDOWS, EQUAL_SIZE, Budget, Method, Option, PruneRequest, Release

if TYPE_CHECKING:
    from torch import nn


SOURCE = "hahnyuan/ASVD4LLM 8630427: asvd.py, sensitivity.py, binary_search.py"


def parse_ratios(text: str) -> list[float]:
    """``"0.1,0.2"`` -> ascending candidate parameter ratios, each in (0, 1)."""
    try:
        ratios = sorted({float(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise PruneNetError(f"asvd ratios must be comma-separated numbers, not {text!r}") from None
    if not ratios or not all(0.0 < r < 1.0 for r in ratios):
        raise PruneNetError(f"asvd ratios must be in (0, 1), got {text!r}")
    return ratios


def _sizes(request: PruneRequest) -> tuple[list[float], float, int, int]:
    """The candidate ratios, α and the sensitivity windows' count and length this request asks for."""
    return (
        parse_ratios(request.option("ratios", ASVD)),
        float(request.option("alpha", ASVD)),
        int(request.option("sens_samples", ASVD)),
        int(request.option("sens_seq_len", ASVD)),
    )


def _metric(request: PruneRequest) -> str:
    return str(request.option("sensitivity", ASVD))


def validate(request: PruneRequest) -> None:
    """Parsable candidate ratios; sensitivity windows inside the calibration windows (before any model loads)."""
    _, _, n, seq = _sizes(request)
    if not (1 <= n <= request.calib_samples and 2 <= seq <= request.calib_seq_len):
        raise PruneNetError(
            f"asvd sensitivity windows ({n} x {seq}) must fit in the calibration windows "
            f"({request.calib_samples} x {request.calib_seq_len}): lower --asvd-sens-samples/--asvd-sens-seq-len"
        )


def prepare(model: nn.Module, tokenizer: Any, request: PruneRequest) -> dict:
    """Activation scales and the sensitivity of every (linear, candidate ratio): all the ratio leaves alone."""
    from ..lowrank.asvd import prepare_asvd

    ratios, alpha, n, seq = _sizes(request)
    calib = request.calibration(tokenizer)
    return prepare_asvd(model, calib, calib[:n, :seq], ratios, alpha=alpha, metric=_metric(request))


def run(model: nn.Module, tokenizer: Any, request: PruneRequest, budget: Budget) -> tuple[nn.Module, dict]:
    from ..checkpoints.low_rank import mark
    from ..lowrank.asvd import compress_asvd
    from ..lowrank.budget import check_budget
    from ..stats import count_params

    ratios, alpha, n, seq = _sizes(request)
    metric = _metric(request)
    state = ASVD.state(model, tokenizer, request)
    dense = count_params(model)
    target = nominal_target(model, budget.ratio) if budget.nominal else budget.params
    model, res = compress_asvd(model, state, target, ratios)
    removed = dense - count_params(model)
    meta = {
        "param_budget": budget.params,
        "params_removed": removed,
        "alpha": alpha,
        "candidate_ratios": ratios,
        "ranks": res.ranks,
        "param_ratios": res.ratios,
        "sensitivity_loss": res.sensitivity,
        "sensitivity_dense_loss": res.dense_loss,
        "sensitivity_metric": metric,
        "threshold": res.threshold if math.isfinite(res.threshold) else None,
        "threshold_ppl": math.exp(res.threshold) if metric == "ppl" and math.isfinite(res.threshold) else None,
        "sens_samples": n,
        "sens_seq_len": seq,
        "stage_seconds": res.seconds,
    }
    if budget.nominal:
        meta["param_target"] = target
    check_budget(removed, target, dense, "asvd", meta=meta)
    mark(model, res.ranks)
    return model, meta


def nominal_target(model: nn.Module, ratio: float) -> int:
    """The removal ``budget: ratio`` asks of the rank search: ``r`` of the decoder projections' weights."""
    from ..lowrank.budget import nominal_removal
    from ..lowrank.layers import decoder_linears

    return nominal_removal([(m.out_features, m.in_features) for m in decoder_linears(model).values()], ratio)


ASVD = register(
    Method(
        name="asvd",
        summary="activation-aware SVD, per-matrix ranks from a sensitivity search (needs calibration)",
        run=run,
        prepare=prepare,
        validate=validate,
        needs_calibration=True,
        budget=True,
        nominal="the rank search's removal nearest r of the decoder projections' weights (the release's "
        "--param_ratio_target is 1 - r; its search also admits lm_head)",
        checkpoint="low-rank",
        stochastic=False,
        options=(
            Option("alpha", float, 0.5, "exponent of the activation scaling S_ii = mean|x_i|^alpha (paper: 0.5)"),
            Option(
                "ratios",
                str,
                "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                "candidate parameter ratios (fraction of a matrix's weights kept) of the rank search (paper's list)",
            ),
            Option(
                "sensitivity",
                str,
                "stable_rank",
                "rank-search metric: stable_rank (the release's weight-only score: one allocation for every "
                "calibration draw) | ppl (calibration loss per candidate, the release's default; paper.yaml)",
                ("stable_rank", "ppl"),
            ),
            Option("sens_samples", int, 1, "ppl: calibration windows the sensitivities are measured on (first ones)"),
            Option("sens_seq_len", int, 16, "ppl: tokens of each sensitivity window (its first ones)"),
        ),
        release=(
            Release(
                "budget",
                "ratio: --param_ratio_target, the kept share of every nn.Linear's weights (lm_head included) that "
                "the search stays under",
                SOURCE,
                EQUAL_SIZE + "; paper.yaml: ratio (paper Table 5)",
            ),
            Release(
                "sensitivity",
                "ppl (--sensitivity_metric default; its other choice: stable_rank)",
                SOURCE,
                "ppl on the windows a CPU affords picks a different rank for many matrices from one calibration "
                "draw to the next (benchmarks/asvd_agreement.py, docs/methods.md 'ASVD'); paper.yaml: ppl",
            ),
            Release(
                "ratios",
                "ppl: 0.4,0.5,...,0.9; stable_rank: 0.1,0.2,...,0.9 (sensitivity.py param_ratio_candidates)",
                SOURCE,
                "the paper's list 0.1-0.9 for both metrics",
            ),
            Release("alpha", "0.5 (--alpha)", SOURCE),
            Release(
                "sens_samples",
                "every calibration window (calib_sensitivity_ppl evaluates the whole calibration set)",
                SOURCE,
                "ppl only; " + CPU_WINDOWS,
            ),
            Release("sens_seq_len", "2048 (the calibration windows')", SOURCE, "ppl only; " + CPU_WINDOWS),
            Release("calib_samples", "32 (--n_calib_samples)", SOURCE),
            Release("calib_seq_len", "2048 (datautils.py get_calib_data seqlen)", SOURCE, CPU_WINDOWS),
        ),
    ),
)
