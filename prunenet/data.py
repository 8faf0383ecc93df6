"""Text corpora for perplexity, recovery fine-tuning and calibration (WikiText-2, PTB, Alpaca).

With ``data_dir=None`` the hub datasets are used (``datasets.load_dataset``); with a
``data_dir`` the local copies laid out as in ``../shared/data`` are read, so nothing is
downloaded. Offline there is no WikiText-2/PTB *train* split: callers that need one use
the validation split and label their results as such (see :func:`split_note`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .choices import CALIB_SAMPLES, CALIB_SEQ_LEN
from .choices import DATASETS as TEXT_DATASETS
from .errors import PruneNetError

# Stanford Alpaca's own prompt templates (with and without an input field).
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}"
)
ALPACA_TEMPLATE_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n{output}"
)

# The one map of the local data layout (as in ../shared/data): dataset -> split -> path relative
# to data_dir. Text corpora (perplexity, RFT, calibration) and the lm-eval benchmarks alike; MMLU's
# entries are folders of hendrycks CSVs (<subject>_<split>.csv).
LOCAL_FILES: dict[str, dict[str, str]] = {
    "wikitext2": {"validation": "wikitext2/wikitext-2-v1/valid.txt", "test": "wikitext2/wikitext-2-raw-v1/test.jsonl"},
    "ptb": {"validation": "ptb/ptb.valid.txt", "test": "ptb/ptb.test.txt"},
    "alpaca": {"train": "alpaca/alpaca_data.json"},
    "piqa": {"validation": "piqa/validation.jsonl"},
    "winogrande": {"validation": "winogrande/dev.jsonl"},
    "hellaswag": {"validation": "hellaswag/hellaswag_val_preprocessed.jsonl"},
    "arc_easy": {"test": "arc/ARC-Easy-Test.jsonl"},
    "arc_challenge": {"test": "arc/ARC-Challenge-Test.jsonl"},
    "mmlu": {"test": "mmlu/test", "dev": "mmlu/dev"},
}


def format_alpaca(example: dict) -> str:
    """One Alpaca record as a single prompt+response text (Stanford Alpaca template)."""
    template = ALPACA_TEMPLATE if example.get("input") else ALPACA_TEMPLATE_NO_INPUT
    return template.format(**{k: example.get(k, "") for k in ("instruction", "input", "output")})


def local_path(name: str, split: str, data_dir: str | os.PathLike) -> Path:
    """The local file for (dataset, split), or a one-line error naming what is missing."""
    check_name(name)
    files = LOCAL_FILES[name]
    if split not in files:
        raise PruneNetError(
            f"no local {split!r} split of {name} in data_dir (available: {', '.join(files)}); "
            f"offline runs train on 'validation' and evaluate on 'test'"
        )
    path = Path(data_dir) / files[split]
    if not path.is_file():
        raise PruneNetError(
            f"missing data file {path}: point data_dir at a copy of the benchmark data (e.g. ../shared/data)"
        )
    return path


def check_name(name: str) -> None:
    if name not in TEXT_DATASETS:
        raise PruneNetError(f"unknown dataset {name!r}: known datasets are {', '.join(TEXT_DATASETS)}")


def load_texts(name: str, split: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Documents of a corpus split: lines/rows for WikiText-2 and PTB, formatted records for Alpaca."""
    check_name(name)
    if data_dir is None:
        return _load_hub(name, split)
    path = local_path(name, split, data_dir)
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in path.open() if line.strip()]
    if path.suffix == ".json":
        return [format_alpaca(r) for r in json.loads(path.read_text())]
    return path.read_text().splitlines(keepends=True)


def _load_hub(name: str, split: str) -> list[str]:
    from datasets import load_dataset

    from . import hub

    hub.require(f"{name}/{split} without data_dir", "set data_dir (e.g. ../shared/data) to the local copies")

    try:
        if name == "wikitext2":
            return list(load_dataset("wikitext", "wikitext-2-raw-v1", split=split)["text"])
        if name == "ptb":
            return [s + "\n" for s in load_dataset("ptb_text_only", split=split)["sentence"]]
        if split != "train":
            raise PruneNetError(f"alpaca has only a 'train' split, not {split!r}")
        return [format_alpaca(r) for r in load_dataset("tatsu-lab/alpaca", split="train")]
    except PruneNetError:
        raise
    except Exception as exc:
        raise PruneNetError(
            f"cannot load {name}/{split} from the hub ({str(exc).splitlines()[0][:120]}); "
            "offline, set data_dir (e.g. ../shared/data)"
        ) from exc


def split_note(name: str, split: str, data_dir: str | os.PathLike | None) -> str:
    """Human label of where the text came from, carried into every output that reports on it."""
    source = f"local {LOCAL_FILES[name].get(split, '?')}" if data_dir is not None else "hub"
    return f"{name}/{split} ({source})"


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer starts a text with BOS by default (Gemma's does; SmolLM2's and OPT's do not).

    Every window the pipeline cuts (perplexity, calibration, fine-tuning) then starts with BOS too, as the model
    saw text in training: Gemma without it degrades badly.
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a").input_ids
    return len(ids) > 0 and ids[0] == bos


def token_blocks(
    tokenizer, texts: list[str], seq_len: int, max_blocks: int | None = None, add_bos: bool | None = None
) -> torch.Tensor:
    """Concatenate texts, tokenize once and cut into non-overlapping ``seq_len`` blocks.

    The standard perplexity / LM fine-tuning setup (as in SliceGPT and the LLM pruning
    literature). With ``add_bos`` every block starts with BOS (needed by Gemma); None: as the tokenizer does
    (:func:`adds_bos`).
    """
    if add_bos is None:
        add_bos = adds_bos(tokenizer)
    joined = "\n\n".join(texts)  # the GPTQ/SliceGPT convention for WikiText-2 perplexity
    ids = tokenizer(joined, add_special_tokens=False, return_tensors="pt").input_ids[0]
    width = seq_len - 1 if add_bos else seq_len
    n = ids.numel() // width
    if max_blocks is not None:
        n = min(n, max_blocks)
    if n == 0:
        raise PruneNetError(f"text too short for one block of {seq_len} tokens: lower seq_len or add data")
    blocks = ids[: n * width].view(n, width)
    if add_bos:
        bos = torch.full((n, 1), tokenizer.bos_token_id, dtype=blocks.dtype)
        blocks = torch.cat([bos, blocks], dim=1)
    return blocks


def check_calibration(dataset: str, n_samples: int, seq_len: int) -> None:
    """A calibration request that can be served; checked before any model loads and again where it is drawn."""
    check_name(dataset)
    if n_samples < 1 or seq_len < 2:
        raise PruneNetError(
            f"calibration needs n_samples >= 1 and seq_len >= 2 (--calib-samples, --calib-seq-len), "
            f"got {n_samples} x {seq_len}"
        )


def calibration_blocks(
    tokenizer,
    dataset: str = "wikitext2",
    data_dir: str | os.PathLike | None = None,
    n_samples: int = CALIB_SAMPLES,
    seq_len: int = CALIB_SEQ_LEN,
    seed: int = 0,
) -> torch.Tensor:
    """``n_samples`` random windows of ``seq_len`` tokens from a calibration corpus (seeded).

    The corpus is the train split (hub) or, offline, the local train split if there is
    one (Alpaca) else the validation split (WikiText-2, PTB): no test text is ever used.
    """
    check_calibration(dataset, n_samples, seq_len)
    split = "train" if data_dir is None or "train" in LOCAL_FILES[dataset] else "validation"
    texts = load_texts(dataset, split, data_dir)
    bos = adds_bos(tokenizer)  # a window then is BOS + seq_len - 1 tokens of text
    width = seq_len - bos
    stream = token_blocks(tokenizer, texts, width, add_bos=False).reshape(-1)
    gen = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, stream.numel() - width + 1, (n_samples,), generator=gen)
    windows = torch.stack([stream[s : s + width] for s in starts.tolist()])
    if bos:
        windows = torch.cat([torch.full((n_samples, 1), tokenizer.bos_token_id, dtype=windows.dtype), windows], 1)
    return windows
