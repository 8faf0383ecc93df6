"""LoRA recovery fine-tuning throughput on CPU: ~10 steps of SmolLM2-135M on local WikiText-2.

    .venv/bin/python benchmarks/rft_throughput.py [--model smollm2-135m|PATH] [--steps 10]

Prints training tokens/s (forward + backward + AdamW, evaluation excluded), the time spent
in evaluation, the whole run's wall time and the process's peak RSS. Nothing is kept: the
merged checkpoint goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prunenet.rft import finetune  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m", help="embedded name or checkpoint directory")
    ap.add_argument("--data-dir", default=os.environ.get("PRUNENET_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--dataset", default="wikitext2")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n-samples", type=int, default=100, help="RFT dataset size (10%% of it is the validation set)")
    ap.add_argument("--test-blocks", type=int, default=8)
    ap.add_argument("--micro-batch-size", type=int, default=2, help="0 = whole batch in one pass")
    args = ap.parse_args()

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        s = finetune(
            args.model,
            str(Path(tmp) / "out"),
            args.dataset,
            args.n_samples,
            args.data_dir,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            max_steps=args.steps,
            eval_every=args.steps + 1,
            test_blocks=args.test_blocks,
            seed=0,
            micro_batch_size=args.micro_batch_size or None,
        )
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    eval_tokens = (2 * s["n_val"] + 2 * args.test_blocks) * args.seq_len
    report = {
        "model": args.model,
        "threads": torch.get_num_threads(),
        "steps": s["steps"],
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "micro_batch_size": s["micro_batch_size"],
        "train_tokens": s["tokens"],
        "train_seconds": round(s["train_seconds"], 1),
        "train_tokens_per_s": round(s["tokens_per_s"], 1),
        "seconds_per_step": round(s["train_seconds"] / s["steps"], 2),
        "eval_tokens": eval_tokens,
        "eval_seconds": round(s["eval_seconds"], 1),
        "eval_tokens_per_s": round(eval_tokens / s["eval_seconds"], 1),
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(peak_mb),
        "val_ppl_before": round(s["val_ppl_before"], 2),
        "val_ppl_after": round(s["val_ppl_after"], 2),
        "test_ppl_before": s["test_ppl_before"] and round(s["test_ppl_before"], 2),
        "test_ppl_after": s["test_ppl_after"] and round(s["test_ppl_after"], 2),
    }
    print(json.dumps(report, indent=2))
    print(f"RFT throughput: {report['train_tokens_per_s']} train tokens/s, peak RSS {report['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
