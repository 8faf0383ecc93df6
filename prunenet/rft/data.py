"""RFT samples: packed token blocks (WikiText-2, PTB) or one Alpaca record each, split into train/validation.

See :mod:`prunenet.rft` for what one sample is and where the splits come from. Every
function here is deterministic for a seed: the train/validation choice is one seeded
permutation, drawn from its own generator so it never touches the global torch RNG.
"""

from __future__ import annotations

import os

import torch

from ..data import adds_bos, check_name, load_texts, split_note, token_blocks
from ..errors import PruneNetError

PACKED_DATASETS = ("wikitext2", "ptb")
Dataset = dict[str, torch.Tensor]  # input_ids, attention_mask, labels: each [n, seq_len]


def _encode_record(tokenizer, text: str, seq_len: int, add_bos: bool) -> tuple[list[int], int, bool]:
    """(padded ids, number of real tokens, truncated?) for one Alpaca record."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if add_bos:
        ids = [tokenizer.bos_token_id] + ids
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    truncated = len(ids) > seq_len
    ids = ids[:seq_len]
    n = len(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return ids + [pad] * (seq_len - n), n, truncated


def alpaca_samples(tokenizer, texts: list[str], seq_len: int, add_bos: bool | None = None) -> tuple[Dataset, int]:
    """Tokenize formatted Alpaca records into fixed-length samples; padding gets label -100.

    Returns the samples and how many records were truncated to ``seq_len``.
    """
    if add_bos is None:
        add_bos = adds_bos(tokenizer)
    rows, lengths, n_trunc = [], [], 0
    for text in texts:
        ids, n, truncated = _encode_record(tokenizer, text, seq_len, add_bos)
        rows.append(ids)
        lengths.append(n)
        n_trunc += truncated
    input_ids = torch.tensor(rows, dtype=torch.long).view(len(rows), seq_len)
    mask = (torch.arange(seq_len)[None, :] < torch.tensor(lengths)[:, None]).long()
    labels = input_ids.masked_fill(mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}, n_trunc


def packed(blocks: torch.Tensor) -> Dataset:
    """Samples from packed blocks: no padding, so every token is attended to and is a target."""
    return {"input_ids": blocks, "attention_mask": torch.ones_like(blocks), "labels": blocks.clone()}


def take(data: Dataset, idx: torch.Tensor) -> Dataset:
    """The samples at ``idx`` (every field indexed alike)."""
    return {k: v[idx] for k, v in data.items()}


def _check_args(dataset: str, n_samples: int, seq_len: int, val_fraction: float) -> None:
    """Refuse bad arguments before anything is tokenized."""
    check_name(dataset)
    if seq_len < 2:
        raise PruneNetError(f"seq_len must be at least 2, got {seq_len}")
    if not 0.0 < val_fraction < 1.0:
        raise PruneNetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if n_samples < 1:
        raise PruneNetError(f"n_samples must be at least 1, got {n_samples}")


def _n_val(n_train: int, val_fraction: float) -> int:
    """Validation samples that come on top of ``n_train`` training samples (at least one)."""
    return max(1, round(val_fraction * n_train))


def _fit(n_samples: int, available: int, val_fraction: float, allow_truncate: bool, what: str, hint: str) -> int:
    """``n_samples`` if it and its validation samples fit in ``available``, else the largest that does.

    Without ``allow_truncate`` a request that does not fit is an error naming what is available
    (``what`` says of which split and unit), so a config never silently trains on less data.
    """
    if n_samples + _n_val(n_samples, val_fraction) <= available:
        return n_samples
    fits = next((n for n in range(min(n_samples, available), 0, -1) if n + _n_val(n, val_fraction) <= available), 0)
    if not allow_truncate or fits == 0:
        raise PruneNetError(
            f"{what} available, but n_samples={n_samples} training + {_n_val(n_samples, val_fraction)} validation "
            f"samples were requested: lower n_samples to at most {fits}" + hint
        )
    return fits


def _describe_packed(info: dict, source: str, offline: bool, n_train: int, n_val: int) -> None:
    """Say where packed train/validation blocks came from (offline: both from the validation split)."""
    info["sample"] = f"block of {info['seq_len']} packed tokens"
    if offline:
        info["train_source"] = f"{source}: {n_train} blocks (offline: no train split, RFT trains on validation)"
        info["val_source"] = f"{source}: {n_val} held-out blocks (disjoint from the RFT train blocks)"
    else:
        info["train_source"] = f"{source}: {n_train} blocks"
        info["val_source"] = f"{source}: {n_val} held-out blocks"


def _alpaca_split(
    tokenizer, texts: list[str], train_idx: torch.Tensor, val_idx: torch.Tensor, info: dict, source: str
) -> tuple[Dataset, Dataset]:
    """Tokenize the chosen Alpaca records into train/validation samples and describe them in ``info``."""
    seq_len, add_bos = info["seq_len"], info["add_bos"]
    train, trunc_t = alpaca_samples(tokenizer, [texts[i] for i in train_idx.tolist()], seq_len, add_bos)
    val, trunc_v = alpaca_samples(tokenizer, [texts[i] for i in val_idx.tolist()], seq_len, add_bos)
    n_train, n_val = len(train_idx), len(val_idx)
    info["sample"] = "one Stanford-Alpaca-template record + EOS, truncated/right-padded to seq_len, padding masked"
    info["n_truncated"] = trunc_t + trunc_v
    info["train_source"] = f"{source}: {n_train} records"
    info["val_source"] = f"{source}: {n_val} held-out records"
    info["eval_source"] = f"{source}: {n_val} held-out records (alpaca has no test split)"
    return train, val


def rft_dataset(
    tokenizer,
    dataset: str,
    n_samples: int,
    seq_len: int,
    data_dir: str | os.PathLike | None,
    val_fraction: float = 0.1,
    seed: int = 0,
    allow_truncate: bool = False,
) -> tuple[Dataset, Dataset, dict]:
    """The RFT train and validation sets (dicts of ``[n, seq_len]`` tensors) and a description.

    ``n_samples`` counts training samples (blocks of ``seq_len`` tokens for WikiText-2/PTB,
    records for Alpaca); ``max(1, round(val_fraction * n_samples))`` validation samples come
    on top. Asking for more than the split holds is an error naming the available count,
    unless ``allow_truncate`` (then the largest n_samples that fits is used).
    """
    _check_args(dataset, n_samples, seq_len, val_fraction)
    add_bos = adds_bos(tokenizer)
    offline = data_dir is not None
    split = "validation" if (dataset in PACKED_DATASETS and offline) else "train"
    texts = load_texts(dataset, split, data_dir)
    if dataset in PACKED_DATASETS:
        blocks = token_blocks(tokenizer, texts, seq_len, add_bos=add_bos)
        available, unit = blocks.shape[0], f"blocks of {seq_len} tokens"
    else:
        blocks, available, unit = None, len(texts), "records"
    info: dict = {
        "dataset": dataset,
        "seq_len": seq_len,
        "seed": seed,
        "val_fraction": val_fraction,
        "available": available,
        "add_bos": add_bos,
    }
    hint = " or lower seq_len" if blocks is not None else ""
    fitted = _fit(
        n_samples, available, val_fraction, allow_truncate, f"{dataset}/{split} has only {available} {unit}", hint
    )
    if fitted != n_samples:
        info["requested_n_samples"] = n_samples
    n_train, n_val = fitted, _n_val(fitted, val_fraction)
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(available, generator=gen)[: n_train + n_val]
    train_idx, val_idx = chosen[:n_train], chosen[n_train:]

    source = split_note(dataset, split, data_dir)
    if blocks is not None:
        train, val = packed(blocks[train_idx]), packed(blocks[val_idx])
        _describe_packed(info, source, offline, n_train, n_val)
        info["eval_source"] = split_note(dataset, "test", data_dir) + " (perplexity)"
    else:
        train, val = _alpaca_split(tokenizer, texts, train_idx, val_idx, info, source)
    info.update(n_samples=n_train, n_train=n_train, n_val=n_val)
    return train, val, info


def perplexity_blocks(tokenizer, info: dict, data_dir: str | os.PathLike | None, test_blocks: int) -> Dataset | None:
    """The first ``test_blocks`` test-split blocks of a packed corpus (for perplexity), or None.

    Alpaca has no test split and ``test_blocks=0`` skips the test measurement; otherwise
    ``info['eval_source']`` is narrowed to the blocks actually used.
    """
    dataset, seq_len = info["dataset"], info["seq_len"]
    if dataset not in PACKED_DATASETS or test_blocks <= 0:
        return None
    texts = load_texts(dataset, "test", data_dir)
    test = packed(token_blocks(tokenizer, texts, seq_len, test_blocks, info["add_bos"]))
    info["eval_source"] = (
        f"{split_note(dataset, 'test', data_dir)}: first {test['input_ids'].shape[0]} blocks "
        f"of {seq_len} tokens (perplexity)"
    )
    return test
