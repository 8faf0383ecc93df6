"""One case of the scale rehearsal (benchmarks/scale_rehearsal.py), run in its own process.

    python benchmarks/rehearsal_case.py CASE.json OUT.json

CASE.json: shape, layers, method, device, and the ``prunenet prune`` (and, for a policy method, ``prunenet
train``) argument lists the parent built from the config. The case builds a random-weight model of that shape with
transformers' own config class, replaces the calibration corpus by seeded random token ids (this measures cost, not
quality), and runs the method through the CLI's own parser, request builder, :func:`prunenet.methods.pipeline.check`
and :func:`prunenet.methods.pipeline.apply` (what ``prunenet prune`` runs between loading and saving). It writes the
CPU seconds and wall seconds of that work, the process's RSS before the model and at its peak, the model's size
and, on CUDA, ``torch.cuda.max_memory_allocated``; where the method's meta records them, its stages' seconds and the
number of matrices it factored. A method whose result misses its parameter budget
(:class:`prunenet.errors.BudgetMissed`, raised once its work is done: a rank search on random weights can land
off target) is measured all the same, the miss recorded beside the cost (``budget_missed``); any other error
fails the case.

Why a process per case: ``ru_maxrss`` is a process's peak, so each case gets a fresh one.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Transformers' config arguments per shape (LLaMA-2-7B and Phi-2 as published; tiny for the tests).
SHAPES: dict[str, tuple[str, dict]] = {
    "llama2-7b": (
        "LlamaConfig",
        dict(
            hidden_size=4096,
            intermediate_size=11008,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32000,
        ),
    ),
    "phi-2": (
        "PhiConfig",
        dict(
            hidden_size=2560,
            intermediate_size=10240,
            num_attention_heads=32,
            vocab_size=51200,
            partial_rotary_factor=0.4,
        ),
    ),
    "tiny": (
        "LlamaConfig",
        dict(hidden_size=64, intermediate_size=160, num_attention_heads=4, num_key_value_heads=4, vocab_size=256),
    ),
}


def model_config(shape: str, layers: int):
    """The transformers config of ``shape`` with ``layers`` decoder layers."""
    import transformers

    cls, kwargs = SHAPES[shape]
    return getattr(transformers, cls)(num_hidden_layers=layers, max_position_embeddings=4096, **kwargs)


def rss_bytes() -> int:
    """This process's resident set now (``ru_maxrss`` only gives the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def random_calibration(vocab: int):
    """A stand-in for :func:`prunenet.data.calibration_blocks`: seeded random token ids of the asked shape."""
    import torch

    def blocks(tokenizer, dataset="wikitext2", data_dir=None, n_samples=1, seq_len=2, seed=0):
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randint(0, vocab, (int(n_samples), int(seq_len)), generator=gen)

    return blocks


class Clock:
    """CPU and wall seconds summed over the ``with`` blocks it times (the method's work, model building excluded)."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def __enter__(self) -> Clock:
        self._cpu, self._wall = cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.cpu += cpu_seconds() - self._cpu
        self.wall += time.perf_counter() - self._wall


def build(config, device: str, dtype=None):
    """The random-weight model (seed 0) on ``device``, in ``dtype`` (float32 by default; a case builds it in the
    dtype ``prunenet prune`` would load: bfloat16 on CUDA)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32).eval().to(device)


def train_policy(make: Callable, train_argv: list[str], work: Path, clock: Clock) -> str:
    """``prunenet train`` (the CLI's parser and config checks) on a model ``make`` builds, freed before training as
    the train command frees it (the workflow prunes in a second process); returns the policy file."""
    from dataclasses import fields

    from prunenet.cli import build_parser
    from prunenet.policy import save_policy
    from prunenet.policy_training import check_train_config, policy_task, train_and_score
    from prunenet.training import TrainConfig

    out, meta = work / "policy.safetensors", work / "policy.json"
    head = ["train", "--model", "rehearsal", "--out", str(out), "--meta-out", str(meta)]
    args = build_parser().parse_args(head + train_argv)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    check_train_config(cfg)
    model = make()
    with clock:
        task = policy_task(model, cfg)
    del model
    with clock:
        trained = train_and_score(task, cfg, "rehearsal", args.eval_samples, progress=False)
    save_policy(out, meta, trained.result.best, trained.result.last, trained.meta, eq3=cfg.eq3)
    return str(out)


def run_case(case: dict) -> dict:
    """Build the model, run the method as ``prunenet prune`` does, and measure it."""
    import torch

    import prunenet.data
    from prunenet.cli import build_parser
    from prunenet.commands.pipeline import prune_request
    from prunenet.errors import BudgetMissed
    from prunenet.methods import METHODS
    from prunenet.methods.pipeline import apply, check
    from prunenet.models import resolve_dtype

    torch.set_num_threads(1)
    device = case["device"]
    cuda = device.startswith("cuda")
    method = METHODS.get(case["method"])
    base_rss = rss_bytes()
    config = model_config(case["shape"], case["layers"])
    prunenet.data.calibration_blocks = random_calibration(config.vocab_size)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        args = build_parser().parse_args(case["prune_argv"])  # parsed once, as prunenet prune parses it
        dtype = resolve_dtype(args.dtype, device)  # as PruneRequest.weights_dtype
        if method.needs_policy:
            make = lambda: build(config, device, dtype)  # noqa: E731
            args.policy = train_policy(make, case["train_argv"], Path(tmp), clock)
        model = build(config, method.load_device(device), dtype)  # as pipeline.compress loads it
        params = sum(p.numel() for p in model.parameters())
        missed, meta = None, {}
        with clock:
            request = check(case["method"], prune_request(args))
            try:
                pruned, meta = apply(method, model, None, request)
            except BudgetMissed as exc:  # the search landed off target on random weights: its work is done
                pruned, missed, meta = None, str(exc), exc.meta
            if cuda:
                torch.cuda.synchronize()
    out = {
        "cpu_s": clock.cpu,
        "wall_s": clock.wall,
        "params": params,
        "params_after": sum(p.numel() for p in pruned.parameters()) if pruned is not None else None,
        "weight_bytes_fp32": 4 * params,
        "dtype": str(dtype).removeprefix("torch."),
        "base_rss": base_rss,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if cuda:
        out["peak_cuda"] = torch.cuda.max_memory_allocated()
    if missed:
        out["budget_missed"] = missed
    return out | work_record(meta)


def work_record(meta: dict) -> dict:
    """What the method's meta says of its work, where it says it: its stages' wall seconds and how many matrices
    it factored (ASVD's rank search factors a number that depends on where it lands, and each is one SVD)."""
    out = {}
    if "stage_seconds" in meta:
        out["stage_seconds"] = {k: round(float(v), 3) for k, v in meta["stage_seconds"].items()}
    if "ranks" in meta:
        out["factored"] = len(meta["ranks"])
    return out


def main(argv: list[str]) -> int:
    os.environ["PRUNENET_MLFLOW"] = "0"
    os.environ.setdefault("TQDM_DISABLE", "1")
    case = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(run_case(case)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
