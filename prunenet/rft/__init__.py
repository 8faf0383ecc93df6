"""Recovery fine-tuning (RFT): LoRA on a pruned checkpoint, merged back into a plain HF checkpoint.

Samples
    * WikiText-2 / PTB: the split's raw text is concatenated, tokenized once and cut into
      non-overlapping blocks of ``seq_len`` tokens (:func:`prunenet.data.token_blocks`);
      one sample = one block, every token is a target.
    * Alpaca: one sample = one record in the Stanford Alpaca template
      (:func:`prunenet.data.format_alpaca`, with/without the ``### Input:`` section),
      followed by EOS, truncated to ``seq_len`` and right-padded. Padding is masked out of
      the loss (label -100); the prompt is *not* masked — the whole record (instruction +
      input + response) is a target, as in alpaca-lora's default ``train_on_inputs=True``
      and SliceGPT's RFT, so WikiText-2 and Alpaca RFT optimise the same LM objective.

``n_samples`` is the number of RFT *training* samples; ``round(val_fraction * n_samples)``
(at least 1) further, disjoint samples form the RFT validation set. Both come from one
seeded random permutation of the available samples. With a hub (``data_dir=None``) WikiText-2
and PTB use their real train split; offline (``data_dir`` set) there is none, so both
RFT train and RFT validation samples come from the validation split and test-split
perplexity is reported — ``info['train_source']`` / ``info['eval_source']`` say so.

Training is a plain torch loop (AdamW, linear warmup over 5 % of the steps then linear
decay to 0, gradient clipping at 1.0), deterministic for a seed on CPU.

Modules: :mod:`.data` (samples), :mod:`.lora` (adapters), :mod:`.loss` (the objective and
its log), :mod:`.train` (the run: load, train, evaluate, save).
"""

from __future__ import annotations

from .data import PACKED_DATASETS, alpaca_samples, rft_dataset
from .lora import attach_lora, default_targets, merge_lora
from .loss import eval_loss
from .train import finetune

__all__ = [
    "PACKED_DATASETS",
    "alpaca_samples",
    "attach_lora",
    "default_targets",
    "eval_loss",
    "finetune",
    "merge_lora",
    "rft_dataset",
]
