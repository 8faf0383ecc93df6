"""The PruneNet policy learner and the row selectors.

One policy is shared by all layers. Its parameters are ``W_inter`` (n×d) and ``W_proj``
(1×n). Paper Eq. 3 prints ``W' = W_up W_interᵀ`` (n×n), ``W_imp = σ(W_proj W')``, which admits
two readings (option ``eq3``, values in :data:`prunenet.choices.EQ3_READINGS`):

- ``coded`` (default; what the authors' public code computes, ``sigmoid(proj_intermediate(W) @
  row_sparsities)``): ``W_imp = σ(W' W_projᵀ)``, so row i's importance is
  ``σ(Σ_j (W_up W_interᵀ)_{ij} W_proj_j) = σ(W_up[i] · v)`` with ``v = W_interᵀ W_projᵀ`` (d,): each
  row is scored by its own content, with one d-vector shared by all layers.
- ``printed`` (Eq. 3 read literally, ``W_proj`` (1×n) times ``W'`` (n×n)): row j's importance is
  ``σ(Σ_i W_proj_i (W_up W_interᵀ)_{ij}) = σ(W_inter[j] · u)`` with ``u = W_upᵀ W_projᵀ`` (d,), a
  W_proj-weighted sum of the layer's rows: row j is scored by the parameters of *position* j against
  a summary of the whole layer, not by row j's own content.

Both are computed as two matrix–vector products, O(nd) instead of the O(n²d) of forming W', so the
policy is cheap even for LLaMA-7B-sized FFNs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .choices import DEFAULT_WHICH, EQ3_READINGS, INITS, WHICH
from .errors import PruneNetError

SELECTORS = ("policy", "deterministic", "random")


class PolicyNetwork(nn.Module):
    """Row-importance scorer shared by all layers (paper Eq. 3, in the reading ``eq3``; see the module docstring).

    ``bias=True`` adds the bias ``b`` on ``W_inter`` that the authors' public code uses (``nn.Linear``:
    ``W' = W_up W_interᵀ + b``, b added to every row of W'). In the ``coded`` reading it adds the
    scalar ``W_proj · b`` to every logit; in the ``printed`` one it adds ``b_j Σ_i W_proj_i`` to row j's.

    ``init="paper"`` draws W_proj ~ U(±1/√n) (nn.Linear's range): its signs cancel, so every logit starts near 0 and
    the first policy is close to uniform. ``init="official"`` is the authors' ``SparsityPredictor``: W_inter and its
    bias as ``nn.Linear(d, n)`` initialises them (U(±1/√d), drawn in that order), then W_proj ~ U(0, 1)
    (``torch.rand``), whose all-positive weights do not cancel: the first importances spread well away from 0.5.
    """

    def __init__(
        self,
        n: int,
        d: int,
        bias: bool = False,
        generator: torch.Generator | None = None,
        eq3: str = "coded",
        init: str = "paper",
    ):
        super().__init__()
        if eq3 not in EQ3_READINGS:
            raise PruneNetError(f"unknown Eq. 3 reading {eq3!r}: use one of {', '.join(EQ3_READINGS)}")
        if init not in INITS:
            raise PruneNetError(f"unknown policy initialisation {init!r}: use one of {', '.join(INITS)}")
        self.n, self.d, self.eq3 = n, d, eq3
        bound_inter, bound_proj = 1 / math.sqrt(d), 1 / math.sqrt(n)  # nn.Linear's default init ranges
        self.W_inter = nn.Parameter((torch.rand(n, d, generator=generator) * 2 - 1) * bound_inter)
        if init == "official":  # nn.Linear(d, n, bias=True), then torch.rand(n, 1): the authors' order
            self.b_inter = nn.Parameter((torch.rand(n, generator=generator) * 2 - 1) * bound_inter)
            self.W_proj = nn.Parameter(torch.rand(1, n, generator=generator))
            return
        self.W_proj = nn.Parameter((torch.rand(1, n, generator=generator) * 2 - 1) * bound_proj)
        self.b_inter = nn.Parameter((torch.rand(n, generator=generator) * 2 - 1) * bound_inter) if bias else None

    def extra_repr(self) -> str:
        return f"n={self.n}, d={self.d}, bias={self.b_inter is not None}, eq3={self.eq3}"

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid importances of the n rows of ``state`` (n×d, or a batch (L, n, d) of layers)."""
        if tuple(state.shape[-2:]) != (self.n, self.d):
            raise PruneNetError(
                f"policy was trained for {self.n}×{self.d} FFN matrices but the layer has {tuple(state.shape[-2:])}: "
                f"train a policy for this model"
            )
        if self.eq3 == "printed":
            u = self.W_proj @ state.to(self.W_proj.dtype)  # (…, 1, d) = W_proj W_up
            out = (u @ self.W_inter.T).squeeze(-2)  # (…, n): W_inter[j] · u
            if self.b_inter is not None:
                out = out + self.b_inter * self.W_proj.sum()
            return out
        v = (self.W_proj @ self.W_inter).squeeze(0)  # (d,) = W_interᵀ W_projᵀ
        out = state.to(v.dtype) @ v
        if self.b_inter is not None:
            out = out + self.W_proj.squeeze(0) @ self.b_inter
        return out

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Keep-importances W_imp ∈ (0, 1)^n."""
        return torch.sigmoid(self.logits(state))


def check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise PruneNetError(f"pruning ratio {ratio} is outside [0, 1): give e.g. 0.2 for 20 %")


def n_keep(n: int, ratio: float, multiple: int = 1) -> int:
    """Rows kept at pruning ratio ``ratio``: n − round(ratio·n) (1536 at 0.3 → 1075), rounded to the nearest
    ``multiple`` (at least one multiple, at most n) so that matrix kernels see aligned widths (1075 → 1088 at 64)."""
    check_ratio(ratio)
    keep = n - int(round(ratio * n))
    if multiple > 1:
        keep = min(n, max(multiple, int(round(keep / multiple)) * multiple))
    if keep < 1:
        raise PruneNetError(f"ratio {ratio} would remove all {n} rows: use a smaller ratio")
    return keep


def perturb(importance: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Paper Eq. 4: the reparametrised Bernoulli of each importance, σ(logit α + log ε − log(1 − ε)), ε ~ U(0, 1).

    A binary-concrete sample at temperature 1: it is > 0.5 with probability α, and differentiable in α,
    so the draw's randomness sits in ε and the policy's gradient flows through the perturbed values.
    """
    alpha = importance.clamp(1e-6, 1 - 1e-6)
    u = torch.rand(alpha.shape, generator=generator, device="cpu").to(alpha.device).clamp(1e-6, 1 - 1e-6)
    return torch.sigmoid(torch.logit(alpha) + torch.log(u) - torch.log1p(-u))


def sample_rows(
    weights: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample k distinct rows ∝ ``weights``, without replacement; return (sorted indices, log-probability).

    ``argtopk(log w + Gumbel noise)`` is an exact draw of the sequential multinomial without
    replacement (the Gumbel-top-k trick), and its log-probability is the Plackett–Luce likelihood
    Σ_t [log w_{i_t} − log Σ_{j∉{i_<t}} w_j] of the draw order, which REINFORCE differentiates.
    """
    log_p = torch.log(weights.clamp_min(1e-12))
    u = torch.rand(log_p.shape, generator=generator, device="cpu").to(log_p.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7)))
    order = torch.topk(log_p.detach() + gumbel, k).indices  # draw order
    chosen = log_p[order]
    # log Σ over rows not yet drawn at step t = logsumexp(all) minus the drawn prefix.
    total = torch.logsumexp(log_p, 0)
    prefix = torch.cat([chosen.new_full((1,), -math.inf), torch.logcumsumexp(chosen, 0)[:-1]])
    remaining = total + torch.log1p(-torch.exp(prefix - total).clamp(max=1 - 1e-12))
    log_prob = (chosen - remaining).sum()
    return torch.sort(order).values, log_prob


def draw_rows(
    importance: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's action (paper Eq. 4, Algorithm 1): k rows drawn without replacement from the
    multinomial over the normalised *perturbed* importances; (sorted indices, log-probability).

    The log-probability is that of the draw given the perturbation ε; as ε does not depend on the
    policy, its gradient (through the reparametrised importances) is an unbiased REINFORCE gradient.
    """
    return sample_rows(perturb(importance, generator), k, generator)


def select_rows(
    selector: str, n: int, k: int, importance: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sorted indices of the k rows to keep, for one of the selectors.

    ``policy``: a stochastic draw from the trained policy (PruneNet); ``deterministic``: the
    top-k importances (ablation); ``random``: uniform rows, no policy (ablation).
    """
    if selector == "random":
        return torch.sort(torch.randperm(n, generator=generator)[:k]).values
    if importance is None:
        raise PruneNetError(f"selector {selector!r} needs a trained policy: pass --policy")
    if selector == "policy":
        return draw_rows(importance, k, generator)[0]
    if selector == "deterministic":
        return torch.sort(torch.topk(importance, k).indices).values
    raise PruneNetError(f"unknown selector {selector!r}: use one of {', '.join(SELECTORS)}")


def save_policy(
    path, meta_path, best: dict[str, torch.Tensor], last: dict[str, torch.Tensor], meta: dict, eq3: str | None = None
) -> None:
    """One safetensors file with the best and last policies; ``meta`` goes in its header and in ``meta_path`` (JSON).

    The Eq. 3 reading the tensors belong to is recorded as ``meta["eq3"]`` so that :func:`load_policy`
    rebuilds the same network: ``eq3`` if given, else ``meta["config"]["eq3"]``, else ``coded``.
    """
    import json

    from safetensors.torch import save_file

    from .artifacts import atomic_file, write_json

    eq3 = eq3 or meta.get("eq3") or meta.get("config", {}).get("eq3") or "coded"
    if eq3 not in EQ3_READINGS:
        raise PruneNetError(f"unknown Eq. 3 reading {eq3!r}: use one of {', '.join(EQ3_READINGS)}")
    meta = {**meta, "eq3": eq3}
    tensors = {f"best.{k}": v.detach().cpu().clone() for k, v in best.items()}
    tensors |= {f"last.{k}": v.detach().cpu().clone() for k, v in last.items()}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"prunenet": json.dumps(meta, default=float)})
    write_json(meta_path, meta)


@dataclass(frozen=True)
class PolicyHeader:
    """What a policy file's header records (:func:`save_policy`'s ``meta``), read by :func:`read_policy_header` for
    both the early check (:func:`check_policy_state`) and the loader (:func:`load_policy`)."""

    path: str
    meta: dict

    @property
    def config(self) -> dict:
        """The training config (``TrainConfig`` as a dict); empty for hand-written files."""
        return self.meta.get("config", {})

    @property
    def state(self) -> str:
        """The state the policy was trained on; files without one are FFN (``up``) policies."""
        return self.config.get("state", "up")

    @property
    def eq3(self) -> str:
        """The Eq. 3 reading of the tensors; files written before it was recorded are ``coded``."""
        return self.meta.get("eq3", "coded")


def _corrupt(path, exc: Exception) -> PruneNetError:
    return PruneNetError(f"corrupt policy file {path} ({type(exc).__name__}): delete it and retrain")


def read_policy_header(path) -> PolicyHeader:
    """Parse the header of the policy file ``path``; a missing or corrupt file is refused here."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    if not Path(path).is_file():
        raise PruneNetError(f"policy file {path} not found: run `prunenet train` first")
    try:
        with safe_open(str(path), framework="pt") as f:
            return PolicyHeader(str(path), json.loads((f.metadata() or {})["prunenet"]))
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def check_policy_state(path, method: str, states: tuple[str, ...]) -> None:
    """Refuse, from the file's header alone (before any model loads), a policy trained on a state ``method`` does
    not prune: an FFN policy given to ``prunenet-attention`` or an attention (``qkv``) one to the row selectors."""
    if not path:
        return
    try:
        state = read_policy_header(path).state
    except Exception:
        return  # load_policy names the missing or corrupt file
    if state not in states:
        fix = "--method prunenet-attention" if state == "qkv" else "--method prunenet (or train with --state qkv)"
        raise PruneNetError(f"policy {path} was trained on state {state!r}, which {method} does not prune: use {fix}")


def load_policy(path, which: str = DEFAULT_WHICH) -> tuple[PolicyNetwork, dict]:
    """Load a policy saved by :func:`save_policy` (``which`` = best | last), in the Eq. 3 reading its header records."""
    from safetensors import safe_open

    if which not in WHICH:
        raise PruneNetError(f"unknown policy checkpoint {which!r}: use one of {', '.join(WHICH)}")
    header = read_policy_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k.split(".", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith(which + ".")}
        eq3 = header.eq3
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    if eq3 not in EQ3_READINGS:
        raise PruneNetError(
            f"policy file {path} records an unknown Eq. 3 reading {eq3!r} (known: {', '.join(EQ3_READINGS)}): "
            f"retrain it with this version"
        )
    try:
        n, d = tensors["W_inter"].shape
        policy = PolicyNetwork(n, d, bias="b_inter" in tensors, eq3=eq3)
        policy.load_state_dict(tensors)
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    return policy.eval(), header.meta
