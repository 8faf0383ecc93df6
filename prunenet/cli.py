"""``python -m prunenet <command>``: what the workflow rules call, one command per stage.

Every command logs one MLflow run (see :mod:`prunenet.tracking`) and writes its outputs
atomically. User mistakes end with one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import commands
from .errors import PruneNetError
from .ratios import RatioSpec


class Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one line naming the fix, exit status 2 (no usage dump)."""

    def error(self, message: str):  # noqa: D102 (argparse's hook)
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _number(kind: type, low: float, inclusive: bool = True):
    """An argparse type: a ``kind`` number ≥ ``low`` (> ``low`` when not ``inclusive``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if value < low or (not inclusive and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT = _number(int, 1)
NONNEG_INT = _number(int, 0)
POSITIVE = _number(float, 0.0, inclusive=False)


def _device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` that this torch can use (checked now, not after a model loads)."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda or cuda:N")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text} requested but this torch sees no CUDA device: use --device cpu")
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: only {torch.cuda.device_count()} CUDA device(s)")
    return text


def _ratio(text: str) -> RatioSpec:
    """``--ratio``, parsed once into the value every later step reads (syntax checked before any model loads)."""
    try:
        return RatioSpec.parse(text)
    except PruneNetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ppl_args(sp) -> None:
    sp.add_argument(
        "--ppl-datasets",
        nargs="*",
        default=["wikitext2"],
        choices=("wikitext2", "ptb"),
        help="test splits (none: skip)",
    )
    sp.add_argument("--ppl-seq-len", type=_number(int, 2), default=512)
    sp.add_argument("--ppl-blocks", type=POSITIVE_INT, help="max blocks per dataset (default: whole test split)")


def method_options(sp, policy_help: str | None = None, policy: bool = True) -> None:
    """What a method may need, grouped by need (shared by ``prune``, ``sweep`` and ``prepare``): the policy
    file(s), which episode's policy, and the calibration settings. ``policy_help``: add ``--policy`` (prune);
    without it ``--policies`` takes one file per ratio (sweep); ``policy=False``: no policy flags (prepare)."""
    from . import choices
    from .data import CALIB_SAMPLES, CALIB_SEQ_LEN, TEXT_DATASETS
    from .methods import METHODS

    def users(need: str) -> str:
        return ", ".join(name for name, m in METHODS.items() if getattr(m, need))

    if policy:
        pol = sp.add_argument_group(f"policy ({users('needs_policy')})")
        if policy_help:
            pol.add_argument("--policy", help=policy_help)
        else:
            pol.add_argument("--policies", nargs="*", default=[], help="one policy file per ratio (policy methods)")
        pol.add_argument("--which", default=choices.DEFAULT_WHICH, choices=choices.WHICH)
        pol.add_argument(
            "--state", default=choices.DEFAULT_STATE, choices=choices.STATES, help="only used without a policy"
        )
    cal = sp.add_argument_group(f"calibration ({users('needs_calibration')})")
    cal.add_argument("--calib-dataset", default="wikitext2", choices=TEXT_DATASETS)
    cal.add_argument("--calib-samples", type=POSITIVE_INT, default=CALIB_SAMPLES)
    cal.add_argument("--calib-seq-len", type=_number(int, 2), default=CALIB_SEQ_LEN)
    cal.add_argument("--damping", type=float, default=0.01)
    cal.add_argument("--round-to", type=int, default=8)
    sp.add_argument(
        "--ffn-multiple",
        type=POSITIVE_INT,
        default=1,
        help="round the FFN rows kept per layer to a multiple of this (8, 64: aligned kernels); every method's budget",
    )
    cal.add_argument("--data-dir", help="local benchmark data (offline); default: the hub")
    for name, method in METHODS.items():
        if method.options:
            grp = sp.add_argument_group(f"{name} options")
            for o in method.options:
                grp.add_argument(
                    o.flag(name), dest=o.dest(name), type=o.type, default=o.default, choices=o.choices, help=o.help
                )


def export_args(sub) -> None:
    """``prunenet export CKPT --format gguf --type ... --out FILE`` (llama.cpp; see :mod:`prunenet.export`)."""
    from . import choices

    x = sub.add_parser("export", help="write a checkpoint as a GGUF file for llama.cpp")
    x.add_argument("checkpoint", help="checkpoint directory")
    x.add_argument("--format", default="gguf", choices=["gguf"])
    x.add_argument("--type", default="f16", choices=choices.GGUF_TYPES, help="tensor type (q8_0, q4_k_m: llama.cpp)")
    x.add_argument("--merge-low-rank", action="store_true", help="multiply SVD-LLM/ASVD factors back (no saving)")
    x.add_argument("--out", required=True, help="the .gguf file")
    x.set_defaults(func=commands.cmd_export)


def build_parser() -> argparse.ArgumentParser:
    from . import choices, reporting
    from .methods import METHODS

    p = Parser(prog="prunenet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, model_help="model checkpoint directory"):
        sp.add_argument("--model", required=True, help=model_help)
        sp.add_argument("--model-name", help="MLflow experiment name (default: model directory name)")
        sp.add_argument("--device", type=_device, default="cpu", help="cpu or cuda[:i]")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--flops-seq-len", type=int, default=2048, help="context length for FLOP counts")

    d = sub.add_parser("download", help="resolve a model spec into a local safetensors checkpoint")
    d.add_argument("--model", default="smollm2-135m", help="embedded name, .gguf file, local dir or hub id")
    d.add_argument("--model-name")
    d.add_argument("--out", required=True)
    d.add_argument("--dtype", default="float32")
    d.set_defaults(func=commands.cmd_download)

    t = sub.add_parser("train", help="train the PruneNet policy (REINFORCE, no calibration data)")
    common(t)
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
    t.add_argument(
        "--eval-samples", type=POSITIVE_INT, default=20, help="draws used to compare the policy with random rows"
    )
    t.set_defaults(func=commands.cmd_train)

    pr = sub.add_parser("prune", help="compress a checkpoint with any registered method")
    common(pr)
    pr.add_argument("--out", required=True)
    pr.add_argument(
        "--method",
        default="prunenet",
        choices=METHODS.names(),
        help="; ".join(f"{name}: {m.summary}" for name, m in METHODS.items()),
    )
    pr.add_argument(
        "--ratio",
        type=_ratio,
        required=True,
        help="0.3, a per-layer list 0.1,0.2,... or a schedule: linear:0.1:0.5 (first:last), shuffled:0:0.4[:SEED]",
    )

    method_options(pr, policy_help="policy file from `prunenet train`")
    pr.add_argument(
        "--prepared",
        help="the method's ratio-independent state from `prunenet prepare` (same model, seed, calibration, options)",
    )
    pr.set_defaults(func=commands.cmd_prune)

    prepared = [name for name, m in METHODS.items() if m.prepare is not None]
    pp = sub.add_parser("prepare", help="a method's ratio-independent work, once, for `prune --prepared` at any ratio")
    common(pp)
    pp.add_argument("--out", required=True, help=".safetensors file")
    pp.add_argument("--method", required=True, choices=prepared)
    method_options(pp, policy=False)
    pp.set_defaults(func=commands.cmd_prepare)

    e = sub.add_parser("evaluate", help="zero-shot lm-eval tasks and perplexity -> one JSON")
    common(e)
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
    e.add_argument("--dtype", default="auto")
    e.add_argument("--data-dir", help="local benchmark data (offline); default: lm-eval's hub tasks")
    e.add_argument("--setting", default="default", help="label: the policy id or 'default' (tables group by it)")
    ppl_args(e)
    e.set_defaults(func=commands.cmd_evaluate)

    sp_ = sub.add_parser("speed", help="prefill and decode tokens/s of a checkpoint (paper Table 9b) -> one JSON")
    common(sp_)
    sp_.add_argument("--out", required=True)
    sp_.add_argument("--method", help="label (default: from the checkpoint's metadata)")
    sp_.add_argument("--setting", default="default", help="label: the policy id or 'default'")
    sp_.add_argument("--dtype", default="auto")
    sp_.add_argument("--batch-sizes", type=POSITIVE_INT, nargs="+", default=[1, 8])
    sp_.add_argument("--prompt-len", type=POSITIVE_INT, default=128, help="prompt tokens per sequence (prefill)")
    sp_.add_argument("--gen-len", type=_number(int, 2), default=32, help="tokens generated per sequence")
    sp_.add_argument("--warmup", type=NONNEG_INT, default=1, help="untimed generations before the timed ones")
    sp_.add_argument("--repeats", type=POSITIVE_INT, default=5, help="timed generations (median and spread)")
    sp_.add_argument(
        "--backend",
        choices=["torch", "llamacpp"],
        default="torch",
        help="llamacpp: --model is a GGUF file (prunenet export), batch 1, every core, llama.cpp's own timings",
    )
    sp_.set_defaults(func=commands.cmd_speed)

    export_args(sub)

    sw = sub.add_parser("sweep", help="perplexity of one method at many ratios, pruned in memory -> one JSON")
    common(sw)
    sw.add_argument("--out", required=True)
    sw.add_argument("--method", default="prunenet", choices=METHODS.names())
    sw.add_argument("--ratios", type=float, nargs="+", required=True)
    method_options(sw)
    sw.add_argument("--ppl-dataset", default="wikitext2", choices=("wikitext2", "ptb"))
    sw.add_argument("--ppl-seq-len", type=_number(int, 2), default=512)
    sw.add_argument("--ppl-blocks", type=POSITIVE_INT, help="max blocks (default: whole test split)")
    sw.set_defaults(func=commands.cmd_sweep)

    r = sub.add_parser("rft", help="LoRA recovery fine-tuning of a pruned checkpoint")
    common(r)
    r.add_argument("--out", required=True)
    r.add_argument("--dataset", default="wikitext2")
    r.add_argument(
        "--samples",
        type=POSITIVE_INT,
        default=100,
        help="training samples (blocks of --seq-len tokens; Alpaca: records)",
    )
    r.add_argument("--data-dir")
    r.add_argument("--seq-len", type=_number(int, 2), default=256)
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
    r.add_argument("--dtype", default="auto")
    r.add_argument("--log-csv", required=True)
    r.set_defaults(func=commands.cmd_rft)

    sp = sub.add_parser("spectra", help="singular values of checkpoints' FFN state matrices -> CSV (Figure 1 data)")
    sp.add_argument("--inputs", nargs="+", required=True, help="checkpoint directories")
    sp.add_argument("--out", required=True, help="CSV file")
    sp.add_argument("--layers", type=int, nargs="+", help="layer indices, negative from the end (default: 0 -1)")
    sp.add_argument("--state", default=choices.DEFAULT_STATE, choices=choices.STATES)
    sp.add_argument("--experiment", default="reports")
    sp.set_defaults(func=commands.cmd_spectra)

    rep = sub.add_parser("report", help="aggregate evaluation outputs into tables and figures")
    rep.add_argument("kind", choices=list(reporting.REPORTS))
    rep.add_argument("--inputs", nargs="+", required=True)
    rep.add_argument("--out", required=True)
    rep.add_argument("--out-md", help="Markdown twin of a table (tables only)")
    rep.add_argument("--experiment", default="reports")
    rep.add_argument("--options", help="JSON dict of extra options")
    rep.set_defaults(func=commands.cmd_report)
    return p


OUTPUT_FLAGS = ("out", "out_md", "meta_out", "log_csv")


def main(argv: list[str] | None = None) -> int:
    from .artifacts import check_writable

    args = build_parser().parse_args(argv)
    try:
        for flag in OUTPUT_FLAGS:  # every output location, before any model loads
            if getattr(args, flag, None):
                check_writable(getattr(args, flag), "--" + flag.replace("_", "-"))
        args.func(args)
    except PruneNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
