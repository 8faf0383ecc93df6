"""``prunenet export``: a checkpoint as a GGUF file for llama.cpp (f32, f16, q8_0, q4_k_m).

What llama.cpp can run: LLaMA-family checkpoints (``llama``, ``mistral``) with a GPT-2-style BPE tokenizer
(SmolLM2's). Uniform shapes are written as architecture ``llama``; per-layer FFN widths or KV heads as ``deci``,
whose ``feed_forward_length``, ``attention.head_count`` and ``attention.head_count_kv`` llama.cpp reads per layer
(a layer whose FFN is gone gets width 0). Removed layers are simply fewer layers. Refused, in one line and before
any weight loads (:func:`plan`): SliceGPT (its rotated residual needs a shortcut matrix per residual, which no
llama.cpp architecture has), low-rank factors unless ``merge_low_rank`` (multiplied back into dense matrices,
which gives up their saving), other families. Quantized types go through llama.cpp's own quantizer
(``llama_model_quantize`` from llama-cpp-python) from an f32 file; :func:`tensor_types` says which tensors it
had to give another type (k-quants need rows that are multiples of 256, q8_0 of 32).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .artifacts import GGUF_META_KEY, META_FILE, atomic_file
from .errors import PruneNetError

QUANTIZED = {"q8_0": 7, "q4_k_m": 15}  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0 / _Q4_K_M
FAMILIES = ("llama", "mistral")
PRE_TOKENIZER = "smollm"  # llama.cpp's name for SmolLM's split: digits one by one, then GPT-2's regex
SHAPE_KEYS = ("prunenet_intermediate_sizes", "prunenet_kv_heads")


@dataclass(frozen=True)
class Plan:
    """What an export will do, decided from ``config.json`` and ``tokenizer.json`` alone."""

    checkpoint: Path
    type: str
    merge_low_rank: bool


def plan(checkpoint: str | os.PathLike, type_: str, merge_low_rank: bool = False) -> Plan:
    """Refuse what llama.cpp cannot express, in one line, before any weight is read."""
    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise PruneNetError(f"{path} is not a model checkpoint (no config.json): give a checkpoint directory")
    config = json.loads((path / "config.json").read_text())
    if config.get("prunenet_slicegpt"):
        raise PruneNetError(
            "SliceGPT checkpoints cannot be exported: their rotated residual stream needs a shortcut matrix per "
            "residual connection, which no llama.cpp architecture has"
        )
    if config.get("prunenet_low_rank") and not merge_low_rank:
        raise PruneNetError(
            "low-rank (SVD-LLM/ASVD) factors have no llama.cpp tensor: pass --merge-low-rank to multiply them "
            "back into dense matrices (this gives up their parameter saving)"
        )
    if config.get("model_type") not in FAMILIES:
        raise PruneNetError(
            f"GGUF export covers the LLaMA family ({', '.join(FAMILIES)}); {config.get('model_type')!r} is not"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default" or config.get("attention_bias") or config.get("mlp_bias"):
        raise PruneNetError("GGUF export supports plain RoPE without projection biases; this checkpoint has more")
    tok = path / "tokenizer.json"
    model = json.loads(tok.read_text()).get("model", {}) if tok.is_file() else {}
    if model.get("type") != "BPE":
        raise PruneNetError(f"GGUF export needs a GPT-2-style BPE tokenizer.json in {path}")
    if type_ in QUANTIZED:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise PruneNetError(
                f"--type {type_} uses llama.cpp's quantizer: install it with `bash envs/install.sh llamacpp`"
            ) from None
    return Plan(path, type_, merge_low_rank)


def merge_factors(model: nn.Module) -> int:
    """Replace every two-factor linear by the dense ``u @ v`` it applies; returns how many."""
    merged = 0
    for name, mod in list(model.named_modules()):
        if hasattr(mod, "u") and hasattr(mod, "v") and hasattr(mod, "dense_weight"):
            dense = nn.Linear(mod.in_features, mod.out_features, bias=mod.u.bias is not None)
            with torch.no_grad():
                dense.weight.copy_(mod.dense_weight())
                if mod.u.bias is not None:
                    dense.bias.copy_(mod.u.bias)
            model.set_submodule(name, dense)
            merged += 1
    return merged


def _rope_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """HF's q/k rows (each head's rotary halves one after the other) -> llama.cpp's (the halves interleaved)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def layer_shapes(model: nn.Module) -> list[tuple[int, int, int]]:
    """(FFN width, query heads, KV heads) of each decoder layer as written: a removed FFN is one zero row.

    Why not width 0: llama.cpp's ``deci`` skips the rest of a layer whose FFN width is 0, the attention's
    residual add included (Nemotron's FFN-free layers have no attention either); one zero row adds nothing.
    """
    hd = model.config.head_dim
    return [
        (max(m.up_proj.out_features, 1), a.q_proj.out_features // hd, a.k_proj.out_features // hd)
        for m, a in ((layer.mlp, layer.self_attn) for layer in model.model.layers)
    ]


def _ffn(mlp: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gate, up, down weights; a removed FFN (width 0) as one zero row (see :func:`layer_shapes`)."""
    if mlp.up_proj.out_features:
        return mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight
    d = mlp.up_proj.in_features
    return torch.zeros(1, d), torch.zeros(1, d), torch.zeros(d, 1)


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every tensor under its llama.cpp name (``blk.N.*``), q/k rows in llama.cpp's rotary layout."""
    inner, hd = model.model, model.config.head_dim
    out = [("token_embd.weight", inner.embed_tokens.weight)]
    for i, layer in enumerate(inner.layers):
        a, m = layer.self_attn, layer.mlp
        out += [
            (f"blk.{i}.attn_norm.weight", layer.input_layernorm.weight),
            (f"blk.{i}.attn_q.weight", _rope_rows(a.q_proj.weight, a.q_proj.out_features // hd)),
            (f"blk.{i}.attn_k.weight", _rope_rows(a.k_proj.weight, a.k_proj.out_features // hd)),
            (f"blk.{i}.attn_v.weight", a.v_proj.weight),
            (f"blk.{i}.attn_output.weight", a.o_proj.weight),
            (f"blk.{i}.ffn_norm.weight", layer.post_attention_layernorm.weight),
        ]
        gate, up, down = _ffn(m)
        out += [(f"blk.{i}.ffn_gate.weight", gate), (f"blk.{i}.ffn_up.weight", up), (f"blk.{i}.ffn_down.weight", down)]
    out.append(("output_norm.weight", inner.norm.weight))
    if not model.config.tie_word_embeddings:
        out.append(("output.weight", model.lm_head.weight))
    return out


def _hparams(writer, model: nn.Module, arch: str, ftype: int) -> None:

    c = model.config
    shapes = layer_shapes(model)
    ffn, heads, kv = ([s[j] for s in shapes] for j in range(3))
    per_layer = arch == "deci"
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(len(shapes))
    writer.add_feed_forward_length(ffn if per_layer else ffn[0])
    writer.add_head_count(heads if per_layer else heads[0])
    writer.add_head_count_kv(kv if per_layer else kv[0])
    writer.add_key_length(c.head_dim)  # llama.cpp would otherwise derive it from layer 0's head count
    writer.add_value_length(c.head_dim)
    writer.add_rope_dimension_count(c.head_dim)
    rope = getattr(c, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    writer.add_file_type(ftype)


def _tokenizer(writer, checkpoint: Path, n_vocab: int) -> None:
    """GPT-2-style BPE: tokens by id (control for special added tokens), merges and special ids from the files."""
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    by_id = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        special = i in added and added[i].special
        types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED if i in added else 1)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(str(checkpoint), load_merges=True, n_vocab=n_vocab).add_to_gguf(writer)


def write_gguf(model: nn.Module, checkpoint: Path, out: Path, type_: str) -> str:
    """Write ``model`` as f32 or f16 GGUF (1-D tensors stay f32, as llama.cpp's converter does); returns the arch."""
    import gguf

    shapes = layer_shapes(model)
    arch = "llama" if len(set(shapes)) == 1 else "deci"
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(checkpoint.name)
    meta = checkpoint / META_FILE  # what `prunenet speed --backend llamacpp` labels its result with
    writer.add_string(GGUF_META_KEY, meta.read_text() if meta.is_file() else "{}")
    _hparams(writer, model, arch, gguf.LlamaFileType.MOSTLY_F16 if type_ == "f16" else gguf.LlamaFileType.ALL_F32)
    _tokenizer(writer, checkpoint, model.config.vocab_size)
    for name, t in _tensors(model):
        data = t.detach().to(torch.float32).cpu().numpy()
        writer.add_tensor(name, data.astype(np.float16) if type_ == "f16" and data.ndim == 2 else data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return arch


def quantize(src: Path, dst: Path, type_: str, threads: int | None = None) -> None:
    """llama.cpp's own quantizer (its fallbacks for rows that do not fit the block size included)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTIZED[type_]
    params.nthread = threads or os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise PruneNetError(f"llama.cpp could not quantize {src} to {type_}")


def tensor_types(path: str | os.PathLike) -> dict[str, str]:
    """Each tensor's stored type in a GGUF file (where a quantized export fell back, e.g. q5_0 for q4_K)."""
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def file_type(path: str | os.PathLike) -> str:
    """The type a GGUF file was exported as (its ``general.file_type``), by the name ``--type`` takes."""
    import gguf

    code = int(gguf.GGUFReader(str(path)).fields["general.file_type"].contents())
    return {0: "f32", 1: "f16", **{v: k for k, v in QUANTIZED.items()}}.get(code, f"ftype {code}")


def fallbacks(types: dict[str, str], type_: str) -> dict[str, dict[str, int]]:
    """``blk.*`` weights not stored in the requested type, by kind: ``{"ffn_down": {"Q5_0": 30}}``."""
    want = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0", "q4_k_m": ("Q4_K", "Q6_K")}[type_]  # q4_k_m mixes in q6_K
    out: dict[str, Counter] = {}
    for name, t in types.items():
        kind = name.split(".")[2] if name.startswith("blk.") else None
        if kind and not kind.endswith("_norm") and t not in want:
            out.setdefault(kind, Counter())[t] += 1
    return {k: dict(v) for k, v in sorted(out.items())}


def export(p: Plan, out: str | os.PathLike) -> dict:
    """Load, (merge factors), write; returns a summary (arch, layers, per-type tensor counts, fallbacks)."""
    from .models import load_model

    model, _ = load_model(str(p.checkpoint), dtype="float32")
    merged = merge_factors(model) if p.merge_low_rank else 0
    out = Path(out)
    with atomic_file(out) as tmp:
        if p.type in QUANTIZED:
            f32 = tmp.with_name(tmp.name + ".f32")  # beside the temp output: removed with it on any failure
            try:
                arch = write_gguf(model, p.checkpoint, f32, "f32")
                quantize(f32, tmp, p.type)
            finally:
                f32.unlink(missing_ok=True)
        else:
            arch = write_gguf(model, p.checkpoint, tmp, p.type)
        types = tensor_types(tmp)
    return {
        "arch": arch,
        "layers": len(model.model.layers),
        "merged_low_rank": merged,
        "bytes": out.stat().st_size,
        "tensor_types": dict(Counter(types.values())),
        "fallbacks": fallbacks(types, p.type),
    }
