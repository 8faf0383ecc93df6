"""Benchmark: the two readings of paper Eq. 3 (``eq3: coded | printed``) on a model, with the paper's settings.

    .venv/bin/python benchmarks/eq3_readings.py [--model smollm2-135m] [--ratio 0.3] [--seeds 3]
        [--episodes 20] [--draws 10] [--ppl-blocks 16] [--data-dir ../shared/data] [--init paper]

For each reading and seed, trains a policy (paper objective, state ``up``, ``--episodes`` episodes,
AdamW lr 5e-4, γ 0.99, one draw per episode, no baseline; ``--init official``: the released initialisation,
W_proj ~ U(0, 1) and W_inter with a bias, so that the init's effect alone is measured) and reports for its
``best`` policy:
- the KS penalty of the first and of the best training episode;
- the KS penalty of its draws (mean over layers, then over ``--draws`` draws), against random rows
  (mean ± std over ``--draws`` draws);
- the WikiText-2 test perplexity (``--ppl-blocks`` blocks of 512 tokens) of the model pruned with one
  draw of it (as ``prunenet prune --method prunenet`` does), against one random draw per seed.
The KS penalty is computed from the Gram spectrum (the same distance as the SVD one, tested).
The last line is the headline.

Cost on 2 CPU cores: 6 trainings (~25 s each) and 10 perplexity runs (~20 s each at 16×512 tokens),
about 8 min on idle cores (estimated from those timings); the run reported in docs/results.md took 26.5 min
while other jobs shared the cores. ``--seeds 2 --ppl-blocks 8`` roughly halves it.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from prunenet.choices import EQ3_READINGS, INITS
from prunenet.data import load_texts
from prunenet.evaluation import perplexity
from prunenet.models import load_model
from prunenet.penalties import spectra
from prunenet.policy import n_keep, select_rows
from prunenet.slicing import plan_rows, prune_ffn
from prunenet.training import TrainConfig, collect_states, layer_penalties, make_policy, train_policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--state", default="up")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--draws", type=int, default=10, help="draws whose KS penalty is averaged, per policy and random")
    ap.add_argument("--ppl-blocks", type=int, default=16, help="WikiText-2 test blocks of 512 tokens (0: none)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--init", default="paper", choices=INITS, help="the policy's initialisation (policy.init)")
    args = ap.parse_args()
    t_start = time.perf_counter()

    model, tok = load_model(args.model, dtype="float32")
    states = collect_states(model, args.state)
    L, n, d = states.shape
    k = n_keep(n, args.ratio)
    dense_spectra = spectra(states, "gram")
    texts = load_texts("wikitext2", "test", args.data_dir) if args.ppl_blocks else []

    def ks(rows: list[torch.Tensor]) -> float:
        return float(layer_penalties(states, rows, "ks", "gram", dense_spectra).mean())

    def ppl(rows: list[torch.Tensor]) -> float:
        if not args.ppl_blocks:
            return float("nan")
        pruned = copy.deepcopy(model)
        prune_ffn(pruned, [torch.sort(r).values for r in rows])
        return perplexity(pruned, tok, texts, seq_len=512, max_blocks=args.ppl_blocks, desc="ppl")["ppl"]

    def ks_of_draws(importance: torch.Tensor | None, selector: str, seed: int) -> list[float]:
        gen = torch.Generator().manual_seed(seed)
        imp = importance if importance is not None else [None] * L
        return [ks([select_rows(selector, n, k, imp[l], gen) for l in range(L)]) for _ in range(args.draws)]

    seeds = list(range(args.seeds))
    dense_ppl = (
        perplexity(model, tok, texts, seq_len=512, max_blocks=args.ppl_blocks, desc="ppl")["ppl"]
        if args.ppl_blocks
        else float("nan")
    )
    rnd_ks = ks_of_draws(None, "random", 12345)
    rnd_rows = [plan_rows(model, "random", args.ratio, None, args.state, seed) for seed in seeds]
    rnd_ppl = [ppl(rows) for rows in rnd_rows]
    print(
        f"{args.model}, state {args.state} ({L}×{n}×{d}), r={args.ratio}: keep {k} rows; paper objective, "
        f"{args.episodes} episodes, lr {args.lr:g}, γ {args.gamma}, one draw per episode, no baseline, "
        f"init {args.init}; "
        f"KS over {args.draws} draws; WikiText-2 test perplexity over {args.ppl_blocks}×512 tokens, one draw"
    )
    print(f"dense perplexity {dense_ppl:.2f}")
    header = (
        f"{'selection':18s} {'seed':>4s} {'KS ep. 1':>9s} {'KS best ep.':>11s} {'KS draws':>17s} {'perplexity':>11s}"
    )
    print(header)
    print("-" * len(header))
    rnd_mean, rnd_std = statistics.mean(rnd_ks), statistics.stdev(rnd_ks)
    print(f"{'random rows':18s} {'-':>4s} {'':>9s} {'':>11s} {rnd_mean:8.4f} ± {rnd_std:.4f}")
    for seed, rows, p in zip(seeds, rnd_rows, rnd_ppl):
        print(f"{'random rows':18s} {seed:4d} {'':>9s} {'':>11s} {ks(rows):8.4f} (1 draw) {p:11.1f}")
    summary = {}
    for eq3 in EQ3_READINGS:
        ks_means, ppls = [], []
        for seed in seeds:
            cfg = TrainConfig(
                ratio=args.ratio,
                episodes=args.episodes,
                gamma=args.gamma,
                lr=args.lr,
                state=args.state,
                eq3=eq3,
                spectrum="gram",
                seed=seed,
                init=args.init,
            )
            result = train_policy(states, cfg, progress=False)
            policy = make_policy(cfg, n, d)
            policy.load_state_dict(result.best)
            with torch.no_grad():
                draws = ks_of_draws(policy(states), "policy", seed + 1)
            p = ppl(plan_rows(model, "policy", args.ratio, policy, args.state, seed))
            ks_means.append(statistics.mean(draws))
            ppls.append(p)
            print(
                f"{'policy eq3=' + eq3:18s} {seed:4d} {result.history[0]:9.4f} {min(result.history):11.4f} "
                f"{statistics.mean(draws):8.4f} ± {statistics.stdev(draws):.4f} {p:11.1f}"
            )
        summary[eq3] = (ks_means, ppls)
    print("-" * len(header))
    rnd_se = rnd_std / len(rnd_ks) ** 0.5
    for eq3, (ks_means, ppls) in summary.items():
        gap, lo, hi = statistics.mean(ks_means) - rnd_mean, min(ks_means), max(ks_means)
        print(
            f"eq3={eq3:8s} KS of draws {statistics.mean(ks_means):.4f} (seeds {lo:.4f}–{hi:.4f}), "
            f"{gap:+.4f} vs random ({gap / rnd_se:+.1f} random-draw SE; 1 KS step = {1 / d:.4f}); "
            f"perplexity median {statistics.median(ppls):.0f} ({min(ppls):.0f}–{max(ppls):.0f})"
        )
    print(f"time {time.perf_counter() - t_start:.0f} s, {torch.get_num_threads()} threads")
    c, p = summary["coded"], summary["printed"]
    print(
        f"headline: r={args.ratio} {args.state}, paper settings, init {args.init}, {args.seeds} seeds: KS coded "
        f"{statistics.mean(c[0]):.4f}, printed {statistics.mean(p[0]):.4f}, random {rnd_mean:.4f}; "
        f"WikiText-2 ppl median coded {statistics.median(c[1]):.0f}, printed {statistics.median(p[1]):.0f}, "
        f"random {statistics.median(rnd_ppl):.0f} (dense {dense_ppl:.1f})"
    )


if __name__ == "__main__":
    main()
