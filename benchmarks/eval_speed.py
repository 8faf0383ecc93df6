"""Benchmark: lm-eval throughput of stock ``HFLM`` vs ``prunenet-cached-hf`` on the same model and items.

    .venv/bin/python benchmarks/eval_speed.py [--model PATH|NAME] [--limit 50] [--batch-size 8]
        [--data-dir ../shared/data] [--threads 1] [--repeats 1] [--clock wall|cpu]

Runs the five zero-shot tasks (piqa, winogrande, hellaswag, arc_easy, arc_challenge), each task
separately with both model classes (same batch size, same items), times the loglikelihood
requests only (task building excluded: both classes get the same prebuilt requests), checks
that greedy flags and per-item acc / acc_norm are identical (exits non-zero otherwise), reports
the largest per-request log-likelihood difference, how many exceed 1e-4 and the largest relative
difference |dLL| / |LL| (float32 rounding: the ULP of a log-likelihood of -194 is 1.5e-5), and prints per-task
and total items/s. The last line is ``speed-up N.NNx``: total
items/s of cached over stock, five tasks together. Target on a 2-core CPU: >= 2x.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch

from prunenet.evaluation import load_lm_tasks
from prunenet.evaluation.cached_lm import NAME
from prunenet.models import load_model

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"]
CACHED_CKPT = Path.home() / ".cache" / "prunenet-tests" / "smollm2-135m"


def build_requests(task, limit: int) -> list:
    """The task's loglikelihood Instances for its first ``limit`` docs (what the evaluator would send)."""
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return list(task.instances)


def item_metrics(task, instances: list, resps: list) -> dict[int, dict]:
    """Per-doc metrics (acc, acc_norm, ...) from one set of responses, via the task's own process_results."""
    by_doc = defaultdict(list)
    for inst, r in zip(instances, resps):
        by_doc[inst.doc_id].append((inst.idx, r))
    docs = dict(task.doc_iterator(rank=0, limit=len(by_doc), world_size=1))
    return {d: task.process_results(docs[d], [r for _, r in sorted(v)]) for d, v in sorted(by_doc.items())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(CACHED_CKPT) if (CACHED_CKPT / "config.json").is_file() else "smollm2-135m")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (0: torch's default; 1 is steadier on a shared CPU)"
    )
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per task and class, alternating; best kept")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier when other jobs share the cores)",
    )
    ap.add_argument("--work-dir", default="/tmp/prunenet-eval-speed")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    from lm_eval.api.registry import get_model

    model, tok = load_model(args.model, dtype="float32")
    lms = {
        kind: get_model(name)(pretrained=model, tokenizer=tok, batch_size=args.batch_size, device="cpu")
        for kind, name in (("stock", "hf"), ("cached", NAME))
    }
    _, top = load_lm_tasks(TASKS, args.data_dir, args.work_dir)
    warm = build_requests(top[TASKS[0]], 2)  # first calls pay one-off costs (thread pools, allocator)
    for lm in lms.values():
        lm.loglikelihood(warm, disable_tqdm=True)
    seconds = {kind: 0.0 for kind in lms}
    n_total = n_over = 0
    max_rel = 0.0
    print(
        f"model {args.model}, limit {args.limit}, batch size {args.batch_size}, "
        f"threads {torch.get_num_threads()}, {args.clock} clock, best of {args.repeats}"
    )
    print(f"{'task':<14}{'items':>6}{'requests':>9}{'stock it/s':>12}{'cached it/s':>12}{'ratio':>7}{'max |dLL|':>11}")
    for name in TASKS:
        task = top[name]
        instances = build_requests(task, args.limit)
        n_items = len({i.doc_id for i in instances})
        resps, secs = {}, {kind: float("inf") for kind in lms}
        for _ in range(args.repeats):
            for kind, lm in lms.items():
                t0 = clock()
                resps[kind] = lm.loglikelihood(instances, disable_tqdm=True)
                secs[kind] = min(secs[kind], clock() - t0)
        for kind in lms:
            seconds[kind] += secs[kind]
        diffs = [abs(a[0] - b[0]) for a, b in zip(resps["stock"], resps["cached"])]
        diff, over = max(diffs), sum(d > 1e-4 for d in diffs)
        max_rel = max(max_rel, *(d / max(abs(a[0]), 1e-12) for d, a in zip(diffs, resps["stock"])))
        greedy_same = all(a[1] == b[1] for a, b in zip(resps["stock"], resps["cached"]))
        items = {kind: item_metrics(task, instances, r) for kind, r in resps.items()}
        if not greedy_same or items["stock"] != items["cached"]:
            raise SystemExit(f"{name}: per-item results differ (max |dLL| {diff:.2e}, greedy same {greedy_same})")
        n_over += over
        n_total += n_items
        rate = {kind: n_items / s for kind, s in secs.items()}
        print(
            f"{name:<14}{n_items:>6}{len(instances):>9}{rate['stock']:>12.2f}{rate['cached']:>12.2f}"
            f"{rate['cached'] / rate['stock']:>6.2f}x{diff:>11.1e}"
        )
    total = {kind: n_total / s for kind, s in seconds.items()}
    print(f"{'total':<14}{n_total:>6}{'':>9}{total['stock']:>12.2f}{total['cached']:>12.2f}")
    print(
        f"per-item acc / acc_norm identical on every task; requests with |dLL| > 1e-4: {n_over}; "
        f"largest relative |dLL| / |LL|: {max_rel:.1e}"
    )
    print(f"speed-up {total['cached'] / total['stock']:.2f}x")


if __name__ == "__main__":
    main()
