"""Benchmark: WikiText-2 perplexity of exported models computed by llama.cpp, against the pipeline's PyTorch value.

    .venv/bin/python benchmarks/llamacpp_ppl.py [--model PATH] [--methods prunenet llm-pruner] [--ratio 0.3]
        [--types f16] [--policy FILE] [--data-dir ../shared/data] [--seq-len 256] [--blocks 8] [--out-dir DIR]

Prunes ``--model`` (default: the embedded SmolLM2 the tests cache) with each method at ``--ratio`` through the CLI
(``prunenet prune``, seed 0, the CLI's default settings; PruneNet with ``--policy`` or a policy trained here with
``prunenet train``'s defaults), exports the dense and each pruned checkpoint to every ``--types``, and computes the
perplexity on the pipeline's blocks (``--seq-len`` tokens, the first ``--blocks`` of the test split: the default
config's ``evaluation.ppl_seq_len`` and ``ppl_blocks``) twice: ``prunenet evaluate`` in PyTorch (float32) and
``prunenet evaluate --backend llamacpp`` (llama.cpp's default f16 KV cache). Issue 29 asks f16 files to land within
1 % of PyTorch. Every row names the file size and the relative difference; the last line is the headline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CACHED_CKPT = Path.home() / ".cache" / "prunenet-tests" / "smollm2-135m"


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "prunenet", *args], check=True, capture_output=True, text=True)


def _checkpoints(args, out: Path) -> dict[str, Path]:
    """The dense model and each method's pruned checkpoint (built once per ``--out-dir``)."""
    ckpts = {"dense": Path(args.model)}
    for method in args.methods:
        ckpt = out / f"{method}-r{args.ratio}"
        extra = ["--data-dir", args.data_dir]
        if method == "prunenet":
            policy = args.policy or str(out / "policy.safetensors")
            if not Path(policy).is_file():
                _cli("train", "--model", args.model, "--ratio", str(args.ratio), "--seed", "0", "--out", policy,
                     "--meta-out", str(out / "policy.json"))  # fmt: skip
            extra += ["--policy", policy]
        if not (ckpt / "config.json").is_file():
            _cli("prune", "--model", args.model, "--method", method, "--ratio", str(args.ratio), "--seed", "0",
                 "--out", str(ckpt), *extra)  # fmt: skip
        ckpts[method] = ckpt
    return ckpts


def _ppl(result: Path) -> float:
    return json.loads(result.read_text())["perplexity"]["wikitext2"]["ppl"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(CACHED_CKPT))
    ap.add_argument("--methods", nargs="+", default=["prunenet", "llm-pruner"])
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--types", nargs="+", default=["f16"], choices=["f32", "f16", "q8_0", "q4_k_m"])
    ap.add_argument("--policy", help="PruneNet's policy file (default: train one here)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--out-dir", help="where checkpoints, GGUF files and results go (default: a temp dir)")
    args = ap.parse_args()
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="llamacpp-ppl-"))
    out.mkdir(parents=True, exist_ok=True)
    ppl_flags = ["--tasks", "--ppl-datasets", "wikitext2", "--ppl-seq-len", str(args.seq_len)]
    ppl_flags += ["--ppl-blocks", str(args.blocks), "--data-dir", args.data_dir]
    worst = {}
    print("| model | type | file MB | PyTorch ppl | llama.cpp ppl | difference |\n|---|---|---|---|---|---|")
    for name, ckpt in _checkpoints(args, out).items():
        torch_json = out / f"{name}.torch.json"
        _cli("evaluate", "--model", str(ckpt), "--out", str(torch_json), "--dtype", "float32", *ppl_flags)
        for type_ in args.types:
            gguf, res = out / f"{name}.{type_}.gguf", out / f"{name}.{type_}.llamacpp.json"
            _cli("export", str(ckpt), "--type", type_, "--out", str(gguf))
            _cli("evaluate", "--backend", "llamacpp", "--model", str(gguf), "--tokenizer", str(ckpt), "--out",
                 str(res), *ppl_flags)  # fmt: skip
            ref, got = _ppl(torch_json), _ppl(res)
            diff = 100 * (got - ref) / ref
            worst[type_] = max(worst.get(type_, 0.0), abs(diff))
            mb = gguf.stat().st_size / 1e6
            print(f"| {name} | {type_} | {mb:.1f} | {ref:.3f} | {got:.3f} | {diff:+.2f} % |", flush=True)
    names = ", ".join(["dense", *args.methods])
    for type_ in reversed(args.types):  # the first type's line last: the headline
        print(
            f"llama.cpp {type_} vs PyTorch perplexity (wikitext2, {args.blocks}x{args.seq_len}, r{args.ratio}): "
            f"max |difference| {worst[type_]:.2f} % over {names}"
        )


if __name__ == "__main__":
    main()
