"""SliceGPT baseline (Ashkboos et al., ICLR 2024): delete rows/columns after a PCA rotation.

Written from the paper's description, in two steps over any architecture whose adapter
(:mod:`prunenet.arch`) names its norms, the readers and writers of the residual stream and
its embeddings; this package never names a module path itself.

1. *Computational invariance* (:mod:`.fuse`). Every norm that reads the residual stream
   (both per-layer norms and the final norm) becomes a scale-free RMSNorm
   ``x / sqrt(sum(x^2)/d + eps)`` with ``d`` the *original* hidden size. Its scale (the
   adapter's :meth:`~prunenet.arch.ModelAdapter.norm_affine`: ``w`` for RMSNorm/LayerNorm,
   ``1 + w`` for Gemma) and a LayerNorm's shift are folded into the input columns (and
   biases) of the linear layers that read it. For LayerNorm models (OPT, Phi) the residual
   stream is made mean-free first by centering the embedding rows (token and learned
   position embeddings) and the rows of every stream-writing weight (attention and MLP
   output projections) and their biases, so LayerNorm == RMSNorm on the stream (with the
   LayerNorm's own eps).
   Tied embeddings/LM heads are untied (SmolLM2, OPT, Gemma), because the embedding and
   head are rotated differently afterwards. OPT's final LayerNorm shift is folded into a
   new LM-head bias.
2. *Rotation and deletion* (:mod:`.rotate`). Layer by layer, on calibration activations,
   the residual signal at each point the stream is read is decomposed by PCA (eigenvectors
   of ``sum X^T X`` in float64 with ``damping * mean(diag)`` added to the diagonal, in
   descending eigenvalue order, canonical signs; padded tokens masked). Readers of the
   stream get their input columns rotated by ``Q``, writers get their output rows rotated
   by ``Q^T``, and the trailing ``d - d'`` principal directions are deleted,
   ``d' = sliced_dim(d, r)``. Residual connections get a ``d' x d'`` shortcut
   ``Q_l^T Q_{l+1}`` (an ``nn.Linear`` without bias, so parameter and FLOP counts include
   it): two per sequential block (LLaMA/OPT: attention residual and MLP residual), one per
   parallel block (Phi). The token (and position) embeddings are rotated/sliced with the
   first ``Q``; the LM head is rotated and reads ``d'`` dims but still writes the full
   vocabulary.

Each step uses the already-sliced earlier layers, so the PCA sees the activations the
sliced model will really produce (as in the paper). The PCA signal is the residual stream
entering each norm (not the normalized signal).

The sliced model keeps its HF class (``model(input_ids, attention_mask=...)``, ``generate``
and lm-eval work); decoder layers are replaced by :class:`.layers.SlicedSequentialLayer` /
:class:`.layers.SlicedParallelLayer`, which wrap the original attention/MLP submodules.
Checkpoints (:mod:`.checkpoint`, format ``slicegpt``): :func:`save_sliced` /
:func:`load_sliced`, config marker ``prunenet_slicegpt``.

CPU defaults for calibration (:func:`prunenet.data.calibration_blocks`) are 32 blocks x 256
tokens (SliceGPT uses 1024 x 2048 on GPUs).

Supported ``model_type``: llama, mistral, qwen2, qwen3 (pre-RMSNorm, gate/up/down; q/k/v
biases and Qwen3's per-head q/k norms allowed), gemma (``1 + w`` RMSNorm), opt
(pre-LayerNorm; OPT-350m's project_in/out and post-LN are refused), phi (Phi-2 parallel
block). Gemma 2/3 are refused (their post-norms act on block outputs, which no rotation of
the stream commutes with); anything else raises :class:`~prunenet.errors.PruneNetError`
listing the supported types.
"""

from __future__ import annotations

from ..data import calibration_blocks
from .checkpoint import MARKER, build_sliced_structure, is_sliced_config, load_sliced, save_sliced
from .fuse import fuse_norms, slicegpt_model_types
from .layers import RMSN, SlicedParallelLayer, SlicedSequentialLayer
from .rotate import slice_model, sliced_dim

__all__ = [
    "MARKER",
    "RMSN",
    "SlicedParallelLayer",
    "SlicedSequentialLayer",
    "build_sliced_structure",
    "calibration_blocks",
    "fuse_norms",
    "is_sliced_config",
    "load_sliced",
    "save_sliced",
    "slice_model",
    "slicegpt_model_types",
    "sliced_dim",
]
