"""PruneNet's parameter budget at a ratio: the size every same-budget method prunes to.

Why its own module: every baseline (ShortGPT, LaCo, SliceGPT, SVD-LLM, ASVD, LLM-Pruner, LLM Surgeon)
removes the parameters PruneNet removes at the same ratio, so tables compare models of (nearly) the same
size. :func:`prunenet.methods.pipeline.apply` computes it once per prune for a method that declares
:attr:`prunenet.methods.base.Method.budget` and hands it to the method.
"""

from __future__ import annotations

from torch import nn

from .arch import get_adapter


def ffn_rows_budget(model: nn.Module, ratio: float, multiple: int = 1) -> int:
    """Parameters that removing ``round(ratio · n)`` FFN rows of every layer (PruneNet at ``ratio``) deletes,
    with the kept count rounded to ``multiple`` as PruneNet then slices.

    A row is one row of the up (and gate) projection with its bias, and one column of the down projection.
    """
    from .policy import n_keep

    adapter = get_adapter(model)
    total = 0
    for layer in adapter.layers():
        up, gate, down = adapter.ffn(layer)
        per_row = up.in_features + (up.bias is not None) + down.out_features
        if gate is not None:
            per_row += gate.in_features + (gate.bias is not None)
        total += (up.out_features - n_keep(up.out_features, ratio, multiple)) * per_row
    return total
