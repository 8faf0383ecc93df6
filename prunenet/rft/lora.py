"""LoRA adapters for RFT: which modules get them, attaching them (seeded) and folding them back in.

The target modules per family come from the architecture adapter
(:attr:`prunenet.arch.ModelAdapter.lora_targets`: every attention and FFN projection, as in
the paper's RFT), so a new family states them once, next to its other module names.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..arch import get_adapter
from ..errors import PruneNetError


def default_targets(model: nn.Module) -> list[str]:
    """The LoRA target module names for ``model``'s architecture.

    An unsupported architecture gets the adapter registry's one-line error (it lists the
    supported ones), plus the way around it: naming the target modules explicitly.
    """
    try:
        adapter = get_adapter(model)
    except PruneNetError as exc:
        raise PruneNetError(f"{exc} (or pass target_modules explicitly)") from None
    return list(adapter.lora_targets)


def _check_targets(model: nn.Module, targets: list[str]) -> None:
    """Refuse target names that match no linear layer (peft would only fail later, less clearly)."""
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in names]
    if missing:
        raise PruneNetError(
            f"LoRA target modules {missing} not found in the model (its linear layers: {', '.join(sorted(names))})"
        )


def attach_lora(
    model: nn.Module,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: list[str] | None = None,
    seed: int = 0,
):
    """Wrap ``model`` in a peft LoRA model (A: seeded Kaiming init, B: zeros); only the adapters train.

    The global torch RNG is seeded right before peft initialises A, so the same seed gives
    the same adapters whatever ran before.
    """
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise PruneNetError(f"lora_r must be a positive integer, got {r}")
    targets = list(target_modules) if target_modules else default_targets(model)
    _check_targets(model, targets)
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none", task_type="CAUSAL_LM"
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def merge_lora(peft_model) -> nn.Module:
    """Fold every adapter into its base weight (W + alpha/r * B @ A) and return the plain model."""
    return peft_model.merge_and_unload()
