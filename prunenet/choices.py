"""The allowed values (choices) of the policy and data settings, in one torch-free place.

The CLI's choices, the config schema's enums (tested equal) and the workflow's policy-id
pattern all read these tuples; the modules that implement each option check against them.
"""

from __future__ import annotations

PENALTIES = ("ks", "ad")  # Kolmogorov–Smirnov (paper) | Anderson–Darling (T18)
# FFN1 (paper) | LLaMA gate | FFN2 (T19) | first: the first FFN matrix, as the authors' code reads it (gate where the
# FFN is gated, the LLaMA family; FFN1 = fc1 otherwise, OPT and Phi)
STATES = ("up", "gate", "down", "first")
ATTENTION_STATES = ("qkv",)  # self-attention's q/k/v rows, KV group by group (T20, method prunenet-attention)
POLICY_STATES = STATES + ATTENTION_STATES  # what `prunenet train --state` takes
OBJECTIVES = ("paper", "official")  # discounted future penalty | the authors' code: γ^l / D_l
# Paper Eq. 3, W_imp = σ(W_proj W_up W_interᵀ): as the authors' code computes it, σ(W_up W_interᵀ W_projᵀ)
# (row i scored by its own content) | as printed (row j scored by W_inter's row j against W_proj W_up)
EQ3_READINGS = ("coded", "printed")
INITS = ("paper", "official")  # W_proj ~ U(±1/√n), no bias | the authors' code: W_proj ~ U(0, 1), W_inter with a bias
# When the policy is updated: once per episode from its draws' likelihood (paper) | the authors' loop: a step after
# every layer on the log perturbed keep-probabilities of the kept rows from a fresh draw (docs/methods.md)
UPDATES = ("paper", "official")
BASELINES = ("none", "running", "loo")  # REINFORCE variance reduction (not in the paper)
SPECTRA = ("svd", "gram")  # how singular values are computed (same KS distance)
WHICH = ("best", "last")  # which episode's policy a method applies
# What a baseline's --ratio sizes (`<method>.budget`): PruneNet's parameter count at the ratio (equal size) | the ratio
# as the method's release defines it (its nominal ratio, Method.nominal)
BUDGETS = ("params", "ratio")
DATASETS = ("wikitext2", "ptb", "alpaca")  # text corpora: perplexity, calibration, recovery fine-tuning
# Weights' dtype while a command works (auto: float32 on CPU, bfloat16 on CUDA; prunenet.models.resolve_dtype)
DTYPES = ("auto", "float32", "float16", "bfloat16")
GGUF_FORMATS = ("hf", "per-layer-shapes")  # checkpoint formats llama.cpp runs (not SliceGPT's, not low-rank factors)
GGUF_TYPES = ("f32", "f16", "q8_0", "q4_k_m")  # `prunenet export --type` (quantized ones by llama.cpp's quantizer)

# The single switch to the authors' public code (LCS2-IIITD/PruneNet): the policy settings it sets (`prunenet train
# --preset official`; config/config.yaml, the workflow's default) and the paper's (config/paper_preset.yaml);
# tests/test_released.py checks the files against this.
PRESETS = {
    "paper": {"state": "up", "objective": "paper", "init": "paper", "update": "paper", "lr": 5e-4, "episodes": 20},
    "official": {
        "state": "first",
        "objective": "official",
        "init": "official",
        "update": "official",
        "lr": 1e-3,
        "episodes": 20,
    },
}

# Defaults used by more than one layer (CLI, PruneRequest, policy files): the first of each tuple, as the config
# schema states them (tests/test_registry.py checks that the schema, the CLI and PruneRequest agree).
DEFAULT_STATE = STATES[0]
DEFAULT_WHICH = WHICH[0]
# Calibration windows when a method's config names none: SliceGPT's CPU default (the paper: 1024 x 2048 tokens on
# GPUs). Here, not in prunenet.data, so that building the CLI's parser does not import torch.
CALIB_SAMPLES = 32
CALIB_SEQ_LEN = 256
