"""The allowed values (choices) of the policy and data settings, in one torch-free place.

The CLI's choices, the config schema's enums (tested equal) and the workflow's policy-id
pattern all read these tuples; the modules that implement each option check against them.
"""

from __future__ import annotations

PENALTIES = ("ks", "ad")  # Kolmogorov–Smirnov (paper) | Anderson–Darling (T18)
STATES = ("up", "gate", "down")  # FFN1 (paper) | LLaMA gate (official code) | FFN2 (T19)
ATTENTION_STATES = ("qkv",)  # self-attention's q/k/v rows, KV group by group (T20, method prunenet-attention)
POLICY_STATES = STATES + ATTENTION_STATES  # what `prunenet train --state` takes
OBJECTIVES = ("paper", "official")  # discounted future penalty | the authors' code: γ^l / D_l
# Paper Eq. 3, W_imp = σ(W_proj W_up W_interᵀ): as the authors' code computes it, σ(W_up W_interᵀ W_projᵀ)
# (row i scored by its own content) | as printed (row j scored by W_inter's row j against W_proj W_up)
EQ3_READINGS = ("coded", "printed")
BASELINES = ("none", "running", "loo")  # REINFORCE variance reduction (not in the paper)
SPECTRA = ("svd", "gram")  # how singular values are computed (same KS distance)
WHICH = ("best", "last")  # which episode's policy a method applies
DATASETS = ("wikitext2", "ptb", "alpaca")  # text corpora: perplexity, calibration, recovery fine-tuning
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_k_m")  # `prunenet export --type` (quantized ones by llama.cpp's quantizer)

# Defaults used by more than one layer (CLI, PruneRequest, policy files): the first of each tuple, as the config
# schema states them (tests/test_registry.py checks that the schema, the CLI and PruneRequest agree).
DEFAULT_STATE = STATES[0]
DEFAULT_WHICH = WHICH[0]
