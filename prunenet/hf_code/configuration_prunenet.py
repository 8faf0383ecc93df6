"""Configuration classes of pruned checkpoints, for stock ``transformers`` (``trust_remote_code=True``).

This file and ``modeling_prunenet.py`` are copied into every checkpoint whose shapes no stock class can express
(``config.json``'s ``auto_map`` points at them), so the checkpoint loads in a Python without ``prunenet``: they
import nothing but ``torch`` and ``transformers``. Each class is the family's own configuration, unchanged: the
``model_type`` stays the family's (``llama``, ``qwen2``, ...), so tools that branch on it (lm-eval, peft)
treat the model as that family, and the pruned shapes are read from the extra keys below.

Keys (written by ``prunenet``'s checkpoint formats):

- ``prunenet_intermediate_sizes``: each decoder layer's FFN width;
- ``prunenet_kv_heads``: each layer's key/value heads kept (query heads follow: whole GQA groups go);
- ``prunenet_low_rank``: module path -> rank of every projection stored as two factors ``u @ v``;
- ``prunenet_slicegpt``: SliceGPT's widths (sliced residual stream with per-layer shortcut matrices).
"""

from __future__ import annotations

from transformers import (
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

FFN_KEY = "prunenet_intermediate_sizes"
HEADS_KEY = "prunenet_kv_heads"
LOW_RANK_KEY = "prunenet_low_rank"
SLICEGPT_KEY = "prunenet_slicegpt"
FORMAT_KEYS = (FFN_KEY, HEADS_KEY, LOW_RANK_KEY, SLICEGPT_KEY)

# model_type -> the stock configuration class this file subclasses (the LLaMA module layout: q/k/v/o_proj,
# gate/up/down_proj, input/post_attention_layernorm)
BASES = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
    "qwen3": Qwen3Config,
    "gemma": GemmaConfig,
    "gemma2": Gemma2Config,
    "gemma3_text": Gemma3TextConfig,
}


def _pruned(base: type) -> type:
    return type(f"Pruned{base.__name__}", (base,), {"__doc__": f"{base.__name__} with pruned per-layer shapes."})


PrunedLlamaConfig = _pruned(LlamaConfig)
PrunedMistralConfig = _pruned(MistralConfig)
PrunedQwen2Config = _pruned(Qwen2Config)
PrunedQwen3Config = _pruned(Qwen3Config)
PrunedGemmaConfig = _pruned(GemmaConfig)
PrunedGemma2Config = _pruned(Gemma2Config)
PrunedGemma3TextConfig = _pruned(Gemma3TextConfig)
