"""Architecture adapters: where each decoder layer keeps its FFN.

PruneNet only needs, per layer, the FFN1 (up) projection whose rows are the
intermediate neurons, an optional gate with the same rows (LLaMA-style SwiGLU),
and the FFN2 (down) projection whose *columns* are those neurons.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import PruneNetError


@dataclass(frozen=True)
class FFNAdapter:
    """Names of the FFN modules of one architecture family, relative to a decoder layer."""

    family: str
    layers: str  # dotted path from the model to the ModuleList of decoder layers
    up: str
    down: str
    gate: str | None
    size_key: str  # config attribute holding the intermediate size

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.layers)

    def ffn(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear | None, nn.Linear]:
        """(up, gate or None, down) linear modules of one decoder layer."""
        gate = layer.get_submodule(self.gate) if self.gate else None
        return layer.get_submodule(self.up), gate, layer.get_submodule(self.down)

    def state_matrix(self, layer: nn.Module, state: str) -> torch.Tensor:
        """The n×d matrix the policy reads (one row per intermediate neuron).

        ``up`` is FFN1 (the paper's default), ``gate`` is LLaMA's gate (the official
        code's choice) and ``down`` is FFN2 transposed (paper ablation T19).
        """
        up, gate, down = self.ffn(layer)
        if state == "up":
            return up.weight
        if state == "gate":
            if gate is None:
                raise PruneNetError(f"state 'gate' needs a gated FFN; {self.family} has none: use state: up or down")
            return gate.weight
        if state == "down":
            return down.weight.t()
        raise PruneNetError(f"unknown policy state {state!r}: use one of up, gate, down")


LLAMA = FFNAdapter("llama", "model.layers", "mlp.up_proj", "mlp.down_proj", "mlp.gate_proj", "intermediate_size")
OPT = FFNAdapter("opt", "model.decoder.layers", "fc1", "fc2", None, "ffn_dim")
PHI = FFNAdapter("phi", "model.layers", "mlp.fc1", "mlp.fc2", None, "intermediate_size")

# model_type (config.model_type) -> adapter. LLaMA-like families share one layout.
ADAPTERS: dict[str, FFNAdapter] = {
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
    "qwen3": LLAMA,
    "gemma": LLAMA,
    "gemma2": LLAMA,
    "gemma3_text": LLAMA,
    "opt": OPT,
    "phi": PHI,
}


def get_adapter(model: nn.Module) -> FFNAdapter:
    """The adapter for ``model`` or a one-line error listing the supported architectures."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTERS:
        raise PruneNetError(
            f"unsupported architecture {model_type!r}: supported model_types are {', '.join(sorted(ADAPTERS))}"
        )
    return ADAPTERS[model_type]
