"""The authors' released training loop (LCS2-IIITD/PruneNet, ``prunenet/prunenet.py``'s ``_training``): ``update:
official``.

Why a loop of its own: the released code learns at other times and from another quantity than Algorithm 1 as
:func:`prunenet.training.run_episodes` reads it (one step per episode, on the likelihood of the episode's own draws):

- an episode first draws every layer's rows with the policy as it stood at the episode's start: per layer a
  perturbed keep-probability vector (Eq. 4, a fresh ε) and ⌊(1−r)·n⌋ rows by ``torch.multinomial`` without
  replacement from it (the pruned model keeps n − round(r·n), the budget every method shares: one row more at
  most); the penalty D_l is the spectral distance of the layer's pruned state (``objective: official``: reward
  γ^l / D_l, no returns);
- then layer by layer: a *fresh* perturbed draw of the policy as updated so far, the loss −Σ_{kept rows} log(keep-
  probability) × reward_l (generally: × the negated return :meth:`RowTask.returns` gives layer l), one AdamW step;
- the policy kept as ``best`` is the one after the episode with the highest total reward Σ_l 1/D_l (undiscounted);
- on CUDA the policy's forward passes run under fp16 autocast with a gradient scaler, as released; on the CPU in
  float32 (the released code's CPU run would ask for fp16 CPU autocast; the reference run is CUDA).

Two released details are left out because they change nothing: gradient clipping (it runs after ``zero_grad``, on
zero gradients) and the 99999 reward of a zero distance (D is clamped at 1e-6, which only a ratio of 0 reaches).
The importances are cast to float32 before Eq. 4, so that an importance rounded to 1.0 in fp16 cannot make its
log-odds infinite.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from .choices import ATTENTION_STATES
from .errors import PruneNetError
from .policy import PolicyNetwork, check_ratio, perturb
from .training import RowTask, TrainConfig, TrainResult, _snapshot, layer_penalties, make_policy


def check_config(cfg: TrainConfig) -> None:
    """Refuse what the released loop does not do, in one line naming the fix (before any model loads)."""
    if cfg.state in ATTENTION_STATES:
        raise PruneNetError(f"update 'official' trains FFN rows only: use --update paper for state {cfg.state!r}")
    if cfg.samples != 1 or cfg.baseline != "none":
        raise PruneNetError(
            "update 'official' draws one row set per layer with no baseline, as released: "
            "use --samples 1 --baseline none"
        )
    released_keep(1000, cfg.ratio)


def released_keep(n: int, ratio: float) -> int:
    """Rows the released loop draws per layer: ⌊(1 − r)·n⌋, as ``int((1 - compression_ratio) * feat_len)``."""
    check_ratio(ratio)
    k = int((1 - ratio) * n)
    if k < 1:
        raise PruneNetError(f"ratio {ratio} would remove all {n} rows: use a smaller ratio")
    return k


def _precision(device: torch.device):
    """fp16 autocast on CUDA (as released), plain float32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else contextlib.nullcontext()


def keep_probabilities(policy: PolicyNetwork, state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One layer's perturbed keep-probabilities (Eq. 4 on the policy's importances, a fresh ε from ``generator``)."""
    with _precision(state.device):
        importance = policy(state)
    return perturb(importance.float(), generator)


@torch.no_grad()
def episode_rows(policy: PolicyNetwork, states: torch.Tensor, k: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Every layer's kept rows (sorted), drawn in layer order with the policy as it stands: ε_l, then the rows."""
    rows = []
    for state in states:
        keep = keep_probabilities(policy, state, generator).cpu()
        drawn = torch.multinomial(keep, k, replacement=False, generator=generator)
        rows.append(torch.sort(drawn).values.to(states.device))
    return rows


def layer_steps(
    policy: PolicyNetwork,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    task: RowTask,
    rows: list[torch.Tensor],
    returns: torch.Tensor,
    generator: torch.Generator,
) -> None:
    """One AdamW step per layer on Σ_{kept} log(fresh keep-probability) × return_l (minimised)."""
    for state, kept, ret in zip(task.states, rows, returns):
        loss = torch.log(keep_probabilities(policy, state, generator)[kept]).sum() * ret
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()


def run_released(
    task: RowTask, cfg: TrainConfig, progress: bool = True, on_episode: Callable[[int, float], None] | None = None
) -> TrainResult:
    """The released loop over ``cfg.episodes`` episodes; ``history``: the mean penalty of each episode's draws."""
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    policy = make_policy(cfg, *task.shape, generator=gen).to(task.device)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=task.device.type == "cuda")
    k = released_keep(task.shape[0], cfg.ratio)
    history, per_layer = [], []
    best_state, best_total, best_ep = _snapshot(policy), 0.0, -1
    t0 = time.perf_counter()
    for ep in tqdm(range(cfg.episodes), desc=f"{task.label} (released) r={cfg.ratio}", disable=not progress):
        rows = episode_rows(policy, task.states, k, gen)
        with torch.no_grad():
            pen = layer_penalties(task.states, rows, cfg.penalty, cfg.spectrum, task.dense)
        layer_steps(policy, opt, scaler, task, rows, task.returns(pen[None])[0], gen)
        total = float((1 / pen.clamp_min(1e-6)).sum())
        if total > best_total:  # kept after the episode's updates, as released
            best_total, best_ep, best_state = total, ep, _snapshot(policy)
        history.append(float(pen.mean()))
        per_layer.append(pen.tolist())
        if on_episode:
            on_episode(ep, history[-1])
    seconds = time.perf_counter() - t0
    return TrainResult(best_state, _snapshot(policy), history, per_layer, best_ep, seconds, asdict(cfg))
