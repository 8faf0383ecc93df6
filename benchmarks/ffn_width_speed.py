"""Benchmark: does rounding the kept FFN width to a multiple of 8 or 64 change inference speed? (Table 9's option)

    .venv/bin/python benchmarks/ffn_width_speed.py [--model PATH|NAME] [--ratio 0.3] [--multiples 1 8 64]
        [--threads 0] [--batch-sizes 1 8] [--prompt-len 128] [--gen-len 32] [--repeats 5] [--device cpu]

Prunes the model's FFN rows at ``--ratio`` once per multiple (random rows: speed depends on the widths, not on
which rows stay; ``prune.ffn_multiple`` in the workflow), measures each with :func:`prunenet.speed.measure`
(the same protocol as the ``speed`` rule) and dense once, and prints the kept width, parameters, FLOPs-ideal
speed-up and measured prefill/decode tokens/s (median [quartiles]) per multiple and batch size. The models are
measured in turn, round-robin over ``--rounds``, so slow drift of a shared machine spreads over all of them.
The last line is the headline: decode speed-up of the largest multiple over multiple 1 at the largest batch.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from prunenet.models import load_model
from prunenet.slicing import plan_rows, prune_ffn
from prunenet.speed import SpeedSettings, measure
from prunenet.stats import count_params

CACHED_CKPT = Path.home() / ".cache" / "prunenet-tests" / "smollm2-135m"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(CACHED_CKPT) if (CACHED_CKPT / "config.json").is_file() else "smollm2-135m")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--multiples", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, every core)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5, help="timed generations per model and round")
    ap.add_argument("--rounds", type=int, default=2, help="passes over all models (their timings are pooled)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    models = {"dense": load_model(args.model, device=args.device)[0]}
    for m in args.multiples:
        model = load_model(args.model, device=args.device)[0]
        widths = prune_ffn(model, plan_rows(model, "random", args.ratio, seed=0, multiple=m))
        models[f"x{m}"] = model
        print(f"multiple {m}: kept FFN width {widths[0]}, {count_params(model):,} params")
    st = SpeedSettings(tuple(args.batch_sizes), args.prompt_len, args.gen_len, warmup=1, repeats=args.repeats)
    pooled: dict[str, dict] = {name: {} for name in models}
    flops = {}
    for _ in range(args.rounds):
        for name, model in models.items():
            res = measure(model, model.config.vocab_size, st)
            flops[name] = res.flops_per_token
            for cell, r in res.cells.items():
                for kind in ("prefill_tok_s", "decode_tok_s"):
                    pooled[name].setdefault((cell, kind), []).extend(r[kind]["values"])
    print(f"device {args.device}, {torch.get_num_threads()} threads, ratio {args.ratio}, {st}")
    print(f"{'model':>6} {'ideal':>6} {'batch':>5} {'prefill tok/s':>24} {'decode tok/s':>22}")
    for name in models:
        for b in args.batch_sizes:
            cells = []
            for kind in ("prefill_tok_s", "decode_tok_s"):
                v = pooled[name][(f"b{b}", kind)]
                q = statistics.quantiles(v, n=4, method="inclusive")
                cells.append(f"{statistics.median(v):8.1f} [{q[0]:7.1f}, {q[2]:7.1f}]")
            print(f"{name:>6} {flops['dense'] / flops[name]:6.3f} {b:5d} {cells[0]:>24} {cells[1]:>22}")
    big, b = f"x{max(args.multiples)}", max(args.batch_sizes)
    ratio = statistics.median(pooled[big][(f"b{b}", "decode_tok_s")]) / statistics.median(
        pooled["x1"][(f"b{b}", "decode_tok_s")]
    )
    print(f"decode speed-up of multiple {max(args.multiples)} over 1 at batch {b}: {ratio:.3f}x")


if __name__ == "__main__":
    main()
