"""Prefill and decode tokens/s of a GGUF file in llama.cpp (``prunenet speed --backend llamacpp``).

The same protocol as :mod:`prunenet.speed` (seeded random prompt, greedy decode, ``warmup`` untimed then ``repeats``
timed generations, median and spread), batch 1, every core; the times are llama.cpp's own (its performance
counters: prompt batches vs single-token steps), so Python's overhead between calls is not counted. The ideal
speed-up for a memory-bound decode is the ratio of weight bytes read per generated token
(:func:`weight_bytes_per_token`), dense over pruned.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np

from .artifacts import GGUF_META_KEY
from .speed import SpeedResult, SpeedSettings, spread


def gguf_meta(path: str | os.PathLike) -> dict:
    """The ``prunenet_meta.json`` of the checkpoint a GGUF file was exported from ({} if none)."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get(GGUF_META_KEY)
    return json.loads(field.contents()) if field is not None else {}


def weight_bytes_per_token(path: str | os.PathLike) -> int:
    """Bytes of weights one decode step reads: every tensor, except the embedding table when a separate output
    matrix exists (a token reads one embedding row; a tied table is read whole as the output matrix)."""
    import gguf

    tensors = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors}
    if "output.weight" in tensors:
        tensors.pop("token_embd.weight", None)
    return sum(tensors.values())


def _generate(llm, prompt: list[int], gen_len: int) -> tuple[float, float]:
    """One greedy generation; llama.cpp's prompt and decode tokens/s for it."""
    import llama_cpp

    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    llm.eval(prompt)
    for _ in range(gen_len - 1):
        last = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        llm.eval([int(np.argmax(last))])
    perf = llama_cpp.llama_perf_context(llm.ctx)
    return perf.n_p_eval / (perf.t_p_eval_ms / 1e3), perf.n_eval / (perf.t_eval_ms / 1e3)


def measure_gguf(path: str | os.PathLike, settings: SpeedSettings, threads: int | None = None) -> SpeedResult:
    """Batch-1 prefill and decode tokens/s of a GGUF file in llama.cpp (cell ``b1``, as :func:`speed.measure`)."""
    import llama_cpp

    settings.check()
    threads = threads or os.cpu_count() or 1
    ctx = settings.prompt_len + settings.gen_len + 8
    llm = llama_cpp.Llama(
        str(path), n_ctx=ctx, n_batch=settings.prompt_len, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    rng = np.random.default_rng(settings.seed)
    prompt = rng.integers(0, llm.n_vocab(), settings.prompt_len).tolist()
    for _ in range(settings.warmup):
        _generate(llm, prompt, settings.gen_len)
    runs = [_generate(llm, prompt, settings.gen_len) for _ in range(settings.repeats)]
    result = SpeedResult(settings=asdict(settings), device="cpu (llama.cpp)", threads=threads, flops_per_token=0)
    result.cells["b1"] = {
        "batch_size": 1,
        "prefill_tok_s": spread([p for p, _ in runs]),
        "decode_tok_s": spread([d for _, d in runs]),
        "weight_bytes_per_token": weight_bytes_per_token(path),
    }
    return result
