"""Perplexity of a GGUF file computed by llama.cpp, on the same token blocks as :func:`.ppl.perplexity`.

Why a second implementation: a compressed model that leaves the project is run by llama.cpp, with its own kernels,
quantized weights and (by default) an f16 KV cache; the perplexity a user gets there is the one to report beside
PyTorch's. It scores the pipeline's own blocks (:func:`prunenet.data.token_blocks` with the source checkpoint's
tokenizer), so the two perplexities compare the models block by block. llama.cpp's own tokenizer is not used for
them: SmolLM2's vocabulary in llama.cpp tokenizes WikiText-2's test split into 304,978 tokens against transformers'
304,986 (first difference at token 66,557: a run of newlines and spaces before a digit), shifting every later block.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

CACHE_TYPES = ("f16", "f32")  # llama.cpp's KV-cache element type: f16 is its default, f32 isolates the weights


def block_nll(logits: np.ndarray, ids: list[int]) -> float:
    """Mean next-token negative log-likelihood of one block from its per-position logits (float64 log-softmax)."""
    x = np.asarray(logits[: len(ids) - 1], dtype=np.float64)
    top = x.max(axis=1, keepdims=True)
    log_z = (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(log_z - x[np.arange(len(ids) - 1), ids[1:]]))


def open_gguf(path: str | os.PathLike, seq_len: int, cache_type: str = "f16", threads: int | None = None):
    """A llama.cpp context for blocks of ``seq_len`` tokens, logits at every position."""
    import llama_cpp

    if cache_type not in CACHE_TYPES:
        raise ValueError(f"cache_type must be one of {CACHE_TYPES}, not {cache_type!r}")
    threads = threads or os.cpu_count() or 1
    kv = getattr(llama_cpp, f"GGML_TYPE_{cache_type.upper()}")
    return llama_cpp.Llama(
        str(path),
        n_ctx=seq_len,
        n_batch=seq_len,
        logits_all=True,
        n_threads=threads,
        n_threads_batch=threads,
        type_k=kv,
        type_v=kv,
        verbose=False,
    )


def perplexity_gguf(llm, blocks: torch.Tensor) -> dict:
    """exp(mean next-token NLL) of ``blocks`` (n × seq_len token ids) in llama.cpp; the same keys as
    :func:`.ppl.perplexity`. Every block is evaluated from an empty KV cache, as PyTorch evaluates each row."""
    per_block = []
    for row in blocks.tolist():
        llm.reset()
        llm.eval(row)
        per_block.append(block_nll(llm.scores, row))
    nll = float(np.mean(per_block))  # equal-length blocks: the mean of block means is the token mean
    return {
        "ppl": math.exp(nll),
        "nll": nll,
        "n_tokens": len(per_block) * (blocks.shape[1] - 1),
        "n_blocks": len(per_block),
        "seq_len": blocks.shape[1],
        "block_nll": per_block,
    }


def perplexities_gguf(
    path: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    datasets: list[str],
    data_dir: str | os.PathLike | None,
    seq_len: int,
    max_blocks: int | None,
    cache_type: str = "f16",
) -> dict[str, dict]:
    """:func:`perplexity_gguf` on each dataset's test split, labelled with its source (as ``evaluate`` does), on
    the blocks the pipeline cuts with the source checkpoint's tokenizer (``tokenizer_dir``)."""
    from transformers import AutoTokenizer

    from ..data import load_texts, split_note, token_blocks

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    llm = open_gguf(path, seq_len, cache_type)
    out = {}
    for name in datasets:
        blocks = token_blocks(tok, load_texts(name, "test", data_dir), seq_len, max_blocks=max_blocks)
        source = split_note(name, "test", data_dir)
        out[name] = perplexity_gguf(llm, blocks) | {"cache_type": cache_type, "dataset": source}
    return out
