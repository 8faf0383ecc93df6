"""The data behind Figure 1: singular values of each checkpoint's FFN state matrices, as CSV.

A separate step from plotting, because it is the one that loads checkpoints: the figure is
redrawn from the CSV alone.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..artifacts import atomic_file


def export_spectra(checkpoints: list[str], out: str, layers: list[int] | None = None, state: str = "up") -> list[Path]:
    """Sorted singular values of the ``state`` matrix of ``layers`` (default first and last) per checkpoint.

    One row per singular value (checkpoint label, layer, sigma); the label is ``dense`` or
    ``<method> r=<ratio>`` from the checkpoint's metadata.
    """
    import numpy as np

    from ..arch import get_adapter
    from ..models import load_model, read_meta
    from ..penalties import spectra

    curves = []
    for path in checkpoints:
        model, _ = load_model(path, dtype="float32")
        adapter = get_adapter(model)
        mats = [adapter.state_matrix(layer, state).detach() for layer in adapter.layers()]
        meta = read_meta(path)
        label = "dense" if not meta.get("method") else f"{meta['method']} r={meta['ratio']}"
        curves.append((label, [spectra(m, "svd").numpy() for m in mats]))
    n_layers = len(curves[0][1])
    layers = [l % n_layers for l in layers] if layers else [0, n_layers - 1]
    rows = [
        {"checkpoint": label, "layer": l, "sigma": float(v)}
        for label, sv in curves
        for l in layers
        for v in np.sort(sv[l])
    ]
    with atomic_file(out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return [Path(out)]
