"""PruneNet's policy on self-attention (paper Table 20): whole KV groups dropped, no calibration data.

The paper reports attention pruning for LLaMA-2-7B without saying what was pruned; this module's choices:

* **Unit**: one KV group, key/value head ``g`` with the ``G`` query heads that read it (their q/k/v rows and o
  columns, :mod:`prunenet.structured.groups`), as LLM-Pruner and LLM Surgeon remove. Smaller units would not make a
  loadable model: HF attention keeps one query-group size per layer (so query heads alone cannot go unevenly),
  and one ``head_dim`` for q, k and v of every layer, with RoPE frequencies tied to it (so head dimensions cannot).
* **State** (option ``state: qkv``): a layer's input projections stacked group by group, ``[q rows of the group's
  heads; k rows; v rows]``: ``kv_heads · (G + 2) · head_dim`` rows × hidden. The shared policy (Eq. 3, the same
  network as the FFN policy) scores every row; a group's keep-importance is the mean of its rows'.
* **Budget**: ratio ``r`` removes ``round(r · L · kv_heads)`` of the model's groups (every group has the same
  parameters, so attention loses that fraction of its parameters), at most ``kv_heads − 1`` per layer.
  SmolLM2 has 3 KV groups per layer, so a uniform per-layer ratio could not express 10–30 %: the policy also
  decides *where* groups go, and the draw is over the whole model.
* **Action** (:func:`draw_groups`): each layer first keeps one group drawn from its own perturbed importances
  (Eq. 4), so none is emptied; the remaining keeps are drawn without replacement from every layer's remaining
  groups together (Gumbel top-k). Its log-probability is the product of both stages' Plackett–Luce terms.
* **Penalty**: per layer, the KS distance between the singular-value ECDFs of the state and of its kept groups'
  rows (0 where a layer keeps every group). A draw is one action for the whole model, so REINFORCE weights its
  log-probability by the episode's discounted penalty ``Σ_l γ^l D_l`` (``objective: paper``; the FFN trainer's
  per-layer returns need per-layer actions).
* **Checkpoint**: the per-layer KV head counts in ``config.json`` (``prunenet_kv_heads``,
  :mod:`prunenet.checkpoints.per_layer_shapes`), read by :func:`prunenet.models.load_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import PruneNetError
from .penalties import distance, spectra
from .policy import PolicyNetwork, check_ratio, perturb, sample_rows
from .training import TrainConfig, TrainResult, mean_over_draws, run_episodes

SELECTORS = ("policy", "random")


def group_rows(model: nn.Module, layer: nn.Module) -> tuple[list[nn.Linear], list[torch.Tensor]]:
    """(q, k, v) of ``layer`` and, per KV group, the rows of each that belong to it (``[groups, width]`` each)."""
    from .structured.groups import attention_members

    q, k, v, _ = attention_members(model, layer)
    return [q.linear, k.linear, v.linear], [q.index, k.index, v.index]


def layer_state(model: nn.Module, layer: nn.Module) -> torch.Tensor:
    """One layer's state (``(n, d)`` float32, rows group by group)."""
    linears, index = group_rows(model, layer)
    blocks = [torch.cat([lin.weight[idx[g]] for lin, idx in zip(linears, index)]) for g in range(len(index[0]))]
    return torch.cat(blocks).detach().float()


def group_states(model: nn.Module) -> tuple[torch.Tensor, int]:
    """Every layer's state (``(L, n, d)`` float32, rows group by group) and the KV groups per layer.

    Written layer by layer into one tensor: beside the model, the states and one layer's copy (not a list of every
    layer's and their stack: LLaMA-2-7B, 6.4 GB each in float32)."""
    from .arch import get_adapter

    layers = list(get_adapter(model).layers())
    fix = "train the attention policy on the dense model"
    groups = kv_groups(model, layers, fix)
    out = None
    for i, layer in enumerate(layers):
        mat = layer_state(model, layer)
        if out is None:
            out = torch.empty((len(layers), *mat.shape), dtype=mat.dtype, device=mat.device)
        if mat.shape != out.shape[1:]:
            raise PruneNetError(f"layers have different attention shapes: {fix}")
        out[i] = mat
        del mat  # the next layer's copy is made without this one
    return out, groups


def kv_groups(model: nn.Module, layers: list[nn.Module], fix: str) -> int:
    """The KV groups every layer has (one count for all, else a PruneNetError that names ``fix``)."""
    counts = {group_rows(model, layer)[1][0].shape[0] for layer in layers}
    if len(counts) != 1:
        raise PruneNetError(f"layers have different attention shapes: {fix}")
    return counts.pop()


def group_importance(policy: PolicyNetwork, states: torch.Tensor, groups: int) -> torch.Tensor:
    """``(L, groups)`` keep-importances: the mean of each group's row importances (Eq. 3)."""
    imp = policy(states)
    return imp.view(*imp.shape[:-1], groups, -1).mean(-1)


def kept_total(layers: int, groups: int, ratio: float) -> int:
    """Groups the model keeps at ``ratio``: all but ``round(ratio · layers · groups)``, at least one per layer."""
    check_ratio(ratio)
    total = layers * groups - int(round(ratio * layers * groups))
    if total < layers:
        raise PruneNetError(
            f"ratio {ratio} would leave fewer than one KV group per layer ({total} of {layers * groups}): "
            f"use a ratio of at most {1 - 1 / groups:.2f}"
        )
    return total


def draw_groups(
    weights: torch.Tensor, total: int, generator: torch.Generator | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Keep ``total`` groups of ``weights`` (``(L, g)``, > 0): one per layer, then the rest over all layers.

    Returns each layer's kept groups (sorted) and the draw's log-probability: stage 1's per-layer categorical
    terms plus stage 2's Plackett–Luce likelihood over the remaining groups (:func:`prunenet.policy.sample_rows`).
    """
    L, g = weights.shape
    log_w = torch.log(weights.clamp_min(1e-12))
    u = torch.rand((L, g), generator=generator, device="cpu").to(log_w.device)
    first = torch.argmax(log_w.detach() - torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7))), dim=1)
    log_prob = (log_w.gather(1, first[:, None]).squeeze(1) - torch.logsumexp(log_w, 1)).sum()
    rest = torch.ones((L, g), dtype=torch.bool, device=log_w.device)
    rest[torch.arange(L), first] = False
    kept = [[int(f)] for f in first]
    if total > L:
        pool = rest.flatten().nonzero().squeeze(1)
        chosen, lp = sample_rows(weights.flatten()[pool], total - L, generator)
        log_prob = log_prob + lp
        for flat in pool[chosen].tolist():
            kept[flat // g].append(flat % g)
    return [torch.tensor(sorted(k)) for k in kept], log_prob


def select_groups(
    selector: str, importance: torch.Tensor | None, shape: tuple[int, int], total: int, generator=None
) -> list[torch.Tensor]:
    """Each layer's kept groups: a draw from the policy's perturbed importances (Eq. 4) or uniform (``random``)."""
    if selector == "random":
        return draw_groups(torch.ones(shape), total, generator)[0]
    if selector != "policy":
        raise PruneNetError(f"unknown selector {selector!r}: use one of {', '.join(SELECTORS)}")
    if importance is None:
        raise PruneNetError("selector 'policy' needs a trained attention policy: pass --policy")
    return draw_groups(perturb(importance, generator), total, generator)[0]


def group_penalties(
    states: torch.Tensor, groups: int, kept: list[torch.Tensor], penalty: str, spectrum: str, dense: torch.Tensor
) -> torch.Tensor:
    """``(L,)`` penalties D_l: distance between the spectra of each state and of its kept groups' rows.

    Layers keeping the same number of groups are batched (their kept matrices share a shape).
    """
    L, n, _ = states.shape
    rows = states.view(L, groups, n // groups, -1)
    out = torch.zeros(L, dtype=torch.float32)
    for count in sorted({len(k) for k in kept}):
        ls = [l for l in range(L) if len(kept[l]) == count]
        if count == groups:
            continue
        sub = torch.stack([rows[l, kept[l]].flatten(0, 1) for l in ls])
        out[ls] = distance(penalty, dense[ls], spectra(sub, spectrum)).float()
    return out


def layerwise_spectra(states: torch.Tensor, spectrum: str) -> torch.Tensor:
    """:func:`spectra` of each layer's state in turn: one layer's decomposition workspace at a time, not all of them."""
    return torch.stack([spectra(s, spectrum) for s in states])


def check_config(cfg: TrainConfig) -> None:
    """What the attention trainer does not do, refused in one line before any work."""
    cfg.validate()
    if cfg.objective != "paper":
        raise PruneNetError("the attention policy trains the paper objective only: use --objective paper")


@dataclass
class GroupTask:
    """KV groups: one draw over the whole model (:func:`draw_groups`), so REINFORCE weights its log-probability by
    the episode's discounted penalty ``Σ_l γ^l D_l`` (module docstring)."""

    states: torch.Tensor  # (L, n, d), rows group by group
    groups: int
    cfg: TrainConfig
    label: str = "attention policy"

    def __post_init__(self) -> None:
        L, n, d = self.states.shape
        self.shape, self.device = (n, d), self.states.device
        self.total = kept_total(L, self.groups, self.cfg.ratio)
        self.dense = layerwise_spectra(self.states, self.cfg.spectrum)
        self.discounts = self.cfg.gamma ** torch.arange(L, dtype=torch.float32)

    def importance(self, policy: PolicyNetwork) -> torch.Tensor:
        return group_importance(policy, self.states, self.groups)

    def draw(self, importance: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        kept, log_prob = draw_groups(perturb(importance, generator), self.total, generator)
        cfg = self.cfg
        return log_prob, group_penalties(self.states, self.groups, kept, cfg.penalty, cfg.spectrum, self.dense)

    def returns(self, penalties: torch.Tensor) -> torch.Tensor:
        return (penalties * self.discounts).sum(1)

    def score(self, selector: str, policy: PolicyNetwork | None, samples: int, seed: int) -> float:
        cfg = self.cfg
        return mean_group_penalty(
            self.states, self.groups, selector, cfg.ratio, policy, samples, cfg.penalty, cfg.spectrum, seed
        )


def train_attention(
    states: torch.Tensor, groups: int, cfg: TrainConfig, progress: bool = True, on_episode: Callable | None = None
) -> TrainResult:
    """REINFORCE on whole-model group draws (module docstring); best/last policies as the FFN trainer keeps them."""
    check_config(cfg)
    return run_episodes(GroupTask(states, groups, cfg), cfg, progress, on_episode)


@torch.no_grad()
def mean_group_penalty(
    states: torch.Tensor,
    groups: int,
    selector: str,
    ratio: float,
    policy: PolicyNetwork | None = None,
    samples: int = 20,
    penalty: str = "ks",
    spectrum: str = "svd",
    seed: int = 0,
) -> float:
    """Mean over ``samples`` draws of the layer-averaged penalty of a selector (trained policy vs random groups)."""
    dense = layerwise_spectra(states, spectrum)
    importance = group_importance(policy, states, groups) if policy is not None else None
    total = kept_total(states.shape[0], groups, ratio)

    def draw(gen: torch.Generator) -> torch.Tensor:
        kept = select_groups(selector, importance, (states.shape[0], groups), total, gen)
        return group_penalties(states, groups, kept, penalty, spectrum, dense)

    return mean_over_draws(draw, samples, seed)


@torch.no_grad()
def prune_attention(
    model: nn.Module, policy: PolicyNetwork | None, ratio: float, seed: int = 0, selector: str = "policy"
) -> dict:
    """Drop the KV groups a draw of ``policy`` removes (``selector`` random: uniform groups) from every layer."""
    from .arch import get_adapter
    from .checkpoints.per_layer_shapes import mark_heads
    from .surgery import slice_attention

    layers = list(get_adapter(model).layers())
    groups = kv_groups(model, layers, "prune the dense model")
    importance = None  # layer by layer: one layer's state beside the model, not every layer's
    if policy is not None:
        importance = torch.stack([group_importance(policy, layer_state(model, layer), groups) for layer in layers])
    gen = torch.Generator().manual_seed(seed)
    kept = select_groups(selector, importance, (len(layers), groups), kept_total(len(layers), groups, ratio), gen)
    heads = [slice_attention(model, layer, k) for layer, k in zip(layers, kept)]
    mark_heads(model, heads)
    return {
        "kv_heads": heads,
        "removed_kv_groups": {i: sorted(set(range(groups)) - set(k.tolist())) for i, k in enumerate(kept)},
    }
