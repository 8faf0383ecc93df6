"""One policy-training step end to end, with no tracking or printing: what ``prunenet train`` runs.

The target (FFN rows, or attention KV groups for ``state: qkv``) decides the states and the episode task; after
training, the best policy is scored against random draws on fresh seeds, and the metadata its file records
(safetensors header and JSON, key order included) is assembled here, so that the command only parses, tracks and
prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .choices import ATTENTION_STATES
from .training import EpisodeTask, RowTask, TrainConfig, TrainResult, collect_states, run_episodes


@dataclass
class TrainedPolicy:
    """A trained policy's tensors and history (``result``), its file's metadata and its evaluation penalties."""

    result: TrainResult
    meta: dict
    evals: dict[str, float]

    def metrics(self) -> dict[str, float]:
        """What the tracker logs for the run."""
        history = self.result.history
        return self.evals | {
            "train_seconds": self.result.seconds,
            "best_episode": self.result.best_episode,
            "best_penalty": min(history),
            "first_penalty": history[0],
        }


def check_train_config(cfg: TrainConfig) -> None:
    """Refuse a config in one line before the model loads, the attention trainer's limits included."""
    cfg.validate()
    if cfg.update == "official":
        from .released import check_config

        check_config(cfg)
    if cfg.state in ATTENTION_STATES:
        from .attention_policy import check_config

        check_config(cfg)


def policy_task(model: nn.Module, cfg: TrainConfig) -> EpisodeTask:
    """The episode task of ``cfg.state``'s target on ``model`` (its states are copies: the model may be freed)."""
    if cfg.state not in ATTENTION_STATES:
        return RowTask(collect_states(model, cfg.state), cfg)
    from .attention_policy import GroupTask, group_states

    return GroupTask(*group_states(model), cfg)


def train_and_score(
    task: EpisodeTask,
    cfg: TrainConfig,
    model_path: str,
    eval_samples: int,
    progress: bool = True,
    on_episode: Callable[[int, float], None] | None = None,
) -> TrainedPolicy:
    """Train on ``task`` (in the loop ``cfg.update`` names), then score the best policy and random draws over
    ``eval_samples`` draws (seed + 1)."""
    if cfg.update == "official":  # the authors' loop (FFN rows only: check_train_config refused the rest)
        from .released import run_released

        result = run_released(task, cfg, progress, on_episode)
    else:
        result = run_episodes(task, cfg, progress, on_episode)
    best = result.network().to(task.device)
    evals = {
        "eval_penalty_policy": task.score("policy", best, eval_samples, cfg.seed + 1),
        "eval_penalty_random": task.score("random", None, eval_samples, cfg.seed + 1),
    }
    meta = {
        "model": model_path,
        "shape": list(task.states.shape),
        "config": result.config,
        "history": result.history,
        "layer_penalties_last": result.layer_penalties[-1],
        "best_episode": result.best_episode,
        "seconds": result.seconds,
        **evals,
    }
    return TrainedPolicy(result, meta, evals)
