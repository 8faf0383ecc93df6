"""Low-rank compression of decoder projections: SVD-LLM (whitened SVD) and ASVD (activation-aware SVD + STRS).

Modules by step: :mod:`.layers` (the factored linear and which linears are factored), :mod:`.activations`
(calibration statistics by forward hooks, block by block), :mod:`.factor` (scaled truncated SVD and the
closed-form update), :mod:`.budget` (ranks from parameter ratios; the uniform ratio for a budget),
:mod:`.search` (ASVD's sensitivity-based rank search), and the two pipelines :mod:`.svd_llm`, :mod:`.asvd`.
The registry entries are :mod:`prunenet.methods.svd_llm` and :mod:`prunenet.methods.asvd`; the checkpoint
format is :mod:`prunenet.checkpoints.low_rank`.
"""

from .layers import LowRankLinear, decoder_linears

__all__ = ["LowRankLinear", "decoder_linears"]
