"""REINFORCE training of the policy (paper Algorithm 1), with no calibration data.

An episode walks all decoder layers: the policy samples the rows to keep, the penalty
D_l is the spectral distance between the layer's dense and pruned state matrix, and the
policy is updated with the discounted future penalties G_l = Σ_{k≥0} γ^k D_{l+k} (Eq. 7 prints
D_{l+k+1}; :func:`discounted_future` says why the layer's own penalty is included).
``objective="official"`` reproduces the authors' public code instead: maximise the reward
γ^l / D_l with no look-ahead. Their loop itself (a step after every layer, ``update="official"``) is
:mod:`prunenet.released`.

The estimator options change the variance of the gradient, not what is optimised: with
``samples`` = M > 1 each episode draws M row sets per layer and averages the REINFORCE
gradient over them, and ``baseline="loo"`` subtracts from each draw's return the mean
return of the other M−1 draws (leave-one-out; Kool et al., 2019), which stays unbiased.
The KS penalty moves by a step of 1/d between draws while its mean is ~0.17, so without a
baseline almost all of the single-sample gradient is noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from .arch import get_adapter
from .choices import BASELINES, EQ3_READINGS, INITS, OBJECTIVES, POLICY_STATES, UPDATES
from .errors import PruneNetError
from .penalties import PENALTIES, distance, spectra
from .policy import PolicyNetwork, draw_rows, n_keep, select_rows


@dataclass
class TrainConfig:
    ratio: float = 0.3
    episodes: int = 20
    gamma: float = 0.99
    lr: float = 5e-4
    penalty: str = "ks"
    state: str = "up"
    objective: str = "paper"
    eq3: str = "coded"  # reading of paper Eq. 3: coded (authors' code, row scored by its content) | printed
    baseline: str = "none"  # none (paper) | running (running mean of G_l per layer) | loo (leave-one-out over draws)
    samples: int = 1  # row sets drawn per layer and episode (paper: 1)
    spectrum: str = "svd"
    seed: int = 0
    init: str = "paper"  # paper: W_proj ~ U(±1/√n), no bias | official: the authors' init (W_proj ~ U(0, 1), bias)
    update: str = "paper"  # paper: a step per episode | official: the authors' loop (prunenet.released)

    def validate(self) -> None:
        n_keep(1000, self.ratio)
        if self.episodes < 1:
            raise PruneNetError(f"episodes must be ≥ 1, got {self.episodes}")
        if not 0.0 <= self.gamma <= 1.0:
            raise PruneNetError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.penalty not in PENALTIES:
            raise PruneNetError(f"unknown penalty {self.penalty!r}: use one of {', '.join(PENALTIES)}")
        if self.objective not in OBJECTIVES:
            raise PruneNetError(f"unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        if self.eq3 not in EQ3_READINGS:
            raise PruneNetError(f"unknown Eq. 3 reading {self.eq3!r}: use one of {', '.join(EQ3_READINGS)}")
        if self.state not in POLICY_STATES:
            raise PruneNetError(f"unknown policy state {self.state!r}: use one of {', '.join(POLICY_STATES)}")
        if self.baseline not in BASELINES:
            raise PruneNetError(f"unknown baseline {self.baseline!r}: use one of {', '.join(BASELINES)}")
        if self.init not in INITS:
            raise PruneNetError(f"unknown policy initialisation {self.init!r}: use one of {', '.join(INITS)}")
        if self.update not in UPDATES:
            raise PruneNetError(f"unknown policy update {self.update!r}: use one of {', '.join(UPDATES)}")
        if self.samples < 1:
            raise PruneNetError(f"samples must be ≥ 1, got {self.samples}")
        if self.baseline == "loo" and self.samples < 2:
            raise PruneNetError(
                "baseline 'loo' needs samples ≥ 2 (it compares each draw with the others): "
                "use --samples 4 (config: policy.samples: 4)"
            )


@dataclass
class TrainResult:
    best: dict[str, torch.Tensor]
    last: dict[str, torch.Tensor]
    history: list[float]  # mean penalty over layers (and draws), per episode
    layer_penalties: list[list[float]]  # per episode, per layer (mean over draws)
    best_episode: int
    seconds: float
    config: dict = field(default_factory=dict)  # the TrainConfig, as a dict

    def network(self, which: str = "best") -> PolicyNetwork:
        """The trained policy ``which`` (best | last), ready to score rows: built by :func:`make_policy` from the
        run's own config, so callers never re-derive its settings."""
        tensors = self.best if which == "best" else self.last
        policy = make_policy(TrainConfig(**self.config), *tensors["W_inter"].shape)
        policy.load_state_dict(tensors)
        return policy


def collect_states(model: nn.Module, state: str = "up") -> torch.Tensor:
    """Stack every layer's state matrix into an (L, n, d) float32 tensor (detached)."""
    adapter = get_adapter(model)
    mats = [adapter.state_matrix(layer, state).detach().float() for layer in adapter.layers()]
    shapes = {tuple(m.shape) for m in mats}
    if len(shapes) != 1:
        raise PruneNetError(f"layers have different FFN shapes {sorted(shapes)}: train the policy on the dense model")
    return torch.stack(mats)


def discounted_future(penalties: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_l = Σ_{k≥0} γ^k D_{l+k} (penalties of this and all later layers).

    Paper Eq. 7 and Algorithm 1 print G_l = Σ_{k≥0} γ^k D_{l+k+1}. That is the reinforcement-learning
    convention in which the reward of the action taken at step t is numbered R_{t+1}; but Algorithm 1
    numbers D_l by the layer whose compression it measures, so read literally G_l would leave out the
    penalty of layer l's own action S_l (and G_L = 0). That reading cannot learn: the draws of different
    layers are independent given the policy, so E[D_{l+k+1} ∇log π(S_l)] = E[D_{l+k+1}] · E[∇log π(S_l)] = 0
    and its expected gradient is exactly zero. With D_{l+k} the expected gradient of Σ_l G_l log π(S_l) is
    Σ_l ∇E[D_l]: the later layers' terms have mean zero for the same reason, so γ changes the estimator's
    variance, not the direction it follows (tests/test_policy.py checks this against an exact expectation). The
    authors' public code (``objective="official"``) also pairs layer l's action with layer l's own
    penalty — reward γ^l / D_l — and adds no later layers.
    """
    out = torch.empty_like(penalties)
    running = penalties.new_zeros(())
    for l in range(penalties.shape[0] - 1, -1, -1):
        running = penalties[l] + gamma * running
        out[l] = running
    return out


def layer_penalties(
    states: torch.Tensor,
    rows: list[torch.Tensor],
    penalty: str = "ks",
    spectrum: str = "svd",
    dense_spectra: torch.Tensor | None = None,
) -> torch.Tensor:
    """Penalty D_l of keeping ``rows[l]`` of each layer's state matrix, batched over layers."""
    if dense_spectra is None:
        dense_spectra = spectra(states, spectrum)
    pruned = torch.stack([s[r] for s, r in zip(states, rows)])
    return distance(penalty, dense_spectra, spectra(pruned, spectrum)).float()


def reinforce_step(
    opt: torch.optim.Optimizer,
    returns: torch.Tensor,
    log_probs: torch.Tensor,
    cfg: TrainConfig,
    running: torch.Tensor | None,
    ep: int,
) -> torch.Tensor | None:
    """One REINFORCE update minimising ``returns`` (first axis: the ``cfg.samples`` draws) weighted by the draws'
    ``log_probs``, less ``cfg.baseline``; returns the running mean of the returns (``baseline: running``)."""
    if cfg.baseline == "loo":
        advantage = returns - (returns.sum(0, keepdim=True) - returns) / (cfg.samples - 1)
    elif cfg.baseline == "running":
        if running is None:
            running = returns.mean(0)  # no history yet: the first update carries no signal
        advantage = returns - running
        running = running + (returns.mean(0) - running) / (ep + 1)
    else:
        advantage = returns
    loss = (advantage.detach() * log_probs).sum() / cfg.samples
    opt.zero_grad()
    loss.backward()
    opt.step()
    return running


class EpisodeTask(Protocol):
    """What differs between the trainers (FFN rows per layer, attention KV groups over the model); the rest of an
    episode, seeding, the REINFORCE step and the best/last bookkeeping, is :func:`run_episodes`'s, shared."""

    label: str  # progress-bar name
    states: torch.Tensor  # (L, n, d): every layer's state
    shape: tuple[int, int]  # (n, d) of a layer's state: the policy network's size
    device: torch.device

    def importance(self, policy: PolicyNetwork) -> torch.Tensor:
        """The keep-importances an episode's draws perturb and sample from."""
        ...

    def draw(self, importance: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw over the whole model: (its log-probability, the ``(L,)`` penalties it costs)."""
        ...

    def returns(self, penalties: torch.Tensor) -> torch.Tensor:
        """What REINFORCE minimises, from the ``(M, L)`` penalties of the episode's M draws."""
        ...

    def score(self, selector: str, policy: PolicyNetwork | None, samples: int, seed: int) -> float:
        """Mean layer-averaged penalty of ``selector``'s draws (a trained policy against random ones)."""
        ...


def make_policy(cfg: TrainConfig, n: int, d: int, generator: torch.Generator | None = None) -> PolicyNetwork:
    """The network ``cfg`` trains: the one place that decides its shape-independent settings (the bias the
    authors' code has comes with ``objective: official`` or ``init: official``), so a trained state dict always
    fits it."""
    bias = "official" in (cfg.objective, cfg.init)
    return PolicyNetwork(n, d, bias=bias, generator=generator, eq3=cfg.eq3, init=cfg.init)


def _snapshot(policy: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def run_episodes(
    task: EpisodeTask, cfg: TrainConfig, progress: bool = True, on_episode: Callable[[int, float], None] | None = None
) -> TrainResult:
    """REINFORCE over ``cfg.episodes`` episodes of ``cfg.samples`` draws each, keeping the best and last policies."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    policy = make_policy(cfg, *task.shape, generator=gen).to(task.device)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
    running = None  # running mean of the returns (baseline: running)
    history, per_layer = [], []
    best_state, best_mean, best_ep = None, float("inf"), -1
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.episodes), desc=f"{task.label} r={cfg.ratio}", disable=not progress)
    for ep in bar:
        importance = task.importance(policy)
        log_probs, pens = zip(*(task.draw(importance, gen) for _ in range(cfg.samples)))
        log_probs, pen = torch.stack(log_probs), torch.stack(pens)  # first axis: the M draws
        mean = float(pen.mean())
        if mean < best_mean:  # the policy that produced this episode's samples is the one scored by it
            best_mean, best_ep, best_state = mean, ep, _snapshot(policy)
        running = reinforce_step(opt, task.returns(pen), log_probs, cfg, running, ep)
        history.append(mean)
        per_layer.append(pen.mean(0).tolist())
        bar.set_postfix(penalty=f"{mean:.4f}")
        if on_episode:
            on_episode(ep, mean)
    seconds = time.perf_counter() - t0
    return TrainResult(best_state, _snapshot(policy), history, per_layer, best_ep, seconds, asdict(cfg))


@dataclass
class RowTask:
    """FFN rows: every layer draws its own k rows (Eq. 4) and is paid its own discounted future penalty (Eq. 7),
    or, ``objective: official``, the authors' reward γ^l / D_l."""

    states: torch.Tensor  # (L, n, d)
    cfg: TrainConfig
    label: str = "policy"

    def __post_init__(self) -> None:
        L, n, d = self.states.shape
        self.shape, self.device, self.k = (n, d), self.states.device, n_keep(n, self.cfg.ratio)
        self.dense = spectra(self.states, self.cfg.spectrum)
        self.discounts = self.cfg.gamma ** torch.arange(L, dtype=torch.float32, device=self.device)

    def importance(self, policy: PolicyNetwork) -> torch.Tensor:
        return policy(self.states)  # (L, n)

    def draw(self, importance: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        draws = [draw_rows(imp, self.k, generator) for imp in importance]
        with torch.no_grad():
            pen = layer_penalties(self.states, [r for r, _ in draws], self.cfg.penalty, self.cfg.spectrum, self.dense)
        return torch.stack([lp for _, lp in draws]), pen

    def returns(self, penalties: torch.Tensor) -> torch.Tensor:
        if self.cfg.objective == "paper":
            return torch.stack([discounted_future(p, self.cfg.gamma) for p in penalties])  # minimise future penalty
        return -self.discounts / penalties.clamp_min(1e-6)  # maximise γ^l / D_l  ==  minimise its negative

    def score(self, selector: str, policy: PolicyNetwork | None, samples: int, seed: int) -> float:
        cfg = self.cfg
        return mean_penalty(self.states, selector, cfg.ratio, policy, samples, cfg.penalty, cfg.spectrum, seed)


def train_policy(
    states: torch.Tensor,
    cfg: TrainConfig,
    progress: bool = True,
    on_episode: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train one shared policy on the stacked state matrices ``states`` (L, n, d) in the paper's loop."""
    cfg.validate()
    if cfg.update != "paper":
        raise PruneNetError("train_policy runs the paper's loop: for update official, use released.run_released")
    return run_episodes(RowTask(states, cfg), cfg, progress, on_episode)


@torch.no_grad()
def mean_penalty(
    states: torch.Tensor,
    selector: str,
    ratio: float,
    policy: PolicyNetwork | None = None,
    samples: int = 20,
    penalty: str = "ks",
    spectrum: str = "svd",
    seed: int = 0,
) -> float:
    """Mean over ``samples`` draws of the layer-averaged penalty of a selector (for comparisons)."""
    L, n, _ = states.shape
    k = n_keep(n, ratio)
    dense = spectra(states, spectrum)
    importance = policy(states) if policy is not None else [None] * L

    def draw(gen: torch.Generator) -> torch.Tensor:
        rows = [select_rows(selector, n, k, importance[l], gen) for l in range(L)]
        return layer_penalties(states, rows, penalty, spectrum, dense)

    return mean_over_draws(draw, 1 if selector == "deterministic" else samples, seed)


def mean_over_draws(draw: Callable[[torch.Generator], torch.Tensor], draws: int, seed: int) -> float:
    """Mean over ``draws`` seeded draws of the layer-averaged penalties ``draw`` returns: how both targets
    (:func:`mean_penalty`, :func:`prunenet.attention_policy.mean_group_penalty`) compare selectors."""
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(draws):
        total += float(draw(gen).mean())
    return total / draws
