"""Phi-2: one LayerNorm feeding attention and MLP in parallel (``h + attn(n(h)) + mlp(n(h))``),
GELU FFN ``mlp.fc1``/``mlp.fc2``, attention output ``dense``."""

from __future__ import annotations

from torch import nn

from . import ARCHITECTURES
from .base import ModelAdapter


@ARCHITECTURES.decorator("phi")
class PhiAdapter(ModelAdapter):
    family = "phi"
    model_types = ("phi",)
    up, down = "mlp.fc1", "mlp.fc2"
    o_name = "dense"
    mlp_in_names, mlp_out_name = ("fc1",), "fc2"
    norm_names = ("input_layernorm",)
    final_norm = "final_layernorm"
    parallel_block = True
    layernorm_stream = True
    lora_targets = ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")

    def block_dropout(self, layer: nn.Module) -> float:
        return float(getattr(layer.resid_dropout, "p", 0.0))
