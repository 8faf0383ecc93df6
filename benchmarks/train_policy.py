"""Benchmark: PruneNet policy training vs its lower bound (one svdvals per layer per episode).

    .venv/bin/python benchmarks/train_policy.py [--model smollm2-135m] [--episodes 20]
        [--state up] [--samples 1 --baseline none]

Prints training time, the lower bound (episodes × samples × one batched ``svdvals`` over all
layers' pruned state matrix — the spectra the penalty cannot avoid), their ratio and peak RSS.
Targets on a 2-core CPU: ratio ≤ 1.5, training ≤ 90 s.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from prunenet.models import load_model
from prunenet.policy import n_keep
from prunenet.training import TrainConfig, collect_states, train_policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--spectrum", default="svd", choices=["svd", "gram"])
    ap.add_argument("--state", default="up", choices=["up", "gate", "down"])
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--baseline", default="none", choices=["none", "running", "loo"])
    args = ap.parse_args()

    model, _ = load_model(args.model, dtype="float32")
    states = collect_states(model, args.state)
    del model
    L, n, d = states.shape
    k = n_keep(n, args.ratio)

    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(args.episodes * args.samples):
        rows = torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(L)])
        pruned = torch.stack([s[r] for s, r in zip(states, rows)])
        torch.linalg.svdvals(pruned)
    lower = time.perf_counter() - t0

    t0 = time.perf_counter()
    cfg = TrainConfig(
        ratio=args.ratio,
        episodes=args.episodes,
        spectrum=args.spectrum,
        state=args.state,
        samples=args.samples,
        baseline=args.baseline,
    )
    result = train_policy(states, cfg, progress=False)
    train = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"layers×rows×cols        {L}×{n}×{d}, keep {k} rows, {args.episodes} episodes × {args.samples} draws, "
        f"state={args.state}, baseline={args.baseline}, spectrum={args.spectrum}"
    )
    print(f"threads                 {torch.get_num_threads()}")
    print(f"policy training         {train:7.2f} s")
    print(f"lower bound (svdvals)   {lower:7.2f} s")
    print(f"ratio                   {train / lower:7.2f}x   (target <= 1.5x, <= 90 s)")
    print(f"peak RSS                {rss:7.0f} MiB")
    print(f"penalty first/best      {result.history[0]:.4f} / {min(result.history):.4f}")


if __name__ == "__main__":
    main()
