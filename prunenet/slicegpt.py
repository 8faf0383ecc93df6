"""SliceGPT baseline (Ashkboos et al., ICLR 2024): delete rows/columns after a PCA rotation.

Written from the paper's description:

1. *Computational invariance.* Every norm that reads the residual stream (both per-layer
   norms and the final norm) becomes a scale-free RMSNorm ``x / sqrt(sum(x^2)/d + eps)``
   with ``d`` the *original* hidden size. Its scale (and a LayerNorm's shift) is folded
   into the input columns (and biases) of the linear layers that read it. For LayerNorm
   models (OPT, Phi) the residual stream is made mean-free first by centering the
   embedding rows (token and learned position embeddings) and the rows of every
   stream-writing weight (out_proj/fc2/dense) and their biases, so LayerNorm == RMSNorm
   on the stream (with the LayerNorm's own eps). Tied embeddings/LM heads are untied
   (SmolLM2, OPT), because the embedding and head are rotated differently afterwards.
   OPT's final LayerNorm shift is folded into a new LM-head bias.
2. *Rotation and deletion.* Layer by layer, on calibration activations, the residual
   signal at each point the stream is read is decomposed by PCA (eigenvectors of
   ``sum X^T X`` in float64 with ``damping * mean(diag)`` added to the diagonal, in
   descending eigenvalue order; padded tokens masked). Readers of the stream get their
   input columns rotated by ``Q``, writers get their output rows rotated by ``Q^T``, and
   the trailing ``d - d'`` principal directions are deleted, ``d' = sliced_dim(d, r)``.
   Residual connections get a ``d' x d'`` shortcut ``Q_l^T Q_{l+1}`` (an ``nn.Linear``
   without bias, so parameter and FLOP counts include it): two per sequential block
   (LLaMA/OPT: attention residual and MLP residual), one per parallel block (Phi).
   The token (and position) embeddings are rotated/sliced with the first ``Q``; the LM
   head is rotated and reads ``d'`` dims but still writes the full vocabulary.

Each step uses the already-sliced earlier layers, so the PCA sees the activations the
sliced model will really produce (as in the paper). The PCA signal is the residual
stream entering each norm (not the normalized signal).

The sliced model keeps its HF class (``model(input_ids, attention_mask=...)``,
``generate`` and lm-eval work); decoder layers are replaced by :class:`SlicedSequentialLayer`
/ :class:`SlicedParallelLayer`, which wrap the original attention/MLP submodules.
Checkpoints: :func:`save_sliced` / :func:`load_sliced` (config marker ``prunenet_slicegpt``).

CPU defaults for calibration are 32 blocks x 256 tokens (SliceGPT uses 1024 x 2048 on GPUs).

Supported ``model_type``: llama, mistral, qwen2 (pre-RMSNorm, gate/up/down; q/k/v biases
allowed), opt (pre-LayerNorm; OPT-350m's project_in/out and post-LN are refused), phi
(Phi-2 parallel block). Anything else raises :class:`PruneNetError` listing these.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapters import ADAPTERS
from .artifacts import atomic_dir, write_json
from .errors import PruneNetError

MARKER = "prunenet_slicegpt"
DEFAULT_N_SAMPLES = 32
DEFAULT_SEQ_LEN = 256
WEIGHTS_FILE = "model.safetensors"

LLAMA_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED = LLAMA_TYPES + ("opt", "phi")


# ----------------------------------------------------------------------------- modules


class RMSN(nn.Module):
    """Scale-free RMSNorm whose mean runs over the *original* width ``mean_dim``.

    ``x * rsqrt(sum(x^2) / mean_dim + eps)``: invariant to rotations of ``x``, and after
    deleting low-variance directions it still normalizes by the original width, as the
    unsliced norm did. No parameters.
    """

    def __init__(self, mean_dim: int, eps: float):
        super().__init__()
        self.mean_dim = int(mean_dim)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x.float() if dtype in (torch.float16, torch.bfloat16) else x
        var = xf.pow(2).sum(-1, keepdim=True) / self.mean_dim
        return (xf * torch.rsqrt(var + self.eps)).to(dtype)

    def extra_repr(self) -> str:
        return f"mean_dim={self.mean_dim}, eps={self.eps}"


class OPTMLP(nn.Module):
    """OPT's fc1 -> activation -> fc2, gathered into one module (OPT keeps them on the layer)."""

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear, act, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2, self.act, self.dropout = fc1, fc2, act, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.fc1(x)))
        return nn.functional.dropout(x, p=self.dropout, training=self.training)


def _attn_kwargs(kw: dict) -> dict:
    """Keyword arguments for the wrapped HF attention: drop Nones, but always pass the mask."""
    out = {k: v for k, v in kw.items() if v is not None}
    out["attention_mask"] = kw.get("attention_mask")
    return out


class SlicedSequentialLayer(nn.Module):
    """Pre-norm block ``h = S_a h + attn(norm(h)); h = S_m h + mlp(norm(h))`` (LLaMA, OPT).

    ``attn_shortcut``/``mlp_shortcut`` are the SliceGPT residual matrices (``nn.Linear``,
    no bias) mapping between the rotated, sliced bases before and after each sub-block.
    """

    def __init__(self, self_attn: nn.Module, mlp: nn.Module, input_norm: RMSN, post_attention_norm: RMSN,
                 attn_shortcut: nn.Linear, mlp_shortcut: nn.Linear, attn_dropout: float = 0.0):
        super().__init__()
        self.self_attn = self_attn
        self.mlp = mlp
        self.input_layernorm = input_norm
        self.post_attention_layernorm = post_attention_norm
        self.attn_shortcut = attn_shortcut
        self.mlp_shortcut = mlp_shortcut
        self.attn_dropout = attn_dropout

    def attn_part(self, hidden_states, **kw):
        out = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **_attn_kwargs(kw))
        out = out[0] if isinstance(out, tuple) else out
        out = nn.functional.dropout(out, p=self.attn_dropout, training=self.training)
        return self.attn_shortcut(hidden_states) + out

    def mlp_part(self, hidden_states):
        return self.mlp_shortcut(hidden_states) + self.mlp(self.post_attention_layernorm(hidden_states))

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, position_embeddings=None, **kwargs):
        h = self.attn_part(hidden_states, attention_mask=attention_mask, position_ids=position_ids,
                           past_key_values=past_key_values, position_embeddings=position_embeddings, **kwargs)
        return self.mlp_part(h)


class SlicedParallelLayer(nn.Module):
    """Phi-2 parallel block ``h = S h + attn(norm(h)) + mlp(norm(h))`` with one shortcut."""

    def __init__(self, self_attn: nn.Module, mlp: nn.Module, input_norm: RMSN, shortcut: nn.Linear,
                 resid_dropout: float = 0.0):
        super().__init__()
        self.self_attn = self_attn
        self.mlp = mlp
        self.input_layernorm = input_norm
        self.shortcut = shortcut
        self.resid_dropout = resid_dropout

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False, position_embeddings=None, **kwargs):
        x = self.input_layernorm(hidden_states)
        out = self.self_attn(hidden_states=x, **_attn_kwargs(dict(
            attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values,
            position_embeddings=position_embeddings, **kwargs)))
        out = out[0] if isinstance(out, tuple) else out
        drop = lambda t: nn.functional.dropout(t, p=self.resid_dropout, training=self.training)  # noqa: E731
        return self.shortcut(hidden_states) + drop(out) + drop(self.mlp(x))


# ------------------------------------------------------------------- architecture glue


def _family(model: nn.Module) -> str:
    mt = getattr(getattr(model, "config", None), "model_type", None)
    if mt in LLAMA_TYPES:
        return "llama"
    if mt in ("opt", "phi"):
        if mt == "opt":
            cfg = model.config
            if getattr(cfg, "word_embed_proj_dim", cfg.hidden_size) != cfg.hidden_size:
                raise PruneNetError("OPT models with project_in/project_out (e.g. opt-350m) are not supported by SliceGPT here")
            if not getattr(cfg, "do_layer_norm_before", True):
                raise PruneNetError("post-LayerNorm OPT (do_layer_norm_before=False, e.g. opt-350m) is not supported by SliceGPT")
        return mt
    raise PruneNetError(f"SliceGPT does not support architecture {mt!r}: supported model_types are {', '.join(SUPPORTED)}")


def _base(model: nn.Module) -> nn.Module:
    """The module holding embeddings and the layer list."""
    return model.model.decoder if _family(model) == "opt" else model.model


def _layers(model: nn.Module) -> nn.ModuleList:
    return _base(model).layers


def _final_norm_name(family: str) -> str:
    return {"llama": "norm", "opt": "final_layer_norm", "phi": "final_layernorm"}[family]


def _embeddings(model: nn.Module) -> list[nn.Embedding]:
    base = _base(model)
    embs = [base.embed_tokens]
    if _family(model) == "opt":
        embs.append(base.embed_positions)
    return embs


def _layer_parts(family: str, layer: nn.Module) -> dict[str, Any]:
    """Norms, stream readers and writers of one (HF or sliced) decoder layer."""
    attn = layer.self_attn
    if family == "llama":
        mlp = layer.mlp
        return dict(norms=[layer.input_layernorm, layer.post_attention_layernorm],
                    attn_in=[attn.q_proj, attn.k_proj, attn.v_proj], attn_out=attn.o_proj,
                    mlp_in=[mlp.gate_proj, mlp.up_proj], mlp_out=mlp.down_proj)
    if family == "opt":
        mlp = layer.mlp if isinstance(layer, SlicedSequentialLayer) else layer
        norms = ([layer.input_layernorm, layer.post_attention_layernorm] if isinstance(layer, SlicedSequentialLayer)
                 else [layer.self_attn_layer_norm, layer.final_layer_norm])
        return dict(norms=norms, attn_in=[attn.q_proj, attn.k_proj, attn.v_proj], attn_out=attn.out_proj,
                    mlp_in=[mlp.fc1], mlp_out=mlp.fc2)
    # phi: one norm feeds attention and MLP
    return dict(norms=[layer.input_layernorm], attn_in=[attn.q_proj, attn.k_proj, attn.v_proj],
                attn_out=attn.dense, mlp_in=[layer.mlp.fc1], mlp_out=layer.mlp.fc2)


def _norm_eps(norm: nn.Module) -> float:
    for attr in ("variance_epsilon", "eps"):
        if hasattr(norm, attr):
            return float(getattr(norm, attr))
    raise PruneNetError(f"cannot read eps of norm {type(norm).__name__}")


# ------------------------------------------------------------------ weight surgery


def _set_weight(mod: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None, keep_bias: bool = True) -> None:
    """Replace a Linear/Embedding's parameters (shapes may change) and its size attributes."""
    mod.weight = nn.Parameter(weight.contiguous(), requires_grad=mod.weight.requires_grad)
    if isinstance(mod, nn.Linear):
        mod.out_features, mod.in_features = weight.shape
        if bias is not None:
            mod.bias = nn.Parameter(bias.contiguous())
        elif not keep_bias:
            mod.bias = None
    else:  # embedding
        mod.num_embeddings, mod.embedding_dim = weight.shape


def _cdt(t: torch.Tensor) -> torch.dtype:
    """Compute dtype for rotations: float64 for float64 tensors, else float32 (exact enough, 2-4x cheaper)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _rot(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``x @ q`` computed in :func:`_cdt` precision, returned in ``x``'s dtype."""
    c = _cdt(x)
    return (x.to(c) @ q.to(device=x.device, dtype=c)).to(x.dtype)


def _rotate_in(lin: nn.Linear, q: torch.Tensor) -> None:
    """Reader: ``x W^T`` with ``x = x~ Q^T`` -> weight ``W Q`` (q is d x d', float64)."""
    _set_weight(lin, _rot(lin.weight, q))


def _rotate_out(lin: nn.Module, q: torch.Tensor) -> None:
    """Writer (Linear, or Embedding rows): output ``y`` -> ``y Q``."""
    if isinstance(lin, nn.Embedding):
        _set_weight(lin, _rot(lin.weight, q))
        return
    bias = None if lin.bias is None else _rot(lin.bias, q)
    _set_weight(lin, _rot(lin.weight.T, q).T, bias)


def _untie(model: nn.Module) -> bool:
    """Give the LM head its own weight tensor; returns whether it had been tied."""
    head, emb = model.lm_head, model.get_input_embeddings()
    tied = head.weight is emb.weight or head.weight.data_ptr() == emb.weight.data_ptr()
    if tied:
        head.weight = nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    return tied


@torch.no_grad()
def fuse_norms(model: nn.Module) -> nn.Module:
    """Make ``model`` computationally invariant, in place (same function, same HF classes).

    Afterwards every stream norm is a scale-free :class:`RMSN`; LayerNorm models have a
    mean-free residual stream; the LM head is untied. Logits are unchanged (up to
    rounding). Idempotent.
    """
    family = _family(model)
    if getattr(model, "_slicegpt_fused", False):
        return model
    model._slicegpt_untied = _untie(model)
    base = _base(model)
    d = model.config.hidden_size
    layers = _layers(model)
    if family in ("opt", "phi"):
        # centre the residual stream: embeddings and every writer
        for emb in _embeddings(model):
            emb.weight.sub_(emb.weight.mean(-1, keepdim=True))
        for layer in layers:
            p = _layer_parts(family, layer)
            for w in (p["attn_out"], p["mlp_out"]):
                w.weight.sub_(w.weight.mean(0, keepdim=True))
                if w.bias is not None:
                    w.bias.sub_(w.bias.mean())

    def fold(norm: nn.Module, readers: list[nn.Linear]) -> RMSN:
        gamma = getattr(norm, "weight", None)
        beta = getattr(norm, "bias", None)
        for lin in readers:
            c = _cdt(lin.weight)
            w = lin.weight.to(c)
            if beta is not None:
                shift = w @ beta.to(c)
                if lin.bias is None:
                    lin.bias = nn.Parameter(shift.to(lin.weight.dtype))
                else:
                    lin.bias.add_(shift.to(lin.bias.dtype))
            if gamma is not None:
                w = w * gamma.to(c)[None, :]
            lin.weight.copy_(w.to(lin.weight.dtype))
        return RMSN(d, _norm_eps(norm))

    for layer in layers:
        p = _layer_parts(family, layer)
        if family == "llama":
            layer.input_layernorm = fold(layer.input_layernorm, p["attn_in"])
            layer.post_attention_layernorm = fold(layer.post_attention_layernorm, p["mlp_in"])
        elif family == "opt":
            layer.self_attn_layer_norm = fold(layer.self_attn_layer_norm, p["attn_in"])
            layer.final_layer_norm = fold(layer.final_layer_norm, p["mlp_in"])
        else:
            layer.input_layernorm = fold(layer.input_layernorm, p["attn_in"] + p["mlp_in"])
    name = _final_norm_name(family)
    setattr(base, name, fold(getattr(base, name), [model.lm_head]))
    model._slicegpt_fused = True
    return model


def _to_sliced_layer(family: str, layer: nn.Module, d_in: int, d_mid: int, d_out: int, config) -> nn.Module:
    """Wrap a fused HF layer into a sliced-layer module with identity-like placeholder shortcuts."""
    dtype = layer.self_attn.q_proj.weight.dtype
    if family == "phi":
        return SlicedParallelLayer(layer.self_attn, layer.mlp, layer.input_layernorm,
                                   nn.Linear(d_in, d_out, bias=False, dtype=dtype),
                                   float(getattr(layer.resid_dropout, "p", 0.0)))
    if family == "llama":
        mlp, n1, n2, drop = layer.mlp, layer.input_layernorm, layer.post_attention_layernorm, 0.0
    else:
        mlp = OPTMLP(layer.fc1, layer.fc2, layer.activation_fn, layer.dropout)
        n1, n2, drop = layer.self_attn_layer_norm, layer.final_layer_norm, layer.dropout
    return SlicedSequentialLayer(layer.self_attn, mlp, n1, n2,
                                 nn.Linear(d_in, d_mid, bias=False, dtype=dtype),
                                 nn.Linear(d_mid, d_out, bias=False, dtype=dtype), drop)


# --------------------------------------------------------------------------- public API


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


def calibration_blocks(tokenizer, dataset: str = "wikitext2", data_dir: str | os.PathLike | None = None,
                       n_samples: int = DEFAULT_N_SAMPLES, seq_len: int = DEFAULT_SEQ_LEN, seed: int = 0) -> torch.Tensor:
    """``n_samples`` random windows of ``seq_len`` tokens from a calibration corpus (seeded).

    The corpus is the train split (hub) or, offline, the local train split if there is
    one (Alpaca) else the validation split (WikiText-2, PTB): no test text is ever used.
    """
    from .data import LOCAL_FILES, check_name, load_texts, token_blocks

    check_name(dataset)
    if n_samples < 1 or seq_len < 2:
        raise PruneNetError(f"calibration needs n_samples >= 1 and seq_len >= 2, got {n_samples} x {seq_len}")
    split = "train" if data_dir is None or "train" in LOCAL_FILES[dataset] else "validation"
    texts = load_texts(dataset, split, data_dir)
    stream = token_blocks(tokenizer, texts, seq_len).reshape(-1)
    gen = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, stream.numel() - seq_len + 1, (n_samples,), generator=gen)
    return torch.stack([stream[s: s + seq_len] for s in starts.tolist()])


class _Caught(Exception):
    pass


def _pca(xs: list[torch.Tensor], masks: list[torch.Tensor | None], damping: float) -> torch.Tensor:
    """Eigenvectors of ``sum X^T X`` (float64, damped) as columns, eigenvalues descending."""
    h = None
    for x, m in zip(xs, masks):
        x = x.reshape(-1, x.shape[-1]).double()
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


@torch.no_grad()
def slice_model(model: nn.Module, tokenizer, ratio: float, calib: torch.Tensor, damping: float = 0.01,
                round_to: int = 8, device: str = "cpu", progress: bool = True,
                calib_mask: torch.Tensor | None = None, batch_size: int = 8) -> nn.Module:
    """Slice ``model`` in place with SliceGPT and return it.

    ``calib`` is an ``(n, seq_len)`` LongTensor of calibration token ids (see
    :func:`calibration_blocks`); ``calib_mask`` (same shape, 1 = real token) masks padding
    out of the attention and the PCA. Layers are moved to ``device`` one at a time; the
    model ends on the device it started on. ``tokenizer`` is unused (kept for a uniform
    pruning-method signature).
    """
    family = _family(model)
    cfg = model.config
    d = cfg.hidden_size
    kept = sliced_dim(d, ratio, round_to)
    if not isinstance(calib, torch.Tensor) or calib.dim() != 2 or calib.numel() == 0 or calib.dtype.is_floating_point:
        raise PruneNetError("calibration data must be a non-empty (n_samples, seq_len) tensor of token ids")
    if calib_mask is not None and calib_mask.shape != calib.shape:
        raise PruneNetError(f"calib_mask shape {tuple(calib_mask.shape)} differs from calib {tuple(calib.shape)}")
    if getattr(cfg, MARKER, None):
        raise PruneNetError("model is already sliced with SliceGPT: start from the dense model")
    if int(calib.max()) >= model.get_input_embeddings().num_embeddings or int(calib.min()) < 0:
        raise PruneNetError("calibration token ids are outside the model's vocabulary: use the model's own tokenizer")
    was_training = model.training
    model.eval()
    home = next(model.parameters()).device
    fuse_norms(model)
    base, layers = _base(model), _layers(model)
    n_layers = len(layers)

    # 1) capture the inputs (and kwargs) of layer 0 for every calibration batch
    all_layers = list(layers)
    base.layers = nn.ModuleList(all_layers[:1])
    model.to(device)
    inputs, kwargs_list, masks = [], [], []

    def catch(_mod, args, kwargs):
        hs = args[0] if args else kwargs.pop("hidden_states")
        kwargs.pop("hidden_states", None)
        inputs.append(hs)
        kw = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "use_cache")}
        kwargs_list.append(kw)
        raise _Caught

    handle = all_layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for i in range(0, calib.shape[0], batch_size):
            ids = calib[i: i + batch_size].to(device)
            am = None if calib_mask is None else calib_mask[i: i + batch_size].to(device)
            masks.append(am)
            try:
                model(input_ids=ids, attention_mask=am, use_cache=False)
            except _Caught:
                pass
    finally:
        handle.remove()
        all_layers[0].to(home)
        base.layers = nn.ModuleList(all_layers)
        model.to(home)

    # 2) rotate/slice the embeddings with the PCA of the stream they write
    q = _pca(inputs, masks, damping)[:, :kept].to(device)
    for emb in _embeddings(model):
        _rotate_out(emb, q.to(emb.weight.device))
    inputs = [_rot(x, q) for x in inputs]

    from tqdm.auto import tqdm

    new_layers = []
    for idx in tqdm(range(n_layers), desc=f"SliceGPT r={ratio}", disable=not progress, unit="layer"):
        layer = _to_sliced_layer(family, all_layers[idx], kept, d, d, cfg).to(device)
        p = _layer_parts(family, layer)
        # readers of the incoming stream
        for lin in p["attn_in"] + (p["mlp_in"] if family == "phi" else []):
            _rotate_in(lin, q)
        q_in = q
        if family == "phi":
            layer.shortcut.weight.copy_(q_in.to(layer.shortcut.weight.dtype))
            outs = [layer(x, **kw) for x, kw in zip(inputs, kwargs_list)]
            q = _pca(outs, masks, damping)[:, :kept].to(device)
            layer.shortcut.weight = nn.Parameter((q.T @ q_in).to(layer.shortcut.weight.dtype))
            layer.shortcut.out_features = kept
            _rotate_out(p["attn_out"], q)
            _rotate_out(p["mlp_out"], q)
        else:
            layer.attn_shortcut.weight.copy_(q_in.to(layer.attn_shortcut.weight.dtype))
            mids = [layer.attn_part(x, **kw) for x, kw in zip(inputs, kwargs_list)]
            q_mid = _pca(mids, masks, damping)[:, :kept].to(device)
            layer.attn_shortcut.weight = nn.Parameter((q_mid.T @ q_in).to(layer.attn_shortcut.weight.dtype))
            layer.attn_shortcut.out_features = kept
            _rotate_out(p["attn_out"], q_mid)
            mids = [_rot(m, q_mid) for m in mids]
            layer.mlp_shortcut = nn.Linear(kept, d, bias=False, dtype=layer.mlp_shortcut.weight.dtype, device=device)
            for lin in p["mlp_in"]:
                _rotate_in(lin, q_mid)
            layer.mlp_shortcut.weight.copy_(q_mid.to(layer.mlp_shortcut.weight.dtype))
            outs = [layer.mlp_part(m) for m in mids]
            del mids
            q = _pca(outs, masks, damping)[:, :kept].to(device)
            layer.mlp_shortcut.weight = nn.Parameter((q.T @ q_mid).to(layer.mlp_shortcut.weight.dtype))
            layer.mlp_shortcut.out_features = kept
            _rotate_out(p["mlp_out"], q)
        inputs = [_rot(o, q) for o in outs]
        del outs
        new_layers.append(layer.to(home))
        all_layers[idx] = None  # free the HF wrapper
    base.layers = nn.ModuleList(new_layers)
    _rotate_in(model.lm_head, q.to(model.lm_head.weight.device))
    _write_marker(model, family, ratio, round_to, kept, damping, calib.shape)
    model.to(home)
    model.train(was_training)
    return model


def _write_marker(model, family, ratio, round_to, kept, damping, calib_shape) -> None:
    layers = _layers(model)
    d = model.config.hidden_size
    spec = {
        "family": family,
        "hidden_size": d,
        "ratio": float(ratio),
        "round_to": int(round_to),
        "damping": float(damping),
        "calibration": list(calib_shape),
        "embedding_dim": int(kept),
        "layer_dims": [
            [layer.shortcut.in_features, layer.shortcut.out_features] if family == "phi"
            else [layer.attn_shortcut.in_features, layer.attn_shortcut.out_features, layer.mlp_shortcut.out_features]
            for layer in layers
        ],
        "norm_eps": [[n.eps for n in _layer_parts(family, layer)["norms"]] for layer in layers],
        "final_norm_eps": getattr(_base(model), _final_norm_name(family)).eps,
        "lm_head_bias": model.lm_head.bias is not None,
        "untied_lm_head": bool(getattr(model, "_slicegpt_untied", False)),  # head was tied to the embeddings
        "qkv_bias": _layer_parts(family, layers[0])["attn_in"][0].bias is not None,
        "mlp_in_bias": _layer_parts(family, layers[0])["mlp_in"][0].bias is not None,
    }
    setattr(model.config, MARKER, spec)


# --------------------------------------------------------------------------- save / load


def is_sliced_config(config) -> bool:
    """True for a config written by :func:`save_sliced`."""
    return bool(getattr(config, MARKER, None))


def save_sliced(model: nn.Module, tokenizer, out_dir: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write a sliced checkpoint atomically: config.json (with the marker), safetensors, tokenizer, meta."""
    from safetensors.torch import save_file

    if not is_sliced_config(model.config):
        raise PruneNetError("save_sliced needs a model produced by slice_model")
    out = Path(out_dir)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_dir(out) as tmp:
        model.config.save_pretrained(str(tmp))
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        write_json(tmp / "prunenet_meta.json", meta or {})
    return out


def _resize(mod: nn.Module, shape: tuple[int, ...], bias: bool | None = None) -> None:
    """Give a Linear/Embedding uninitialised parameters of ``shape``; ``bias`` None keeps its bias or not."""
    w = mod.weight
    _set_weight(mod, torch.empty(shape, dtype=w.dtype, device=w.device))
    if isinstance(mod, nn.Linear):
        want = (mod.bias is not None) if bias is None else bool(bias)
        mod.bias = nn.Parameter(torch.empty(shape[0], dtype=w.dtype, device=w.device)) if want else None


def build_sliced_structure(model: nn.Module, spec: dict) -> nn.Module:
    """Turn a fresh dense HF model into an (uninitialised) sliced model described by ``spec``."""
    family = _family(model)
    if spec.get("family") != family:
        raise PruneNetError(f"sliced checkpoint is for {spec.get('family')!r} but the config builds {family!r}")
    fuse_norms(model)  # replaces norms by RMSN, unties; weights are overwritten by the checkpoint anyway
    base, layers = _base(model), _layers(model)
    kept = spec["embedding_dim"]
    for emb in _embeddings(model):
        _resize(emb, (emb.weight.shape[0], kept))
    new = []
    for i, (layer, dims) in enumerate(zip(layers, spec["layer_dims"])):
        d_in, d_out = dims[0], dims[-1]
        d_mid = dims[1] if family != "phi" else d_out
        sl = _to_sliced_layer(family, layer, d_in, d_mid, d_out, model.config)
        p = _layer_parts(family, sl)
        for lin in p["attn_in"]:
            _resize(lin, (lin.out_features, d_in), spec.get("qkv_bias"))
        _resize(p["attn_out"], (d_mid, p["attn_out"].in_features))
        for lin in p["mlp_in"]:
            _resize(lin, (lin.out_features, d_in if family == "phi" else d_mid), spec.get("mlp_in_bias"))
        _resize(p["mlp_out"], (d_out, p["mlp_out"].in_features))
        for norm, eps in zip(p["norms"], spec["norm_eps"][i]):
            norm.eps = eps
        new.append(sl)
    base.layers = nn.ModuleList(new)
    getattr(base, _final_norm_name(family)).eps = spec["final_norm_eps"]
    head = model.lm_head
    _resize(head, (head.out_features, spec["layer_dims"][-1][-1]), spec.get("lm_head_bias"))
    setattr(model.config, MARKER, spec)
    return model


def load_sliced(path: str | os.PathLike, config, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Rebuild a sliced model from ``config`` (with the marker) and load ``path``'s weights."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    path = Path(path)
    spec = getattr(config, MARKER, None)
    if not spec:
        raise PruneNetError(f"{path} is not a SliceGPT checkpoint (no {MARKER} in config.json)")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise PruneNetError(f"SliceGPT checkpoint {path} has no safetensors weights: delete it and rerun slicing")
    config.tie_word_embeddings = False
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    build_sliced_structure(model, spec)
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise PruneNetError(f"SliceGPT checkpoint {path} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
