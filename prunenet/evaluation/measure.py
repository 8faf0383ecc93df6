"""What an evaluation file records of one loaded model, after its header: task scores, then perplexities."""

from __future__ import annotations

from typing import Any

from torch import nn


def measure(
    model: nn.Module,
    tok: Any,
    tasks: list[str],
    ppl_datasets: list[str],
    data_dir: str | None,
    *,
    ppl_seq_len: int,
    ppl_blocks: int | None,
    batch_size: int,
    **lm_eval: Any,
) -> dict:
    """lm-eval-harness on ``tasks`` (``lm_eval``: :func:`~.harness.run_lm_eval`'s keyword options) and the
    perplexity of each of ``ppl_datasets`` (test split, labelled with its source), on the model loaded once."""
    from ..data import load_texts, split_note
    from .harness import run_lm_eval
    from .ppl import perplexity

    out = run_lm_eval((model, tok), tasks, data_dir, batch_size=batch_size, **lm_eval) if tasks else {}
    out["perplexity"] = {
        name: perplexity(model, tok, load_texts(name, "test", data_dir), ppl_seq_len, ppl_blocks, batch_size)
        | {"source": split_note(name, "test", data_dir)}
        for name in ppl_datasets
    }
    return out
