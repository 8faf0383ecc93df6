"""Benchmark: decode speed-up of an FFN-pruned SmolLM2 in llama.cpp, against the memory-bound ideal.

    .venv/bin/python benchmarks/llamacpp_speed.py [--model PATH] [--ratio 0.3] [--type q8_0] [--rounds 3]
        [--repeats 5] [--multiple 1] [--out-dir DIR]

Writes the dense model and the model pruned to PruneNet's shape at ``--ratio`` (every layer keeps the same number of
FFN rows, ``--multiple`` rounding as ``prune.ffn_multiple``; the rows are drawn at random, since speed depends on
the widths, not on which rows stay) as checkpoints, exports both with ``prunenet export --type``, and runs
``prunenet speed --backend llamacpp`` (prompt 128, 32 generated, batch 1, every core, llama.cpp's own timings) on
each, alternating, ``--rounds`` times as whole processes: each round gives one speed-up (median decode tokens/s of
pruned over dense), so the spread covers between-run noise. The ideal is the ratio of weight bytes read per
decoded token, dense over pruned. Also printed: the tensors llama.cpp's quantizer gave another type (rows not a
multiple of its block). The last line is the headline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CACHED_CKPT = Path.home() / ".cache" / "prunenet-tests" / "smollm2-135m"


def _run(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "prunenet", *args], check=True, capture_output=True, text=True).stdout


def _checkpoints(src: str, ratio: float, multiple: int, out: Path) -> dict[str, Path]:
    from prunenet.models import load_model, save_checkpoint
    from prunenet.slicing import plan_rows, prune_ffn

    model, tok = load_model(src, dtype="float32")
    pruned = out / f"pruned-r{ratio}"
    if not (pruned / "config.json").is_file():
        widths = prune_ffn(model, plan_rows(model, "random", ratio, seed=0, multiple=multiple))
        save_checkpoint(model, tok, pruned, {"method": "prunenet-shape", "ratio": ratio, "ffn_widths": widths})
    return {"dense": Path(src), "pruned": pruned}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(CACHED_CKPT))
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--type", default="q8_0")
    ap.add_argument("--multiple", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="whole runs per model (one speed-up each)")
    ap.add_argument("--repeats", type=int, default=5, help="timed generations per run")
    ap.add_argument("--out-dir", default=None, help="where checkpoints and GGUF files go (default: a temp dir)")
    args = ap.parse_args()
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="llamacpp-speed-"))
    ggufs = {}
    for name, ckpt in _checkpoints(args.model, args.ratio, args.multiple, out).items():
        ggufs[name] = out / f"{name}.{args.type}.gguf"
        summary = json.loads(_run("export", str(ckpt), "--type", args.type, "--out", str(ggufs[name])).splitlines()[-1])
        print(
            f"{name}: {summary['bytes'] / 1e6:.1f} MB, tensor types {summary['tensor_types']}, "
            f"fell back: {summary['fallbacks'] or 'none'}"
        )
    decode = {name: [] for name in ggufs}
    for r in range(args.rounds):
        for name, path in ggufs.items():
            res = out / f"{name}.speed.json"
            _run(
                "speed",
                "--backend",
                "llamacpp",
                "--model",
                str(path),
                "--out",
                str(res),
                "--method",
                name,
                "--repeats",
                str(args.repeats),
            )
            cell = json.loads(res.read_text())["speed"]["cells"]["b1"]
            decode[name].append(cell["decode_tok_s"]["median"])
            print(
                f"round {r}: {name} prefill {cell['prefill_tok_s']['median']:.1f} tok/s, "
                f"decode {cell['decode_tok_s']['median']:.1f} tok/s, "
                f"{cell['weight_bytes_per_token'] / 1e6:.1f} MB/token"
            )
    from prunenet.speed_llamacpp import weight_bytes_per_token

    ideal = weight_bytes_per_token(ggufs["dense"]) / weight_bytes_per_token(ggufs["pruned"])
    ups = [p / d for p, d in zip(decode["pruned"], decode["dense"])]
    print(f"per-round decode speed-ups: {', '.join(f'{u:.3f}' for u in ups)} (min {min(ups):.3f}, max {max(ups):.3f})")
    head = f"decode speed-up (llama.cpp {args.type}, prunenet {args.ratio})"
    print(f"{head}: {statistics.median(ups):.2f}x of ideal {ideal:.2f}x")


if __name__ == "__main__":
    main()
