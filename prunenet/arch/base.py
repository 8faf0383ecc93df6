"""The architecture adapter: everything a compression method needs to know about a model family.

Methods never name a module path themselves: PruneNet asks for the FFN matrices, SliceGPT for
the norms, the readers and writers of the residual stream and the embeddings, recovery
fine-tuning for the LoRA targets, head pruning for the attention layout. One subclass per
family (``llama.py``, ``opt.py``, ``phi.py``) states these facts once; :func:`get_adapter`
picks it by ``config.model_type``. Modelled on TransformerCompression's ``ModelAdapter``,
lighter: a bound adapter wraps one model instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..choices import STATES
from ..errors import PruneNetError


@dataclass(frozen=True)
class AttentionLayout:
    """The projections of one self-attention module and its head layout.

    ``q`` has ``num_heads * head_dim`` output rows, ``k``/``v`` ``num_kv_heads * head_dim``
    (grouped-query attention when ``num_kv_heads < num_heads``: ``group_size`` query heads
    share one key/value head, so a KV head can only go together with its whole group).
    """

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.num_heads // self.num_kv_heads


@dataclass
class Block:
    """A decoder layer as the residual stream sees it (SliceGPT's view).

    ``norms`` read the stream: one per sub-block for sequential blocks (attention, MLP), one
    shared by both for parallel blocks (Phi-2). ``mlp`` is a module whose input/output
    projections :meth:`ModelAdapter.mlp_in` / :meth:`ModelAdapter.mlp_out` name.
    """

    attn: nn.Module
    mlp: nn.Module
    norms: list[nn.Module]
    dropout: float
    parallel: bool


class ModelAdapter:
    """Facts about one architecture family, bound to one model instance.

    Subclasses set the class attributes; the methods below read them. Dotted paths are
    relative to the model (``layers_path``), to a decoder layer (``up``, ``gate``, ``down``,
    ``attn``, ``mlp``, ``norm_names``) or to the attention / MLP module (projection names).
    """

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    layers_path: ClassVar[str] = "model.layers"
    # FFN: rows of up/gate and columns of down are the intermediate neurons
    up: ClassVar[str]
    gate: ClassVar[str | None] = None
    down: ClassVar[str]
    size_key: ClassVar[str] = "intermediate_size"
    # attention
    attn: ClassVar[str] = "self_attn"
    qkv_names: ClassVar[tuple[str, str, str]] = ("q_proj", "k_proj", "v_proj")
    o_name: ClassVar[str]
    # residual stream (SliceGPT)
    mlp: ClassVar[str | None] = "mlp"  # None: the FFN linears sit on the layer itself (OPT)
    mlp_in_names: ClassVar[tuple[str, ...]]
    mlp_out_name: ClassVar[str]
    norm_names: ClassVar[tuple[str, ...]]
    final_norm: ClassVar[str]
    parallel_block: ClassVar[bool] = False
    layernorm_stream: ClassVar[bool] = False  # LayerNorm (mean and shift) rather than RMSNorm
    extra_embeddings: ClassVar[tuple[str, ...]] = ()  # e.g. learned positions, relative to the base
    # model_types of this family that SliceGPT refuses whatever the config (listed in its error messages)
    slicegpt_refused: ClassVar[tuple[str, ...]] = ()
    # recovery fine-tuning: LoRA on every attention and FFN projection, as the paper's RFT
    lora_targets: ClassVar[tuple[str, ...]]

    def __init__(self, model: nn.Module):
        self.model = model
        self.config = model.config

    # ------------------------------------------------------------------ layers and FFN

    def base(self) -> nn.Module:
        """The module that holds the embeddings, the layer list and the final norm."""
        return self.model.get_submodule(self.layers_path.rsplit(".", 1)[0])

    def layers(self) -> nn.ModuleList:
        return self.model.get_submodule(self.layers_path)

    def set_layers(self, layers: list[nn.Module]) -> None:
        setattr(self.base(), self.layers_path.rsplit(".", 1)[1], nn.ModuleList(layers))

    def ffn(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear | None, nn.Linear]:
        """(up, gate or None, down) linear modules of one decoder layer."""
        gate = layer.get_submodule(self.gate) if self.gate else None
        return layer.get_submodule(self.up), gate, layer.get_submodule(self.down)

    def set_ffn(self, layer: nn.Module, up: nn.Linear, gate: nn.Linear | None, down: nn.Linear) -> None:
        """Replace a layer's FFN linears (shapes may change)."""
        layer.set_submodule(self.up, up)
        if self.gate is not None and gate is not None:
            layer.set_submodule(self.gate, gate)
        layer.set_submodule(self.down, down)

    def state_matrix(self, layer: nn.Module, state: str) -> torch.Tensor:
        """The n×d matrix the policy reads (one row per intermediate neuron).

        ``up`` is FFN1 (the paper's default), ``gate`` is LLaMA's gate (the official
        code's choice) and ``down`` is FFN2 transposed (paper ablation T19). ``first`` is the first FFN matrix as the
        official code reads it whatever the family: the gate where there is one, FFN1 (OPT's and Phi's fc1) otherwise.
        """
        up, gate, down = self.ffn(layer)
        if state == "first":
            state = "up" if gate is None else "gate"
        if state == "up":
            return up.weight
        if state == "gate":
            if gate is None:
                raise PruneNetError(f"state 'gate' needs a gated FFN; {self.family} has none: use state: up or down")
            return gate.weight
        if state == "down":
            return down.weight.t()
        raise PruneNetError(f"unknown policy state {state!r}: use one of {', '.join(STATES)}")

    def set_intermediate_size(self, size: int) -> None:
        setattr(self.config, self.size_key, size)

    # ------------------------------------------------------------------ attention

    def attention(self, layer: nn.Module) -> AttentionLayout:
        attn = layer.get_submodule(self.attn)
        q, k, v = self.attn_in(attn)
        heads = self.config.num_attention_heads
        head_dim = getattr(self.config, "head_dim", None) or self.config.hidden_size // heads
        # counted from the projections: a layer may have lost whole KV groups (LLM-Pruner's head pruning)
        heads, kv_heads = q.out_features // head_dim, k.out_features // head_dim
        return AttentionLayout(q, k, v, self.attn_out(attn), heads, kv_heads, head_dim)

    def attn_in(self, attn: nn.Module) -> list[nn.Linear]:
        return [attn.get_submodule(n) for n in self.qkv_names]

    def attn_out(self, attn: nn.Module) -> nn.Linear:
        return attn.get_submodule(self.o_name)

    # ------------------------------------------------------------------ embeddings, head, norms

    def embeddings(self) -> list[nn.Embedding]:
        """Every embedding that writes the residual stream (tokens first)."""
        base = self.base()
        return [self.model.get_input_embeddings()] + [base.get_submodule(n) for n in self.extra_embeddings]

    def lm_head(self) -> nn.Linear:
        return self.model.get_output_embeddings()

    def tied(self) -> bool:
        """Whether the LM head shares its weight with the token embedding."""
        head, emb = self.lm_head(), self.model.get_input_embeddings()
        return head.weight is emb.weight or head.weight.data_ptr() == emb.weight.data_ptr()

    def norm_eps(self, norm: nn.Module) -> float:
        for attr in ("variance_epsilon", "eps"):
            if hasattr(norm, attr):
                return float(getattr(norm, attr))
        raise PruneNetError(f"cannot read eps of norm {type(norm).__name__}")

    def norm_affine(self, norm: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(scale, shift) a norm applies after normalising: what folding moves into its readers."""
        return getattr(norm, "weight", None), getattr(norm, "bias", None)

    # ------------------------------------------------------------------ residual stream (SliceGPT)

    def check_slicegpt(self) -> None:
        """Raise a one-line error when this model cannot be rotated and sliced."""

    def block(self, layer: nn.Module) -> Block:
        """The attention, MLP and stream norms of an HF decoder layer."""
        mlp = layer.get_submodule(self.mlp) if self.mlp else self.wrap_mlp(layer)
        norms = [layer.get_submodule(n) for n in self.norm_names]
        return Block(layer.get_submodule(self.attn), mlp, norms, self.block_dropout(layer), self.parallel_block)

    def set_norms(self, layer: nn.Module, norms: list[nn.Module]) -> None:
        for name, norm in zip(self.norm_names, norms):
            layer.set_submodule(name, norm)

    def final_norm_module(self) -> nn.Module:
        return self.base().get_submodule(self.final_norm)

    def set_final_norm(self, norm: nn.Module) -> None:
        self.base().set_submodule(self.final_norm, norm)

    def mlp_in(self, mlp: nn.Module) -> list[nn.Linear]:
        return [mlp.get_submodule(n) for n in self.mlp_in_names]

    def mlp_out(self, mlp: nn.Module) -> nn.Linear:
        return mlp.get_submodule(self.mlp_out_name)

    def wrap_mlp(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError(f"{self.family} keeps its MLP in a submodule")

    def block_dropout(self, layer: nn.Module) -> float:
        return 0.0
