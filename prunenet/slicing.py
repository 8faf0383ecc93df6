"""Physical FFN slicing: keep rows S of up/gate (+bias) and columns S of down.

The sliced FFN computes exactly what the dense FFN computes with the dropped neurons
masked to zero, because every FFN activation (ReLU, GELU, SiLU·gate) maps 0 pre-activations
of a dropped neuron to a contribution that the down projection no longer reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .arch import get_adapter
from .checkpoints import per_layer_shapes
from .errors import PruneNetError
from .policy import PolicyNetwork, n_keep, select_rows
from .ratios import RatioSpec
from .surgery import slice_linear


@torch.no_grad()
def plan_rows(
    model: nn.Module,
    selector: str,
    ratio: RatioSpec | float | Sequence[float] | str,
    policy: PolicyNetwork | None = None,
    state: str = "up",
    seed: int = 0,
    multiple: int = 1,
) -> list[torch.Tensor]:
    """Rows to keep in every layer for a selector at a (uniform or per-layer) ratio, the count of each layer
    rounded to ``multiple`` (:func:`prunenet.policy.n_keep`). ``ratio``: a :class:`~prunenet.ratios.RatioSpec`
    or what :meth:`RatioSpec.of` reads (a number, a per-layer list, CLI text).

    A policy trained at one ratio is applied at any other ("you only prune once", T6):
    its importances do not depend on the ratio; only k does.
    """
    adapter = get_adapter(model)
    layers = adapter.layers()
    ratios = RatioSpec.of(ratio).per_layer(len(layers))
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for layer, r in zip(layers, ratios):
        mat = adapter.state_matrix(layer, state).detach().float()
        n = mat.shape[0]
        importance = policy.to(mat.device)(mat) if policy is not None else None
        rows.append(select_rows(selector, n, n_keep(n, r, multiple), importance, gen).to(mat.device))
    return rows


@torch.no_grad()
def prune_ffn(model: nn.Module, rows: list[torch.Tensor]) -> list[int]:
    """Slice every layer's FFN to ``rows[l]`` in place; update the config; return the new sizes.

    The widths are recorded in the config by the format that owns them
    (:mod:`prunenet.checkpoints.per_layer_shapes`): uniform widths give a plain HF checkpoint.
    """
    adapter = get_adapter(model)
    layers = adapter.layers()
    if len(rows) != len(layers):
        raise PruneNetError(f"got row sets for {len(rows)} layers but the model has {len(layers)}")
    sizes = []
    for layer, idx in zip(layers, rows):
        up, gate, down = adapter.ffn(layer)
        idx = torch.as_tensor(idx, dtype=torch.long)
        if idx.numel() == 0 or int(idx.max()) >= up.out_features or idx.unique().numel() != idx.numel():
            raise PruneNetError(f"invalid row set for a layer with {up.out_features} neurons")
        adapter.set_ffn(
            layer,
            slice_linear(up, idx, 0),
            slice_linear(gate, idx, 0) if gate is not None else None,
            slice_linear(down, idx, 1),
        )
        sizes.append(int(idx.numel()))
    per_layer_shapes.mark(model, sizes)
    return sizes
