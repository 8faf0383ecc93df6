"""Benchmark: how often two calibration draws give ASVD's rank search the same rank for a matrix.

    .venv/bin/python benchmarks/asvd_agreement.py [--model smollm2-135m] [--ratio 0.3] [--seeds 0 1]
        [--asvd-sensitivity stable_rank|ppl] [--asvd-sens-samples N] [--asvd-sens-seq-len T]
        [--data-dir ../shared/data]

Why: ASVD's rank search (STRS) gives each decoder matrix a parameter ratio from its sensitivity. With the
``ppl`` metric measured on the few tokens a CPU affords, the allocation follows the calibration draw's noise
rather than the model; a reader comparing ASVD's seeds would be comparing that noise. Each seed draws its own
calibration windows exactly as ``prunenet prune --seed`` does (the workflow's ``calibration_seeds: all``), and
ASVD runs as in the pipeline (``pipeline.check`` then ``pipeline.apply``) with the method's defaults unless a
flag names another value.

Printed: per draw the process CPU seconds (one thread: the honest cost on a shared machine), the seconds of the
scaling and sensitivity stages and the threshold; the matrices whose ratio differs; last, the agreement: the
share of decoder matrices given the same rank by both draws.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from prunenet.errors import PruneNetError
from prunenet.methods import METHODS, PruneRequest
from prunenet.methods.pipeline import apply, check
from prunenet.models import load_model

ASVD = METHODS.get("asvd")


def default(name: str):
    """The ASVD option's default (the schema's, which tests/test_registry.py checks equal)."""
    return next(o.default for o in ASVD.options if o.name == name)


def parse() -> tuple[argparse.Namespace, list[PruneRequest]]:
    """The flags and one checked request per seed; bad input exits 2 before the model loads."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, nargs=2, default=[0, 1], help="the two calibration seeds compared")
    ap.add_argument("--asvd-sensitivity", default=default("sensitivity"), choices=("stable_rank", "ppl"))
    ap.add_argument("--asvd-sens-samples", type=int, default=default("sens_samples"), help="as prunenet prune's")
    ap.add_argument("--asvd-sens-seq-len", type=int, default=default("sens_seq_len"), help="as prunenet prune's")
    ap.add_argument("--data-dir", default="../shared/data")
    args = ap.parse_args()
    options = {
        "sensitivity": args.asvd_sensitivity,
        "sens_samples": args.asvd_sens_samples,
        "sens_seq_len": args.asvd_sens_seq_len,
    }
    try:
        requests = [
            check(ASVD.name, PruneRequest(args.ratio, seed=s, data_dir=args.data_dir, options=options))
            for s in args.seeds
        ]
    except PruneNetError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
    return args, requests


def main() -> None:
    args, requests = parse()
    torch.set_num_threads(1)
    model, tok = load_model(args.model, dtype="float32")
    r0 = requests[0]
    sens = f"{args.asvd_sens_samples}x{args.asvd_sens_seq_len}" if args.asvd_sensitivity == "ppl" else "weights only"
    print(
        f"model {args.model}, ratio {args.ratio}, calibration {r0.calib_samples}x{r0.calib_seq_len}, "
        f"sensitivity {args.asvd_sensitivity} ({sens})"
    )
    metas = []
    for request in requests:
        c0 = time.process_time()
        metas.append(apply(ASVD, copy.deepcopy(model), tok, request)[1])
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in metas[-1]["stage_seconds"].items())
        print(
            f"seed {request.seed}: {time.process_time() - c0:.1f} CPU s ({stages}); "
            f"threshold {metas[-1]['threshold']}; removed {metas[-1]['params_removed']}"
        )
    a, b = (m["param_ratios"] for m in metas)
    differ = [p for p in a if a[p] != b[p]]
    for p in differ:
        print(f"differs {p}: {a[p]:g} vs {b[p]:g}")
    same = len(a) - len(differ)
    print(f"agreement {100 * same / len(a):.1f} % ({same}/{len(a)} matrices, sensitivity {args.asvd_sensitivity})")


if __name__ == "__main__":
    main()
