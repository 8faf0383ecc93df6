"""Scaled truncated SVD: SVD-LLM's whitening, ASVD's activation scaling, and SVD-LLM's closed-form update.

Both methods truncate the SVD of ``W·S`` for an invertible ``S`` built from the calibration inputs ``X`` of
the linear, then undo the scaling on the right factor:

    W·S = U Σ Vᵀ,     W' = U_k Σ_k V_kᵀ S⁻¹,

stored as two matrices with ``Σ_k^{1/2}`` on each side (SVD-LLM: ``W'_u = U_k [Σ_k]^{1/2}``,
``W'_v = [Σ_k]^{1/2} V_kᵀ S⁻¹``; ASVD's release fuses ``√Σ`` into both factors the same way):

    U' = U_k Σ_k^{1/2}   (out × k),      V' = Σ_k^{1/2} V_kᵀ S⁻¹   (k × in).

* **SVD-LLM** (Wang et al. 2024, "truncation-aware data whitening" and its theorem): ``S`` is the
  Cholesky factor of ``X Xᵀ`` (lower triangular, ``S Sᵀ = X Xᵀ``). Then ``S⁻¹X`` is orthonormal and the
  compression loss is exactly the truncated spectrum,

      L = ‖(W − W') X‖_F² = ‖(W S − U_k Σ_k V_kᵀ) S⁻¹ X‖_F² = Σ_{i>k} σ_i²,

  so dropping the smallest singular values is the loss-optimal rank-``k`` choice.
* **ASVD** (Yuan et al. 2023, activation-aware SVD): ``S = diag(mean_j |x_ij|)^α`` (``α = 0.5``), which folds the
  activation outliers into the weight before truncating; ``α = 0`` is the plain truncated SVD of ``W``
  (Eckart–Young).

Everything is computed in float64 on the weight's device; the factors are returned in the weight's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import PruneNetError


@dataclass
class Factors:
    """The two stored matrices of a truncation (``u``: out × k, ``v``: k × in) and the full spectrum of ``W·S``."""

    u: torch.Tensor
    v: torch.Tensor
    sigma: torch.Tensor  # every singular value of W·S, descending (float64)

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    def prefix(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The factors of rank ``k ≤ rank``: the √Σ split is per component, so truncation is a slice."""
        return self.u[:, :k], self.v[:k]

    def tail_energy(self, k: int) -> float:
        """``Σ_{i>k} σ_i²``: SVD-LLM's compression loss at rank ``k`` (the whitening theorem)."""
        return float((self.sigma[k:] ** 2).sum())


def cholesky_whitening(gram: torch.Tensor, max_tries: int = 16) -> tuple[torch.Tensor, float]:
    """Lower-triangular ``S`` with ``S Sᵀ = X Xᵀ + λI`` and the damping ``λ`` used (0 when ``X Xᵀ`` is PD).

    The Gram of real activations can be singular (fewer tokens than channels, dead channels) or lose
    definiteness to rounding. Damping: ``λ = 0`` first, then ``λ = 10^j · 1e-12 · mean(diag)`` for
    ``j = 0, 1, …`` until Cholesky succeeds, i.e. within a factor 10 of the smallest such damping on that
    grid (the authors' release adds ``−λ_min + 1e-6`` after an eigen-decomposition; this damping is
    relative to the Gram's scale and only as large as needed). Rows ``S⁻¹X`` stay orthonormal for the
    damped Gram, so the theorem holds for ``X Xᵀ + λI``.
    """
    g = gram.double()
    scale = float(g.diagonal().mean()) or 1.0
    eye = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
    damping = 0.0
    for j in range(max_tries + 1):
        s, info = torch.linalg.cholesky_ex(g + damping * eye if damping else g)
        # cuSOLVER can report success on an exactly singular matrix (a dead channel's zero row) and return
        # inf/NaN: a factor counts only if it is finite with a positive diagonal
        if int(info) == 0 and bool(torch.isfinite(s).all()) and bool((s.diagonal() > 0).all()):
            return s, damping
        damping = 1e-12 * scale * 10.0**j
    raise PruneNetError(f"cannot whiten a calibration Gram matrix (not positive definite even with damping {damping})")


def _svd(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD on ``a``'s device; where the device solver does not converge (cuSOLVER's Jacobi and its fallback
    can fail on the strongly graded ``W·S`` of a whitened dead channel), LAPACK on the CPU, moved back."""
    try:
        return torch.linalg.svd(a, full_matrices=False)
    except torch.linalg.LinAlgError:
        if a.device.type == "cpu":
            raise
        return tuple(t.to(a.device) for t in torch.linalg.svd(a.cpu(), full_matrices=False))


def _split(u: torch.Tensor, sigma: torch.Tensor, vh: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = sigma[:k].sqrt()
    return u[:, :k] * root, root[:, None] * vh[:k]


def svd_llm_factors(weight: torch.Tensor, whitening: torch.Tensor, k: int) -> Factors:
    """SVD-LLM's rank-``k`` factors of ``weight`` given the Cholesky factor ``whitening`` of its inputs' Gram."""
    w = weight.detach().double()
    s = whitening.to(w.device, torch.float64)
    u, sigma, vh = _svd(w @ s)
    k = min(int(k), sigma.numel())
    # V_kᵀ S⁻¹ without forming S⁻¹: solve Y·S = V_kᵀ (S lower triangular)
    vk = torch.linalg.solve_triangular(s, vh[:k], upper=False, left=False)
    uf, vf = _split(u, sigma, vk, k)
    return Factors(uf.to(weight.dtype), vf.to(weight.dtype), sigma)


def asvd_scale(abs_mean: torch.Tensor, alpha: float, eps: float = 1e-6) -> torch.Tensor:
    """ASVD's diagonal ``S_ii = (mean|x_i|)^α`` ; channels never active are clamped to ``eps`` first."""
    return abs_mean.double().clamp_min(eps) ** float(alpha)


def asvd_factors(weight: torch.Tensor, scale: torch.Tensor, k: int) -> Factors:
    """ASVD's rank-``k`` factors: truncated SVD of ``W·diag(scale)``, the scaling undone on ``V``."""
    w = weight.detach().double()
    s = scale.to(w.device, torch.float64)
    u, sigma, vh = _svd(w * s[None, :])
    k = min(int(k), sigma.numel())
    uf, vf = _split(u, sigma, vh[:k] / s[None, :], k)
    return Factors(uf.to(weight.dtype), vf.to(weight.dtype), sigma)


def closed_form_u(weight: torch.Tensor, v: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """SVD-LLM's layer-wise closed-form update of ``U'`` with ``V'`` fixed (arXiv v1 of the paper).

    ``U' = argmin_U ‖W X' − U V' X'‖_F² = W G V'ᵀ (V' G V'ᵀ)⁻¹`` with ``G = X' X'ᵀ``, where ``X'`` are the
    inputs this linear receives once every block before it is compressed: the target is what the dense
    weight makes of the shifted inputs (as the authors' release does), the bias cancels on both sides.
    """
    w, vv, g = weight.detach().double(), v.detach().double(), gram.to(weight.device, torch.float64)
    gv = g @ vv.T  # in × k
    lhs = vv @ gv  # k × k, positive definite when G is
    rhs = w @ gv  # out × k
    chol, _ = cholesky_whitening(lhs)
    return torch.cholesky_solve(rhs.T, chol).T.to(weight.dtype)
