"""Benchmark: what the KS penalty rewards on a model, what a PruneNet policy can reach, and what it costs.

    .venv/bin/python benchmarks/policy_headroom.py [--model smollm2-135m] [--ratio 0.3] [--draws 20]
        [--ppl-blocks 8] [--data-dir ../shared/data] [--train [--init paper]]

For each state matrix (up, gate, down) and each row selection below, prints the KS penalty (mean over
layers) and, with ``--ppl-blocks`` > 0, the WikiText-2 test perplexity of the model pruned with it:
- random rows (KS: mean ± std over ``--draws`` draws; perplexity: min–max over the first ``--ppl-draws``);
- the largest- and smallest-norm rows: the penalty rewards the former, but a PruneNet policy (a
  *linear* row score, paper Eq. 3) cannot express it, as a row and its negative have the same norm
  and the penalty ignores row signs;
- the top rows along each layer's mean-row direction, and along one direction shared by all layers
  (the mean of all rows): the latter is what a linear score shared by all layers can express;
- with ``--train``: the policy trained on that state (paper objective, 20 episodes of 4 draws with the
  leave-one-out baseline, lr 5e-3; ``--init official``: the released initialisation, W_proj ~ U(0, 1) and W_inter
  with a bias), one draw.
``|mean row| / mean |row|`` near 0 means the rows are sign-symmetric: a linear score has nothing to
hold on to, and the policy cannot beat random rows on that state.
"""

from __future__ import annotations

import argparse
import copy

import torch

from prunenet.choices import INITS
from prunenet.data import load_texts
from prunenet.evaluation import perplexity
from prunenet.models import load_model
from prunenet.penalties import spectra
from prunenet.policy import n_keep, select_rows
from prunenet.slicing import prune_ffn
from prunenet.training import TrainConfig, collect_states, layer_penalties, make_policy, train_policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--states", default="up,gate,down")
    ap.add_argument("--ppl-blocks", type=int, default=8, help="WikiText-2 test blocks of 512 tokens (0: no perplexity)")
    ap.add_argument("--ppl-draws", type=int, default=3, help="random draws whose perplexity is measured")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--train", action="store_true", help="also train a policy per state and score one of its draws")
    ap.add_argument("--init", default="paper", choices=INITS, help="the trained policy's initialisation (policy.init)")
    args = ap.parse_args()

    model, tok = load_model(args.model, dtype="float32")
    texts = load_texts("wikitext2", "test", args.data_dir) if args.ppl_blocks else []

    def ppl_of(rows: list[torch.Tensor]) -> float:
        pruned = copy.deepcopy(model)
        prune_ffn(pruned, [torch.sort(r).values for r in rows])
        return perplexity(pruned, tok, texts, seq_len=512, max_blocks=args.ppl_blocks, desc="ppl")["ppl"]

    def ppl(rows: list[torch.Tensor]) -> str:
        return f"{ppl_of(rows):12.1f}" if args.ppl_blocks else ""

    print(
        f"{args.model}, r={args.ratio}: KS penalty (mean over layers)"
        + (f" and WikiText-2 test perplexity ({args.ppl_blocks}×512 tokens)" if args.ppl_blocks else "")
    )
    if args.ppl_blocks:
        dense = perplexity(model, tok, texts, seq_len=512, max_blocks=args.ppl_blocks, desc="ppl")["ppl"]
        print(f"dense perplexity {dense:.2f}")
    for name in args.states.split(","):
        states = collect_states(model, name)
        L, n, _ = states.shape
        k = n_keep(n, args.ratio)
        dense_spectra = spectra(states, "gram")

        # called only within this iteration, so the loop variables they read are the current ones
        def penalty(rows: list[torch.Tensor]) -> float:
            return float(layer_penalties(states, rows, "ks", "gram", dense_spectra).mean())  # noqa: B023

        def top(scores: torch.Tensor) -> list[torch.Tensor]:
            return [torch.topk(s, k).indices for s in scores]  # noqa: B023

        gen = torch.Generator().manual_seed(0)
        draws = [[torch.randperm(n, generator=gen)[:k] for _ in range(L)] for _ in range(args.draws)]
        rnd = torch.tensor([penalty(d) for d in draws])
        norms = states.norm(dim=-1)
        layer_mean = states.mean(1, keepdim=True)
        shared = states.mean((0, 1))
        print(
            f"[{name}] {L}×{n}×{states.shape[2]}, keep {k} rows; |mean row| / mean |row| = "
            f"{float(layer_mean.norm(dim=-1).mean() / norms.mean()):.3f}"
        )
        print(f"  {'selection':34s} {'KS':>15s} {'perplexity' if args.ppl_blocks else '':>12s}")
        rnd_ppl = [ppl_of(d) for d in draws[: args.ppl_draws]] if args.ppl_blocks else []
        span = f"{min(rnd_ppl):.1f}–{max(rnd_ppl):.1f}" if rnd_ppl else ""
        print(f"  {'random rows':34s} {rnd.mean():8.4f} ± {rnd.std():.4f} {span:>12s}")
        for label, scores in (
            ("largest-norm rows", norms),
            ("smallest-norm rows", -norms),
            ("along each layer's mean row", (states * layer_mean).sum(-1)),
            ("along one shared direction", states @ shared),
        ):
            rows = top(scores)
            print(f"  {label:34s} {penalty(rows):8.4f}         {ppl(rows)}")
        if args.train:
            cfg = TrainConfig(
                ratio=args.ratio, state=name, samples=4, baseline="loo", lr=5e-3, spectrum="gram", init=args.init
            )
            result = train_policy(states, cfg, progress=False)
            policy = make_policy(cfg, n, states.shape[2])
            policy.load_state_dict(result.best)
            with torch.no_grad():
                importance = policy(states)
            g = torch.Generator().manual_seed(0)
            rows = [select_rows("policy", n, k, importance[l], g) for l in range(L)]
            label = f"trained policy (loo ×4, init {args.init})"
            print(f"  {label:34s} {penalty(rows):8.4f}         {ppl(rows)}")


if __name__ == "__main__":
    main()
