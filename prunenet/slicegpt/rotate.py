"""Step 2 of SliceGPT: rotate each point where the stream is read to its principal axes, delete the weakest.

The loop runs layer by layer on calibration activations produced by the *already sliced*
earlier layers, so each PCA sees what the sliced model will really compute (as in the paper).
Every operation here (float64 PCA, float32/float64 rotations, canonical eigenvector signs,
the order of the loop) is part of the output: changing any of them changes the sliced weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..arch import ModelAdapter
from ..errors import PruneNetError
from ..surgery import set_weight
from .checkpoint import MARKER
from .fuse import compute_dtype, fuse_norms, slicegpt_adapter
from .layers import LayerParts, SlicedParallelLayer, SlicedSequentialLayer, layer_parts, to_sliced_layer


def sliced_dim(d: int, ratio: float, round_to: int = 8) -> int:
    """Kept width ``floor((1 - ratio) * d / round_to) * round_to``; one-line error if it is <= 0."""
    if not isinstance(ratio, (int, float)) or not (0.0 <= float(ratio) < 1.0) or math.isnan(ratio):
        raise PruneNetError(f"slicing ratio must be in [0, 1), got {ratio!r}")
    if not isinstance(round_to, int) or round_to < 1:
        raise PruneNetError(f"round_to must be a positive integer, got {round_to!r}")
    kept = int(math.floor((1.0 - float(ratio)) * d / round_to + 1e-9)) * round_to
    kept = min(kept, d)
    if kept <= 0:
        raise PruneNetError(
            f"slicing ratio {ratio} leaves no dimensions of hidden size {d} (round_to={round_to}): use a smaller ratio"
        )
    return kept


def _rot(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``x @ q`` computed in :func:`compute_dtype` precision, returned in ``x``'s dtype."""
    c = compute_dtype(x)
    return (x.to(c) @ q.to(device=x.device, dtype=c)).to(x.dtype)


def _rotate_in(lin: nn.Linear, q: torch.Tensor) -> None:
    """Reader: ``x W^T`` with ``x = x~ Q^T`` -> weight ``W Q`` (q is d x d', float64)."""
    set_weight(lin, _rot(lin.weight, q))


def _rotate_out(lin: nn.Module, q: torch.Tensor) -> None:
    """Writer (Linear, or Embedding rows): output ``y`` -> ``y Q``."""
    if isinstance(lin, nn.Embedding):
        set_weight(lin, _rot(lin.weight, q))
        return
    bias = None if lin.bias is None else _rot(lin.bias, q)
    set_weight(lin, _rot(lin.weight.T, q).T, bias)


def _pca(xs: list[torch.Tensor], masks: list[torch.Tensor | None], damping: float, device: str) -> torch.Tensor:
    """Eigenvectors of ``sum X^T X`` (float64, damped) as columns, eigenvalues descending; each batch's ``X^T X`` on
    ``device`` (the batches may be kept in host memory)."""
    h = None
    for x, m in zip(xs, masks):
        x = x.to(device).reshape(-1, x.shape[-1]).double()
        if m is not None:
            x = x[m.reshape(-1).to(x.device).bool()]
        xtx = x.T @ x
        h = xtx if h is None else h + xtx
    h = h.cpu()
    h.diagonal().add_(damping * h.diagonal().mean())
    # a single thread: multi-threaded LAPACK eigh is ~100x slower on busy shared CPUs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, vecs = torch.linalg.eigh(h)
    finally:
        torch.set_num_threads(threads)
    vecs = vecs.flip(-1)
    # canonical signs (largest-magnitude entry of each eigenvector positive): stable under rounding noise
    idx = vecs.abs().argmax(0)
    return vecs * torch.sign(vecs[idx, torch.arange(vecs.shape[1])])[None, :]


@dataclass
class _Calibration:
    """What every PCA of one slicing run shares: the layer kwargs and padding masks per batch, and the settings.

    The calibration activations (every batch's layer inputs and outputs) are kept on ``home``, the device the
    model waits on, and each batch visits ``device`` only while it is computed, as the release's ``get_signals``
    does: at LLaMA-2-7B's 128 × 2048 calibration tokens they take 2 × 4.3 GB in bfloat16 (8.6 GB in float32),
    which on a GPU would sit beside the layer. Where both are the CPU nothing moves."""

    kwargs: list[dict]
    masks: list[torch.Tensor | None]
    damping: float
    kept: int
    device: str
    home: torch.device

    def basis(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The ``kept`` leading principal directions (``d x kept``) of the stream ``xs``."""
        return _pca(xs, self.masks, self.damping, self.device)[:, : self.kept].to(self.device)

    def map(self, fn: Callable[[torch.Tensor, dict], torch.Tensor], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """``fn(batch, its layer kwargs)`` for every batch, computed on ``device``, kept on ``home``."""
        return [fn(x.to(self.device), kw).to(self.home) for x, kw in zip(xs, self.kwargs, strict=True)]


class _Caught(Exception):
    """Raised by the hook on layer 0 to stop the forward once its inputs are captured."""


def _check_inputs(model: nn.Module, calib: torch.Tensor, calib_mask: torch.Tensor | None) -> None:
    if not isinstance(calib, torch.Tensor) or calib.dim() != 2 or calib.numel() == 0 or calib.dtype.is_floating_point:
        raise PruneNetError("calibration data must be a non-empty (n_samples, seq_len) tensor of token ids")
    if calib_mask is not None and calib_mask.shape != calib.shape:
        raise PruneNetError(f"calib_mask shape {tuple(calib_mask.shape)} differs from calib {tuple(calib.shape)}")
    if getattr(model.config, MARKER, None):
        raise PruneNetError("model is already sliced with SliceGPT: start from the dense model")
    if int(calib.max()) >= model.get_input_embeddings().num_embeddings or int(calib.min()) < 0:
        raise PruneNetError("calibration token ids are outside the model's vocabulary: use the model's own tokenizer")


def _capture_layer0_inputs(
    model: nn.Module,
    adapter: ModelAdapter,
    calib: torch.Tensor,
    calib_mask: torch.Tensor | None,
    device: str,
    batch_size: int,
    home: torch.device,
) -> tuple[list[torch.Tensor], list[dict], list[torch.Tensor | None]]:
    """Run the model up to layer 0 on each calibration batch: (hidden states, layer kwargs, masks) per batch.

    Only the first layer sits in the layer list meanwhile, so the rest never moves to ``device``.
    """
    all_layers = list(adapter.layers())
    adapter.set_layers(all_layers[:1])
    model.to(device)
    inputs, kwargs_list, masks = [], [], []

    def catch(_mod, args, kwargs):
        hs = args[0] if args else kwargs.pop("hidden_states")
        kwargs.pop("hidden_states", None)
        inputs.append(hs.to(home))  # kept where the model waits (the host, for a GPU run): _Calibration
        kw = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "use_cache")}
        kwargs_list.append(kw)
        raise _Caught

    handle = all_layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for i in range(0, calib.shape[0], batch_size):
            ids = calib[i : i + batch_size].to(device)
            am = None if calib_mask is None else calib_mask[i : i + batch_size].to(device)
            masks.append(am)
            try:
                model(input_ids=ids, attention_mask=am, use_cache=False)
            except _Caught:
                pass
    finally:
        handle.remove()
        all_layers[0].to(home)
        adapter.set_layers(all_layers)
        model.to(home)
    return inputs, kwargs_list, masks


def _slice_parallel(
    layer: SlicedParallelLayer, p: LayerParts, q: torch.Tensor, inputs: list[torch.Tensor], cal: _Calibration
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One parallel block: the shortcut starts as ``Q_in`` (full width out), becomes ``Q_out^T Q_in``.

    Returns the block's output basis and its (unrotated) outputs.
    """
    q_in = q
    layer.shortcut.weight.copy_(q_in.to(layer.shortcut.weight.dtype))
    outs = cal.map(lambda x, kw: layer(x, **kw), inputs)
    q = cal.basis(outs)
    layer.shortcut.weight = nn.Parameter((q.T @ q_in).to(layer.shortcut.weight.dtype))
    layer.shortcut.out_features = cal.kept
    _rotate_out(p.attn_out, q)
    _rotate_out(p.mlp_out, q)
    return q, outs


def _slice_sequential(
    layer: SlicedSequentialLayer, p: LayerParts, q: torch.Tensor, inputs: list[torch.Tensor], cal: _Calibration, d: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One sequential block: PCA after attention (``Q_mid``), then after the MLP (``Q_out``).

    The MLP shortcut starts as ``Q_mid`` (back to the full width ``d``) so that the MLP part's
    output can be measured before ``Q_out`` is known. Returns ``Q_out`` and the block's outputs.
    """
    q_in = q
    layer.attn_shortcut.weight.copy_(q_in.to(layer.attn_shortcut.weight.dtype))
    mids = cal.map(lambda x, kw: layer.attn_part(x, **kw), inputs)
    q_mid = cal.basis(mids)
    layer.attn_shortcut.weight = nn.Parameter((q_mid.T @ q_in).to(layer.attn_shortcut.weight.dtype))
    layer.attn_shortcut.out_features = cal.kept
    _rotate_out(p.attn_out, q_mid)
    mids = cal.map(lambda m, _: _rot(m, q_mid), mids)
    dtype = layer.mlp_shortcut.weight.dtype
    layer.mlp_shortcut = nn.Linear(cal.kept, d, bias=False, dtype=dtype, device=cal.device)
    for lin in p.mlp_in:
        _rotate_in(lin, q_mid)
    layer.mlp_shortcut.weight.copy_(q_mid.to(layer.mlp_shortcut.weight.dtype))
    outs = cal.map(lambda m, _: layer.mlp_part(m), mids)
    del mids
    q = cal.basis(outs)
    layer.mlp_shortcut.weight = nn.Parameter((q.T @ q_mid).to(layer.mlp_shortcut.weight.dtype))
    layer.mlp_shortcut.out_features = cal.kept
    _rotate_out(p.mlp_out, q)
    return q, outs


def _slice_layers(
    adapter,
    all_layers: list,
    q: torch.Tensor,
    inputs: list,
    cal: _Calibration,
    widths: tuple[int, int],
    devices: tuple,
    progress: bool,
    ratio: float,
) -> tuple[list[nn.Module], torch.Tensor]:
    """Rotate and slice each decoder layer in turn (on ``devices[0]``, back to ``devices[1]``), feeding it the
    previous layer's rotated outputs (``inputs`` is consumed in place); returns the sliced layers and the last
    rotation (for the LM head)."""
    from tqdm.auto import tqdm

    (kept, d), (device, home) = widths, devices
    new_layers = []
    for idx in tqdm(range(len(all_layers)), desc=f"SliceGPT r={ratio}", disable=not progress, unit="layer"):
        layer = to_sliced_layer(adapter, all_layers[idx], kept, d, d).to(device)
        p = layer_parts(adapter, layer)
        # readers of the incoming stream (a parallel block's MLP reads it too)
        for lin in p.attn_in + (p.mlp_in if adapter.parallel_block else []):
            _rotate_in(lin, q)
        if adapter.parallel_block:
            q, outs = _slice_parallel(layer, p, q, inputs, cal)
        else:
            q, outs = _slice_sequential(layer, p, q, inputs, cal, d)
        # in place: the caller's list must not keep layer 0's inputs
        inputs[:] = cal.map(lambda o, _, q=q: _rot(o, q), outs)
        del outs
        new_layers.append(layer.to(home))
        all_layers[idx] = None  # free the HF wrapper
    return new_layers, q


@torch.no_grad()
def slice_model(
    model: nn.Module,
    tokenizer,
    ratio: float,
    calib: torch.Tensor,
    damping: float = 0.01,
    round_to: int = 8,
    device: str = "cpu",
    progress: bool = True,
    calib_mask: torch.Tensor | None = None,
    batch_size: int = 8,
) -> nn.Module:
    """Slice ``model`` in place with SliceGPT and return it.

    ``calib`` is an ``(n, seq_len)`` LongTensor of calibration token ids (see
    :func:`prunenet.data.calibration_blocks`); ``calib_mask`` (same shape, 1 = real token)
    masks padding out of the attention and the PCA. Layers are moved to ``device`` one at a
    time; the model ends on the device it started on. ``tokenizer`` is unused (kept for a
    uniform pruning-method signature).
    """
    adapter = slicegpt_adapter(model)
    d = model.config.hidden_size
    kept = sliced_dim(d, ratio, round_to)
    _check_inputs(model, calib, calib_mask)
    was_training = model.training
    model.eval()
    home = next(model.parameters()).device
    fuse_norms(model)

    # 1) the inputs (and kwargs) of layer 0 for every calibration batch
    inputs, kwargs_list, masks = _capture_layer0_inputs(model, adapter, calib, calib_mask, device, batch_size, home)
    all_layers = list(adapter.layers())
    cal = _Calibration(kwargs_list, masks, damping, kept, device, home)

    # 2) rotate/slice the embeddings with the PCA of the stream they write
    q = cal.basis(inputs)
    for emb in adapter.embeddings():
        _rotate_out(emb, q.to(emb.weight.device))
    inputs = cal.map(lambda x, _: _rot(x, q), inputs)

    new_layers, q = _slice_layers(adapter, all_layers, q, inputs, cal, (kept, d), (device, home), progress, ratio)
    adapter.set_layers(new_layers)
    head = adapter.lm_head()
    _rotate_in(head, q.to(head.weight.device))
    _write_marker(model, adapter, ratio, round_to, kept, damping, calib.shape)
    model.to(home)
    model.train(was_training)
    return model


def _write_marker(
    model: nn.Module,
    adapter: ModelAdapter,
    ratio: float,
    round_to: int,
    kept: int,
    damping: float,
    calib_shape: torch.Size,
) -> None:
    """The config entry :func:`prunenet.slicegpt.checkpoint.build_sliced_structure` rebuilds the shapes from."""
    layers = adapter.layers()
    first = layer_parts(adapter, layers[0])
    spec = {
        "family": adapter.family,
        "hidden_size": model.config.hidden_size,
        "ratio": float(ratio),
        "round_to": int(round_to),
        "damping": float(damping),
        "calibration": list(calib_shape),
        "embedding_dim": int(kept),
        "layer_dims": [
            [layer.shortcut.in_features, layer.shortcut.out_features]
            if isinstance(layer, SlicedParallelLayer)
            else [layer.attn_shortcut.in_features, layer.attn_shortcut.out_features, layer.mlp_shortcut.out_features]
            for layer in layers
        ],
        "norm_eps": [[n.eps for n in layer_parts(adapter, layer).norms] for layer in layers],
        "final_norm_eps": adapter.final_norm_module().eps,
        "lm_head_bias": adapter.lm_head().bias is not None,
        "untied_lm_head": bool(getattr(model, "_slicegpt_untied", False)),  # head was tied to the embeddings
        "qkv_bias": first.attn_in[0].bias is not None,
        "mlp_in_bias": first.mlp_in[0].bias is not None,
    }
    setattr(model.config, MARKER, spec)
