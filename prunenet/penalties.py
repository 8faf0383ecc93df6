"""Distances between singular-value spectra: the PruneNet penalty of one layer.

The KS statistic is computed in torch, batched over layers, so a whole model is scored
without leaving the device. It is invariant to any monotone map of both samples, so it
is the same on singular values σ and on Gram eigenvalues σ² (see :func:`spectra`).
The Anderson–Darling k-sample variant (paper ablation T18) delegates to SciPy.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .choices import PENALTIES, SPECTRA
from .errors import PruneNetError


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Two-sample Kolmogorov–Smirnov statistic sup|F_a − F_b|, batched over leading dims.

    ``a``: (..., m), ``b``: (..., k). Equals ``scipy.stats.ks_2samp(a, b).statistic`` (ties included).
    """
    a = torch.sort(a, dim=-1).values
    b = torch.sort(b, dim=-1).values
    pooled = torch.cat([a, b], dim=-1).contiguous()
    cdf_a = torch.searchsorted(a.contiguous(), pooled, right=True).to(torch.float64) / a.shape[-1]
    cdf_b = torch.searchsorted(b.contiguous(), pooled, right=True).to(torch.float64) / b.shape[-1]
    return (cdf_a - cdf_b).abs().amax(dim=-1)


def ad_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Anderson–Darling k-sample statistic (SciPy's standardized, midrank form), per leading index.

    SciPy is imported here, not with the module: the default KS penalty is plain torch, so training
    runs where SciPy is not installed (a bare GPU image).
    """
    from scipy.stats import anderson_ksamp

    a2 = a.detach().reshape(-1, a.shape[-1]).double().cpu().numpy()
    b2 = b.detach().reshape(-1, b.shape[-1]).double().cpu().numpy()
    with warnings.catch_warnings():  # p-value capping warnings are irrelevant for a penalty
        warnings.simplefilter("ignore")
        stats = [anderson_ksamp([x, y], variant="midrank").statistic for x, y in zip(a2, b2)]
    return torch.tensor(np.asarray(stats), dtype=torch.float64).reshape(a.shape[:-1])


def distance(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if name == "ks":
        return ks_distance(a, b)
    if name == "ad":
        return ad_distance(a, b)
    raise PruneNetError(f"unknown penalty {name!r}: use one of {', '.join(PENALTIES)}")


def spectra(w: torch.Tensor, method: str = "gram") -> torch.Tensor:
    """Spectrum of each matrix in a (…, rows, cols) batch, as an ascending sample for KS.

    ``svd``: singular values (``torch.linalg.svdvals``; the tall orientation is fed, it is ~3× faster).
    ``gram``: eigenvalues of the cols×cols Gram matrix in float64, i.e. σ² — ~4× cheaper than
    svdvals and, since σ ↦ σ² is monotone, gives the identical KS distance. Use ``svd`` for figures.
    """
    if w.shape[-2] < w.shape[-1]:
        w = w.transpose(-2, -1)
    if method == "svd":
        return torch.linalg.svdvals(w.float())
    if method == "gram":
        w = w.double()
        gram = w.transpose(-2, -1) @ w
        return torch.linalg.eigvalsh(gram).clamp_min(0)
    raise PruneNetError(f"unknown spectrum method {method!r}: use one of {', '.join(SPECTRA)}")
