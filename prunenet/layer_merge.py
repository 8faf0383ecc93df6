"""Layer merging (LaCo): collapse runs of decoder layers into one by parameter arithmetic.

LaCo (Yang, Cao, Zhao 2024, "LaCo: Large Language Model Pruning via Layer Collapse", arXiv 2402.11187)
removes depth without dropping what the removed layers did. Two parts:

**RDSC layer merge** (Reserving-Differences-while-Seeking-Common, the paper's Eq. for θ*): merging layers
l+1 … l+m into layer l sets every merged parameter of layer l to

    θ*_l = θ_l + Σ_{k=1..m} (θ_{l+k} − θ_l)

and deletes layers l+1 … l+m (:func:`merge_layer`, :func:`rdsc_merge`). The paper applies it to the
self-attention (SAN) and MLP parameters; here that is every projection of the attention (q, k, v, o) and
of the FFN (up, gate, down), weights *and* biases (OPT, Phi). Every norm of the layer (pre-/post-attention
and MLP norms, Qwen3/Gemma per-head q/k norms) stays layer l's own: norms are neither SAN nor MLP weights in
the paper's Llama/Baichuan models, its released code merges the seven projection weights only, and RDSC
arithmetic on a norm scale (Σθ − mθ_l) can make it tiny or negative. Per-layer config entries (attention
types) are layer l's too, as :func:`prunenet.depth.remove_layers` cuts them. (The authors' notebook adds
each difference to the already-updated base, ``W_l += W_{l+k} − W_l`` in place, which telescopes to
W_{l+m}; this module computes the paper's formula, every difference taken against the original θ_l.)

The walk that decides which layers merge (Algorithm 1) is :mod:`prunenet.layer_collapse`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .arch import get_adapter
from .depth import PER_LAYER_CONFIG, remove_layers
from .errors import PruneNetError

# ---------------------------------------------------------------------------------------------- RDSC merge


def merged_linears(model: nn.Module) -> list[str]:
    """Paths (relative to a decoder layer) of the projections RDSC merges: attention q, k, v, o and FFN up,
    gate, down. Everything else in a layer (its norms) stays the base layer's; see the module docstring."""
    adapter = get_adapter(model)
    attn = [f"{adapter.attn}.{name}" for name in (*adapter.qkv_names, adapter.o_name)]
    ffn = [adapter.up] + ([adapter.gate] if adapter.gate else []) + [adapter.down]
    return attn + ffn


@torch.no_grad()
def merge_layer(model: nn.Module, layers: Sequence[nn.Module]) -> nn.Module:
    """A new layer: ``layers[0]`` with every merged parameter θ set to θ_0 + Σ_{k≥1} (θ_k − θ_0).

    ``layers`` are not modified (the search builds candidates from the current layers and may reject them).
    The sum runs in float32 at least, so bf16/fp16 checkpoints do not lose the small differences RDSC keeps.
    """
    if not layers:
        raise PruneNetError("RDSC needs at least one layer to merge into")
    merged = copy.deepcopy(layers[0])
    for path in merged_linears(model):
        target = merged.get_submodule(path)
        sources = [layer.get_submodule(path) for layer in layers]
        for pname in ("weight", "bias"):
            base = getattr(sources[0], pname, None)
            if base is None:
                continue
            acc_dtype = torch.promote_types(base.dtype, torch.float32)
            acc = base.detach().to(acc_dtype).clone()
            for src in sources[1:]:
                theta = getattr(src, pname)
                if theta is None or theta.shape != base.shape:
                    raise PruneNetError(
                        f"cannot RDSC-merge {path}.{pname}: layers differ in shape (LaCo needs identical layers; "
                        "run it on the dense model, not on a width-pruned one)"
                    )
                acc += theta.detach().to(acc_dtype) - base.detach().to(acc_dtype)
            getattr(target, pname).copy_(acc.to(base.dtype))
    return merged


def rdsc_merge(model: nn.Module, base: int, m: int) -> nn.Module:
    """Merge layers ``base+1 … base+m`` into layer ``base`` in place and delete them (renumbered, per-layer
    config cut by :func:`prunenet.depth.remove_layers`, so plain ``from_pretrained`` loads the result)."""
    layers = get_adapter(model).layers()
    if m < 0 or base < 0 or base + m >= len(layers):
        raise PruneNetError(f"cannot merge layers {base}..{base + m} of a {len(layers)}-layer model")
    if m == 0:
        return model
    layers[base] = merge_layer(model, list(layers[base : base + m + 1]))
    return remove_layers(model, range(base + 1, base + m + 1))


# ------------------------------------------------------------------------------- representations


def representation_similarity(reference: torch.Tensor, states: torch.Tensor) -> float:
    """Mean over samples of cos(flattened reference[i], flattened states[i]) (``[n, seq, d]`` each, float64).

    One sample's representation is its whole last-layer matrix, as in the authors' code (a cosine per
    sentence of ``hidden_states[-1]`` flattened): tokens weigh by their norms, not one each.
    """
    a = reference.reshape(reference.shape[0], -1).double()
    b = states.reshape(states.shape[0], -1).double()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())


class _Entry(nn.Module):
    """Stands in for the first decoder layer: emits the cached hidden states entering layer ``start``.

    Decoder layers return the hidden-state tensor itself in transformers 5, so the stand-ins do too."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, hidden_states, *args, **kwargs):
        return self.value


class _Pass(nn.Module):
    """Stands in for a dense layer below ``start`` whose work the cached entry already holds."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@contextmanager
def _installed(model: nn.Module, layers: list[nn.Module], per_layer: dict[str, list]) -> Iterator[None]:
    """Run ``model`` with ``layers`` as its decoder stack and matching per-layer config; restore after.

    Qwen2/Gemma-3 index ``config.layer_types`` by position while they loop, so the config must describe
    the installed stack, not the model it came from.
    """
    adapter = get_adapter(model)
    config = model.config
    parent, name = adapter.base(), adapter.layers_path.rsplit(".", 1)[1]
    old_layers, old_n = adapter.layers(), config.num_hidden_layers
    old_cfg = {key: getattr(config, key) for key in per_layer}
    adapter.set_layers(layers)
    config.num_hidden_layers = len(layers)
    for key, values in per_layer.items():
        setattr(config, key, type(old_cfg[key])(values))
    try:
        yield
    finally:
        setattr(parent, name, old_layers)
        config.num_hidden_layers = old_n
        for key, values in old_cfg.items():
            setattr(config, key, values)


def per_layer_config(model: nn.Module) -> dict[str, list]:
    """The dense model's per-layer config lists (one entry per decoder layer), by key."""
    n = len(get_adapter(model).layers())
    out = {}
    for key in PER_LAYER_CONFIG:
        values = getattr(model.config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == n:
            out[key] = list(values)
    return out


@torch.no_grad()
def dense_states(
    model: nn.Module, blocks: torch.Tensor, starts: Sequence[int], batch_size: int = 8
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """One pass of the dense model: the hidden states entering each layer in ``starts`` and the last-layer
    representation (after the final norm), each ``[n, seq, d]`` on the CPU."""
    adapter = get_adapter(model)
    layers = adapter.layers()
    entries: dict[int, list[torch.Tensor]] = {int(s): [] for s in starts}

    def hook(i: int):
        def fn(module, args, kwargs):
            entries[i].append((args[0] if args else kwargs["hidden_states"]).detach().cpu())

        return fn

    handles = [layers[i].register_forward_pre_hook(hook(i), with_kwargs=True) for i in entries]
    device = next(model.parameters()).device
    finals = []
    try:
        for b in range(0, blocks.shape[0], batch_size):
            out = adapter.base()(input_ids=blocks[b : b + batch_size].to(device), use_cache=False)
            finals.append(out.last_hidden_state.detach().cpu())
    finally:
        for h in handles:
            h.remove()
    return {i: torch.cat(v) for i, v in entries.items()}, torch.cat(finals)


@torch.no_grad()
def final_states(
    model: nn.Module,
    layers: list[nn.Module],
    blocks: torch.Tensor,
    per_layer: dict[str, list] | None = None,
    start: int = 0,
    entry: torch.Tensor | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """Last-layer representation (after the final norm) of ``model`` with decoder stack ``layers``.

    With ``start > 0`` layers below ``start`` are not run: ``entry`` (``[n, seq, d]``, the hidden states
    entering layer ``start``, from :func:`dense_states`) takes their place, which is exact when those layers
    are the dense model's own. ``per_layer`` is the per-layer config of ``layers``.
    """
    per_layer = per_layer or {}
    run = list(layers)
    stand_in = _Entry()
    if start > 0:
        if entry is None:
            raise ValueError("start > 0 needs the entry hidden states")
        run[:start] = [stand_in] + [_Pass() for _ in range(start - 1)]
    device = next(model.parameters()).device
    base = get_adapter(model).base()
    outs = []
    with _installed(model, run, per_layer):
        for b in range(0, blocks.shape[0], batch_size):
            if start > 0:
                stand_in.value = entry[b : b + batch_size].to(device)
            out = base(input_ids=blocks[b : b + batch_size].to(device), use_cache=False)
            outs.append(out.last_hidden_state.detach().cpu())
    return torch.cat(outs)
