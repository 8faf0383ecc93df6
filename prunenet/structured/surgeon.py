"""The LLM Surgeon's structured step (van der Ouderaa et al., ICLR 2024, Sec. 3–4): K-FAC curvature, the
optimal-brain-surgeon removal cost of a block of input columns, and the weight update that compensates it.

For a linear ``W`` (out × in) the Fisher of ``vec(W)`` is approximated by one Kronecker product
``F ≈ G ⊗ A`` with ``A = E[a aᵀ]`` (its inputs) and ``G = E[g gᵀ]`` (gradients of the loss w.r.t. its outputs,
the empirical Fisher: labels are the calibration text's next tokens). Removing the columns ``B`` of ``W``
(setting ``W[:, B] = 0`` and letting every other weight of ``W`` move) costs, to second order,

    ΔL_B = ½ tr( [A⁻¹]_BB⁻¹ · W_Bᵀ G W_B ),        ΔW = − W_B [A⁻¹]_BB⁻¹ [A⁻¹]_{B,:}

(OBS with a Kronecker-factored inverse ``F⁻¹ = G⁻¹ ⊗ A⁻¹``: ``G`` cancels from the update; one column:
``ΔL = W_cᵀ G W_c / (2 [A⁻¹]_cc)``). With ``G = I`` and ``A = XXᵀ`` this is the exact least-squares refit of a
linear regression layer (tested). The structures are removed as input columns of the layer that *reads* them:

* an FFN channel = column ``c`` of down (its gate/up rows then feed nothing and go with it);
* an attention KV group = the columns of o that its query heads write (its q/k/v rows go with them).

Damping: ``A`` and ``G`` get ``λ · mean(diag)`` on the diagonal (``λ`` = the request's ``damping``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class KFac:
    """Running ``A = E[a aᵀ]`` and ``G = E[g gᵀ]`` of one linear over calibration tokens (float64)."""

    def __init__(self, linear: nn.Linear):
        self.linear = linear
        self.a = torch.zeros(linear.in_features, linear.in_features, dtype=torch.float64)
        self.g = torch.zeros(linear.out_features, linear.out_features, dtype=torch.float64)
        self.na = self.ng = 0

    def add_input(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1])
        self.a += (x.T @ x).double().cpu()  # one window's sum in the model's dtype, the running sum in float64
        self.na += x.shape[0]

    def add_grad(self, g: torch.Tensor) -> None:
        g = g.detach().reshape(-1, g.shape[-1])
        self.g += (g.T @ g).double().cpu()
        self.ng += g.shape[0]

    def factors(self, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Damped ``(A, G)``."""
        return _damped(self.a / max(self.na, 1), damping), _damped(self.g / max(self.ng, 1), damping)


def _damped(m: torch.Tensor, damping: float) -> torch.Tensor:
    scale = float(m.diagonal().mean()) or 1.0
    return m + damping * scale * torch.eye(m.shape[0], dtype=m.dtype)


def estimate(
    model: nn.Module, linears: Sequence[nn.Linear], blocks: torch.Tensor, activations_on_host: bool = False
) -> list[KFac]:
    """K-FAC factors of ``linears`` from one forward/backward per calibration window (summed token losses, so a
    token's output gradient is its own scale); parameters get no gradients, nothing is changed.

    ``activations_on_host``: what the backward needs of every layer waits on the host
    (:func:`torch.autograd.graph.save_on_cpu`), so the device holds the model and one layer's work, not 32 layers'
    activations (LLaMA-2-7B, 2048 tokens, bf16: ~10 GB). Copies, not recomputation: each layer's forward runs once,
    so the forward hooks count every input once (activation checkpointing would run them twice) and the factors are
    the same."""
    stats = [KFac(lin) for lin in linears]
    handles = []
    for st in stats:
        handles.append(st.linear.register_forward_hook(lambda mod, args, out, st=st: st.add_input(args[0])))
        handles.append(st.linear.register_full_backward_hook(lambda mod, gin, gout, st=st: st.add_grad(gout[0])))
    flags = {p: p.requires_grad for p in model.parameters()}
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        emb = model.get_input_embeddings()
        for ids in blocks:
            ids = ids[None].to(device)
            x = emb(ids).detach().requires_grad_(True)  # a leaf that needs grad: backward reaches every hook
            with saved(activations_on_host, device):
                logits = model(inputs_embeds=x, use_cache=False).logits
                loss = F.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="sum")
            loss.backward()
    finally:
        for h in handles:
            h.remove()
        for p, f in flags.items():
            p.requires_grad_(f)
        model.train(training)
    return stats


def saved(on_host: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """Where a forward's tensors saved for backward wait: on the host (pinned beside a GPU), or where made."""
    if not on_host:
        return contextlib.nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda")


def column_blocks_cost(w: torch.Tensor, a_inv: torch.Tensor, g: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``ΔL_B`` of removing each block of columns alone (``blocks``: ``[n_blocks, width]`` column indices)."""
    w = w.double()
    costs = []
    for b in blocks:
        wb = w[:, b]  # out × |B|
        inv_bb = torch.linalg.inv(a_inv[b][:, b])
        costs.append(0.5 * torch.trace(inv_bb @ (wb.T @ g @ wb)))
    return torch.stack(costs)


def single_column_cost(w: torch.Tensor, a_inv: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``ΔL`` of removing each column alone: ``W_cᵀ G W_c / (2 [A⁻¹]_cc)`` (all columns at once)."""
    w = w.double()
    return 0.5 * ((g @ w) * w).sum(0) / a_inv.diagonal()


def remove_columns(w: torch.Tensor, a_inv: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``W + ΔW`` for removing the columns ``cols`` together (the correlated OBS update); they become 0."""
    if cols.numel() == 0:
        return w.clone()
    wd = w.double()
    inv_bb = torch.linalg.inv(a_inv[cols][:, cols])
    new = wd - wd[:, cols] @ inv_bb @ a_inv[cols]
    new[:, cols] = 0.0
    return new.to(w.dtype)
