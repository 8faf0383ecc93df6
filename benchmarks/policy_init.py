"""Benchmark: the first policy's importances under each initialisation (``policy.init: paper | official``).

    .venv/bin/python benchmarks/policy_init.py [--model smollm2-135m] [--state up] [--seeds 3]

Why: the paper init draws W_proj ~ U(±1/√n), whose signs cancel, so the untrained policy scores every row ≈ 0.5;
the released init draws W_proj ~ U(0, 1) (and gives W_inter a bias), so the untrained policy already prefers some
rows. How far apart they start bears on whether training can leave the uniform policy (docs/methods.md "PruneNet:
paper vs authors' code"). For each init and seed: the importances σ(logits) of every row of every layer's state,
their mean and standard deviation over rows (mean over layers). Seconds on a CPU. The last line is the headline.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from prunenet.choices import INITS, POLICY_STATES
from prunenet.models import load_model
from prunenet.training import TrainConfig, collect_states, make_policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--state", default="up", choices=POLICY_STATES)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    model, _ = load_model(args.model, dtype="float32")
    states = collect_states(model, args.state)
    del model
    L, n, d = states.shape
    print(f"model {args.model}, state {args.state}: {L} layers of {n}×{d}")
    summary = {}
    for init in INITS:
        means, sds = [], []
        for seed in range(args.seeds):
            cfg = TrainConfig(init=init)
            policy = make_policy(cfg, n, d, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                imp = policy(states)  # (L, n)
            means.append(float(imp.mean()))
            sds.append(float(imp.std(dim=1).mean()))
            print(f"init {init:8s} seed {seed}: importance {means[-1]:.3f} ± {sds[-1]:.3f} (sd over rows)")
        summary[init] = (statistics.mean(means), statistics.mean(sds))
    print(
        "headline: first importances "
        + ", ".join(f"init {k} {m:.3f} ± {s:.3f}" for k, (m, s) in summary.items())
        + f" (mean over {args.seeds} seeds; ± = sd over rows)"
    )


if __name__ == "__main__":
    main()
