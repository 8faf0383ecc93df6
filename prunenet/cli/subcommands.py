"""One function per ``prunenet`` subcommand: its flags, its help, the command it runs (:mod:`prunenet.commands`)."""

from __future__ import annotations

import argparse

from .. import commands
from .arguments import (
    NONNEG_INT,
    POSITIVE,
    POSITIVE_INT,
    dtype_flag,
    method_options,
    model_flags,
    number,
    ppl_args,
    ratio_arg,
)


def released_options(t: argparse.ArgumentParser) -> None:
    """``prunenet train``'s switches to the authors' public code: init, update and the ``--preset`` bundling them.

    ``--preset official`` sets every flag of :data:`prunenet.choices.PRESETS` left at its default, whatever the
    order on the command line (a flag given explicitly at its default value is taken as not given)."""
    from .. import choices

    t.add_argument("--init", default="paper", choices=choices.INITS, help="paper: W_proj ~ U(±1/√n); official: U(0, 1)")
    t.add_argument(
        "--update",
        default="paper",
        choices=choices.UPDATES,
        help="paper: a step per episode; official: the authors' loop (a step after every layer, docs/methods.md)",
    )
    t.add_argument("--preset", choices=tuple(choices.PRESETS), help="official: the authors' code in every setting")

    def with_preset(args: argparse.Namespace) -> None:
        for name, value in choices.PRESETS.get(args.preset, {}).items():
            if getattr(args, name) == t.get_default(name):
                setattr(args, name, value)
        commands.cmd_train(args)

    t.set_defaults(func=with_preset)


def _download(sub) -> None:
    """`prunenet download`."""
    d = sub.add_parser("download", help="resolve a model spec into a local safetensors checkpoint")
    d.add_argument("--model", default="smollm2-135m", help="embedded name, .gguf file, local dir or hub id")
    d.add_argument("--model-name")
    d.add_argument("--out", required=True)
    d.add_argument("--dtype", default="float32")
    d.set_defaults(func=commands.cmd_download)


def _train(sub) -> None:
    """`prunenet train`."""
    from .. import choices

    t = sub.add_parser("train", help="train the PruneNet policy (REINFORCE, no calibration data)")
    model_flags(t)
    t.add_argument("--out", required=True, help="policy .safetensors file (best and last policy)")
    t.add_argument("--meta-out", required=True, help="JSON file for the policy's metadata and penalty history")
    t.add_argument("--ratio", type=float, default=0.3)
    t.add_argument("--episodes", type=POSITIVE_INT, default=20)
    t.add_argument("--gamma", type=POSITIVE, default=0.99)
    t.add_argument("--lr", type=POSITIVE, default=5e-4)
    t.add_argument("--penalty", default="ks", choices=choices.PENALTIES)
    t.add_argument(
        "--state",
        default=choices.DEFAULT_STATE,
        choices=choices.POLICY_STATES,
        help="up (FFN1, paper), gate, down (FFN2, T19), or qkv: attention KV groups (T20, for prunenet-attention)",
    )
    t.add_argument("--objective", default="paper", choices=choices.OBJECTIVES)
    t.add_argument(
        "--eq3",
        default="coded",
        choices=choices.EQ3_READINGS,
        help="reading of paper Eq. 3: coded (authors' code: row i scored by its own content) or "
        "printed (σ(W_proj W_up W_interᵀ) literally: row j scored by W_inter's row j)",
    )
    t.add_argument(
        "--baseline",
        default="none",
        choices=choices.BASELINES,
        help="variance reduction (paper: none): running mean of the return per layer, "
        "or leave-one-out over --samples draws",
    )
    t.add_argument("--samples", type=POSITIVE_INT, default=1, help="row sets drawn per layer and episode (paper: 1)")
    t.add_argument("--spectrum", default="svd", choices=choices.SPECTRA)
    dtype_flag(t, "the model's dtype while its states are read (they are trained in float32)")
    t.add_argument(
        "--eval-samples", type=POSITIVE_INT, default=20, help="draws used to compare the policy with random rows"
    )
    t.set_defaults(func=commands.cmd_train)
    released_options(t)


def _prune(sub) -> None:
    """`prunenet prune`."""
    from ..methods import METHODS

    pr = sub.add_parser("prune", help="compress a checkpoint with any registered method")
    model_flags(pr)
    pr.add_argument("--out", required=True)
    pr.add_argument(
        "--method",
        default="prunenet",
        choices=METHODS.names(),
        help="; ".join(f"{name}: {m.summary}" for name, m in METHODS.items()),
    )
    pr.add_argument(
        "--ratio",
        type=ratio_arg,
        required=True,
        help="0.3, a per-layer list 0.1,0.2,... or a schedule: linear:0.1:0.5 (first:last), shuffled:0:0.4[:SEED]",
    )

    method_options(pr, policy_help="policy file from `prunenet train`")
    pr.add_argument(
        "--prepared",
        help="the method's ratio-independent state from `prunenet prepare` (same model, seed, calibration, options)",
    )
    pr.set_defaults(func=commands.cmd_prune)


def _prepare(sub) -> None:
    """`prunenet prepare`."""
    from ..methods import METHODS

    prepared = [name for name, m in METHODS.items() if m.prepare is not None]
    pp = sub.add_parser("prepare", help="a method's ratio-independent work, once, for `prune --prepared` at any ratio")
    model_flags(pp)
    pp.add_argument("--out", required=True, help=".safetensors file")
    pp.add_argument("--method", required=True, choices=prepared)
    method_options(pp, policy=False)
    pp.set_defaults(func=commands.cmd_prepare)


def _evaluate(sub) -> None:
    """`prunenet evaluate`."""
    e = sub.add_parser("evaluate", help="zero-shot lm-eval tasks and perplexity -> one JSON")
    model_flags(e)
    e.add_argument("--out", required=True)
    e.add_argument("--method", help="label (default: from the checkpoint's metadata)")
    e.add_argument("--tasks", nargs="*", default=["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"])
    e.add_argument("--limit", type=POSITIVE_INT, help="items per task (default: all)")
    e.add_argument("--num-fewshot", type=NONNEG_INT, default=0)
    e.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    e.add_argument(
        "--lm",
        choices=["cached", "stock"],
        default="cached",
        help="lm-eval model class: cached (each shared context encoded once) or stock HFLM; same log-likelihoods",
    )
    dtype_flag(e, "the weights' dtype while evaluated")
    e.add_argument("--data-dir", help="local benchmark data (offline); default: lm-eval's hub tasks")
    e.add_argument("--setting", default="default", help="label: the policy id or 'default' (tables group by it)")
    ppl_args(e)
    e.add_argument(
        "--backend",
        choices=["torch", "llamacpp"],
        default="torch",
        help="llamacpp: --model is a GGUF file (prunenet export); perplexity only (pass --tasks with no names)",
    )
    e.add_argument("--tokenizer", help="llamacpp: the exported checkpoint, whose tokenizer cuts the pipeline's blocks")
    e.add_argument(
        "--cache-type",
        choices=["f16", "f32"],
        default="f16",
        help="llamacpp: the KV cache's element type (f16: llama.cpp's default; f32: the weights' effect alone)",
    )
    e.set_defaults(func=commands.cmd_evaluate)


def _speed(sub) -> None:
    """`prunenet speed`."""
    sp_ = sub.add_parser("speed", help="prefill and decode tokens/s of a checkpoint (paper Table 9b) -> one JSON")
    model_flags(sp_)
    sp_.add_argument("--out", required=True)
    sp_.add_argument("--method", help="label (default: from the checkpoint's metadata)")
    sp_.add_argument("--setting", default="default", help="label: the policy id or 'default'")
    dtype_flag(sp_, "the weights' dtype while timed")
    sp_.add_argument("--batch-sizes", type=POSITIVE_INT, nargs="+", default=[1, 8])
    sp_.add_argument("--prompt-len", type=POSITIVE_INT, default=128, help="prompt tokens per sequence (prefill)")
    sp_.add_argument("--gen-len", type=number(int, 2), default=32, help="tokens generated per sequence")
    sp_.add_argument("--warmup", type=NONNEG_INT, default=1, help="untimed generations before the timed ones")
    sp_.add_argument("--repeats", type=POSITIVE_INT, default=5, help="timed generations (median and spread)")
    sp_.add_argument(
        "--backend",
        choices=["torch", "llamacpp"],
        default="torch",
        help="llamacpp: --model is a GGUF file (prunenet export), batch 1, every core, llama.cpp's own timings",
    )
    sp_.set_defaults(func=commands.cmd_speed)


def _export(sub) -> None:
    """``prunenet export CKPT --format gguf --type ... --out FILE`` (llama.cpp; see :mod:`prunenet.export`)."""
    from .. import choices

    x = sub.add_parser("export", help="write a checkpoint as a GGUF file for llama.cpp")
    x.add_argument("checkpoint", help="checkpoint directory")
    x.add_argument("--format", default="gguf", choices=["gguf"])
    x.add_argument("--type", default="f16", choices=choices.GGUF_TYPES, help="tensor type (q8_0, q4_k_m: llama.cpp)")
    x.add_argument("--merge-low-rank", action="store_true", help="multiply SVD-LLM/ASVD factors back (no saving)")
    x.add_argument("--out", required=True, help="the .gguf file")
    x.set_defaults(func=commands.cmd_export)


def _sweep(sub) -> None:
    """`prunenet sweep`."""
    from ..methods import METHODS

    sw = sub.add_parser("sweep", help="perplexity of one method at many ratios, pruned in memory -> one JSON")
    model_flags(sw)
    sw.add_argument("--out", required=True)
    sw.add_argument("--method", default="prunenet", choices=METHODS.names())
    sw.add_argument("--ratios", type=float, nargs="+", required=True)
    method_options(sw)
    sw.add_argument("--ppl-dataset", default="wikitext2", choices=("wikitext2", "ptb"))
    sw.add_argument("--ppl-seq-len", type=number(int, 2), default=512)
    sw.add_argument("--ppl-blocks", type=POSITIVE_INT, help="max blocks (default: whole test split)")
    sw.set_defaults(func=commands.cmd_sweep)


def _rft(sub) -> None:
    """`prunenet rft`."""
    r = sub.add_parser("rft", help="LoRA recovery fine-tuning of a pruned checkpoint")
    model_flags(r)
    r.add_argument("--out", required=True)
    r.add_argument("--dataset", default="wikitext2")
    r.add_argument(
        "--samples",
        type=POSITIVE_INT,
        default=100,
        help="training samples (blocks of --seq-len tokens; Alpaca: records)",
    )
    r.add_argument("--data-dir")
    r.add_argument("--seq-len", type=number(int, 2), default=256)
    r.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    r.add_argument("--lr", type=POSITIVE, default=2e-4)
    r.add_argument("--epochs", type=POSITIVE, default=1.0)
    r.add_argument("--max-steps", type=POSITIVE_INT)
    r.add_argument("--lora-r", type=int, default=8)
    r.add_argument("--lora-alpha", type=int, default=16)
    r.add_argument("--lora-dropout", type=float, default=0.05)
    r.add_argument("--eval-every", type=int, default=10)
    r.add_argument("--val-fraction", type=float, default=0.1)
    r.add_argument("--test-blocks", type=int, default=16, help="test-split blocks for perplexity before/after")
    r.add_argument("--micro-batch-size", type=int, default=2, help="gradient accumulation chunk (memory)")
    r.add_argument("--allow-truncate", action="store_true", help="use all available samples if fewer than requested")
    dtype_flag(r, "the weights' dtype while fine-tuned")
    r.add_argument("--log-csv", required=True)
    r.set_defaults(func=commands.cmd_rft)


def _spectra(sub) -> None:
    """`prunenet spectra`."""
    from .. import choices

    sp = sub.add_parser("spectra", help="singular values of checkpoints' FFN state matrices -> CSV (Figure 1 data)")
    sp.add_argument("--inputs", nargs="+", required=True, help="checkpoint directories")
    sp.add_argument("--out", required=True, help="CSV file")
    sp.add_argument("--layers", type=int, nargs="+", help="layer indices, negative from the end (default: 0 -1)")
    sp.add_argument("--state", default=choices.DEFAULT_STATE, choices=choices.STATES)
    sp.add_argument("--experiment", default="reports")
    sp.set_defaults(func=commands.cmd_spectra)


class _ReportKinds:
    """``report``'s choices, read from the report registry only when argparse checks or prints them: importing
    :mod:`prunenet.reporting` (pandas) would otherwise cost every other command's job its time (~1 CPU-s)."""

    def _names(self) -> list[str]:
        from .. import reporting

        return list(reporting.REPORTS)

    def __contains__(self, kind: object) -> bool:
        return kind in self._names()

    def __iter__(self):
        return iter(self._names())


def _report(sub) -> None:
    """`prunenet report`."""
    rep = sub.add_parser("report", help="aggregate evaluation outputs into tables and figures")
    # a metavar: argparse formats an argument's choices when it is added, which would read the registry now
    rep.add_argument("kind", metavar="KIND", choices=_ReportKinds(), help="what to build: %(choices)s")
    rep.add_argument("--inputs", nargs="+", required=True)
    rep.add_argument("--out", required=True)
    rep.add_argument("--out-md", help="Markdown twin of a table (tables only)")
    rep.add_argument("--experiment", default="reports")
    rep.add_argument("--options", help="JSON dict of extra options")
    rep.set_defaults(func=commands.cmd_report)


SUBCOMMANDS = (_download, _train, _prune, _prepare, _evaluate, _speed, _export, _sweep, _rft, _spectra, _report)
