"""LLaMA-like decoders: pre-RMSNorm blocks, SwiGLU FFN (gate/up/down), rotary attention.

Covers Llama (incl. SmolLM2), Mistral, Qwen2, Qwen3 and the Gemma family. Qwen3's per-head
q/k norms act on projection outputs, so rotating the residual stream leaves them alone.
Gemma 2/3 normalise the *outputs* of attention and MLP before the residual add
(post-norms), which no rotation of the stream commutes with: SliceGPT refuses them.
Gemma (1) scales by ``1 + weight`` in its RMSNorm, folded as such.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import PruneNetError
from . import ARCHITECTURES
from .base import ModelAdapter

_PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@ARCHITECTURES.decorator("llama", "mistral", "qwen2", "qwen3")
class LlamaAdapter(ModelAdapter):
    family = "llama"
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    up, gate, down = "mlp.up_proj", "mlp.gate_proj", "mlp.down_proj"
    o_name = "o_proj"
    mlp_in_names = ("gate_proj", "up_proj")
    mlp_out_name = "down_proj"
    norm_names = ("input_layernorm", "post_attention_layernorm")
    final_norm = "norm"
    lora_targets = _PROJ


@ARCHITECTURES.decorator("gemma", "gemma2", "gemma3_text")
class GemmaAdapter(LlamaAdapter):
    family = "gemma"
    model_types = ("gemma", "gemma2", "gemma3_text")
    slicegpt_refused = ("gemma2", "gemma3_text")

    def norm_affine(self, norm: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        # GemmaRMSNorm: x̂ · (1 + w), the sum taken in float (as HF does) so low-precision weights lose nothing
        return 1.0 + norm.weight.double(), None

    def check_slicegpt(self) -> None:
        if self.config.model_type in self.slicegpt_refused:
            raise PruneNetError(
                f"SliceGPT cannot slice {self.config.model_type}: its post-attention/post-FFN norms act on block "
                f"outputs, which no rotation of the residual stream commutes with (supported: llama, mistral, "
                f"qwen2, qwen3, gemma, opt, phi)"
            )
