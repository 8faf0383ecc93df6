"""OPT: pre-LayerNorm blocks with biases, ReLU FFN ``fc1``/``fc2`` kept on the layer itself,
learned position embeddings. OPT-350m (post-LayerNorm, project_in/out) is refused by SliceGPT."""

from __future__ import annotations

from torch import nn

from ..errors import PruneNetError
from . import ARCHITECTURES
from .base import ModelAdapter


class OPTMLP(nn.Module):
    """OPT's fc1 -> activation -> fc2, gathered into one module (OPT keeps them on the layer)."""

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear, act, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2, self.act, self.dropout = fc1, fc2, act, dropout

    def forward(self, x):
        x = self.fc2(self.act(self.fc1(x)))
        return nn.functional.dropout(x, p=self.dropout, training=self.training)


@ARCHITECTURES.decorator("opt")
class OPTAdapter(ModelAdapter):
    family = "opt"
    model_types = ("opt",)
    layers_path = "model.decoder.layers"
    up, down = "fc1", "fc2"
    size_key = "ffn_dim"
    o_name = "out_proj"
    mlp = None
    mlp_in_names, mlp_out_name = ("fc1",), "fc2"
    norm_names = ("self_attn_layer_norm", "final_layer_norm")
    final_norm = "final_layer_norm"
    layernorm_stream = True
    extra_embeddings = ("embed_positions",)
    lora_targets = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")

    def check_slicegpt(self) -> None:
        cfg = self.config
        if getattr(cfg, "word_embed_proj_dim", cfg.hidden_size) != cfg.hidden_size:
            raise PruneNetError(
                "OPT models with project_in/project_out (e.g. opt-350m) are not supported by SliceGPT here"
            )
        if not getattr(cfg, "do_layer_norm_before", True):
            raise PruneNetError(
                "post-LayerNorm OPT (do_layer_norm_before=False, e.g. opt-350m) is not supported by SliceGPT"
            )

    def wrap_mlp(self, layer: nn.Module) -> nn.Module:
        return OPTMLP(layer.fc1, layer.fc2, layer.activation_fn, layer.dropout)

    def block_dropout(self, layer: nn.Module) -> float:
        return layer.dropout
