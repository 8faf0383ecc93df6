"""The CLI's argument types and shared flag groups: each value is checked (and parsed once) as argparse reads it,
so a wrong flag ends before any model loads, with one line naming the fix."""

from __future__ import annotations

import argparse

from ..errors import PruneNetError
from ..ratios import RatioSpec


class Parser(argparse.ArgumentParser):
    """argparse with the project's error contract: one line naming the fix, exit status 2 (no usage dump)."""

    def error(self, message: str):  # noqa: D102 (argparse's hook)
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def number(kind: type, low: float, inclusive: bool = True):
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


POSITIVE_INT = number(int, 1)
NONNEG_INT = number(int, 0)
POSITIVE = number(float, 0.0, inclusive=False)


def device_arg(text: str) -> str:
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


def ratio_arg(text: str) -> RatioSpec:
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
    sp.add_argument("--ppl-seq-len", type=number(int, 2), default=512)
    sp.add_argument("--ppl-blocks", type=POSITIVE_INT, help="max blocks per dataset (default: whole test split)")


def dtype_flag(sp, what: str) -> None:
    """``--dtype`` (choices.DTYPES, default auto) of the commands that load a model to compress or train on."""
    from .. import choices

    sp.add_argument(
        "--dtype", default="auto", choices=choices.DTYPES, help=f"{what} (auto: bfloat16 on CUDA, else float32)"
    )


def method_options(sp, policy_help: str | None = None, policy: bool = True) -> None:
    """What a method may need, grouped by need (shared by ``prune``, ``sweep`` and ``prepare``): the policy
    file(s), which episode's policy, and the calibration settings. ``policy_help``: add ``--policy`` (prune);
    without it ``--policies`` takes one file per ratio (sweep); ``policy=False``: no policy flags (prepare)."""
    from .. import choices
    from ..methods import METHODS

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
    cal.add_argument("--calib-dataset", default="wikitext2", choices=choices.DATASETS)
    cal.add_argument("--calib-samples", type=POSITIVE_INT, default=choices.CALIB_SAMPLES)
    cal.add_argument("--calib-seq-len", type=number(int, 2), default=choices.CALIB_SEQ_LEN)
    cal.add_argument("--damping", type=float, default=0.01)
    cal.add_argument("--round-to", type=int, default=8)
    sp.add_argument(
        "--ffn-multiple",
        type=POSITIVE_INT,
        default=1,
        help="round the FFN rows kept per layer to a multiple of this (8, 64: aligned kernels); every method's budget",
    )
    cal.add_argument("--data-dir", help="local benchmark data (offline); default: the hub")
    dtype_flag(sp, "the weights' dtype while compressing and in the saved model")
    for name, method in METHODS.items():
        if method.options:
            grp = sp.add_argument_group(f"{name} options")
            for o in method.options:
                grp.add_argument(
                    o.flag(name), dest=o.dest(name), type=o.type, default=o.default, choices=o.choices, help=o.help
                )


def model_flags(sp, model_help: str = "model checkpoint directory") -> None:
    """The flags every model-reading command shares."""
    sp.add_argument("--model", required=True, help=model_help)
    sp.add_argument("--model-name", help="MLflow experiment name (default: model directory name)")
    sp.add_argument("--device", type=device_arg, default="cpu", help="cpu or cuda[:i]")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--flops-seq-len", type=int, default=2048, help="context length for FLOP counts")
