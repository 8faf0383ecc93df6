"""Perplexity over non-overlapping token blocks (the GPTQ/SliceGPT protocol), of a model or a checkpoint."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import load_texts, split_note, token_blocks


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    tokenizer,
    texts: list[str],
    seq_len: int = 512,
    max_blocks: int | None = None,
    batch_size: int = 4,
    add_bos: bool | None = None,
    desc: str = "perplexity",
) -> dict:
    """exp(mean next-token NLL) over non-overlapping ``seq_len`` blocks (GPTQ/SliceGPT protocol).

    ``block_nll``: each block's mean next-token NLL, in block order. The blocks depend on the tokenizer and the
    text only, so every model of one family is scored on the same blocks and two models' perplexities can be
    compared block by block (the paired perplexity test under the comparison tables)."""
    blocks = token_blocks(tokenizer, texts, seq_len, max_blocks=max_blocks, add_bos=add_bos)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count, per_block = 0.0, 0, []
    try:
        for i in tqdm(range(0, len(blocks), batch_size), desc=desc, unit="batch"):
            ids = blocks[i : i + batch_size].to(device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = ids[:, 1:]
            flat = logits.reshape(-1, logits.size(-1))
            total += F.cross_entropy(flat, target.reshape(-1), reduction="sum").item()
            count += target.numel()
            per_token = F.cross_entropy(flat, target.reshape(-1), reduction="none").view(target.shape)
            per_block += per_token.double().mean(dim=1).tolist()
    finally:
        model.train(was_training)
    nll = total / count
    return {
        "ppl": math.exp(nll),
        "nll": nll,
        "n_tokens": count,
        "n_blocks": len(blocks),
        "seq_len": seq_len,
        "block_nll": per_block,
    }


def perplexity_on(
    model: str | tuple[torch.nn.Module, Any],
    dataset: str = "wikitext2",
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    seq_len: int = 512,
    max_blocks: int | None = None,
    batch_size: int = 4,
    add_bos: bool | None = None,
    device: str = "cpu",
    dtype: str = "auto",
) -> dict:
    """:func:`perplexity` of a checkpoint path (or ``(model, tokenizer)``) on a corpus split.

    The result is labelled with where the text came from (hub or which local file), so a
    number is never reported without its source.
    """
    if isinstance(model, (str, os.PathLike)):
        from ..models import load_model

        model, tok = load_model(str(model), device=device, dtype=dtype)
    else:
        model, tok = model
    texts = load_texts(dataset, split, data_dir)
    result = perplexity(
        model,
        tok,
        texts,
        seq_len=seq_len,
        max_blocks=max_blocks,
        batch_size=batch_size,
        add_bos=add_bos,
        desc=f"ppl {dataset}/{split}",
    )
    result["dataset"] = split_note(dataset, split, data_dir)
    return result
