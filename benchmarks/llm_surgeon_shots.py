"""Benchmark: LLM Surgeon with the CPU default's shots against the release's 40, on one calibration draw.

    .venv/bin/python benchmarks/llm_surgeon_shots.py [--model resources/models/smollm2-135m] [--ratio 0.3]
        [--shots 5 40] [--seed 0] [--limit 60] [--work results/benchmarks/llm_surgeon_shots]
        [--data-dir ../shared/data] [--config config/config.yaml]

Why: the release's structured run (scripts/structured/surgeon.sh) uses 40 shots; the workflow's default uses 5
so that a CPU job takes minutes (docs: results/tables/settings.md). Each shot re-estimates the K-FAC curvature on
every calibration window and removes 1/shots of the budget, so 40 shots cost about 8x the curvature passes.
Whether they buy accuracy is what this measures: every shot count prunes the same checkpoint on the same
calibration draw (``--seed``) at the same ratio with the workflow's other LLM Surgeon settings, through the same
commands the workflow's rules run (``prunenet prune``, ``prunenet evaluate`` with Table 2's tasks, items,
perplexity blocks: the config's ``evaluate`` section), and ``prunenet report pairs`` pairs them on the same items.

Printed: per shot count the compression seconds (the method's own wall time), the peak memory, the average
accuracy and WikiText-2/PTB perplexity; then each paired difference with its 95 % CI and p (two comparisons at
most: no multiplicity correction is printed); last line: the headline. About 30 min on 2 CPU cores at r = 0.3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prunenet.config import evaluate_flags, load  # noqa: E402


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def settings(cfg: dict, shots: int) -> list[str]:
    """``prunenet prune`` flags for the config's ``llm-surgeon`` section, as the workflow renders them
    (:meth:`Method.section_flags`), shots replaced: calibration windows and every option but the one compared stay the
    workflow's."""
    from prunenet.methods import METHODS

    return METHODS.get("llm-surgeon").section_flags({**cfg["llm-surgeon"], "shots": shots})


def evaluation(cfg: dict, limit: int | None) -> list[str]:
    """``prunenet evaluate`` flags for the config's ``evaluate`` section (tasks, batch, shots, perplexity sets and
    blocks), rendered by the workflow's own :func:`prunenet.config.evaluate_flags`; ``limit`` (items per task)
    replaces the config's."""
    groups = evaluate_flags(cfg["evaluate"] | {"limit": limit})
    return [flag for group in ("tasks", "ppl_datasets", "ppl_seq_len", "ppl_blocks", "limit") for flag in groups[group]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resources/models/smollm2-135m")
    ap.add_argument("--model-name", default="smollm2-135m")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--shots", type=int, nargs="+", default=[5, 40])
    ap.add_argument("--seed", type=int, default=0, help="the calibration draw (prunenet prune --seed)")
    ap.add_argument("--limit", type=int, default=60, help="items per task (Table 2's default); 0: every item")
    ap.add_argument("--work", default="results/benchmarks/llm_surgeon_shots")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument(
        "--config",
        default="config/config.yaml",
        help="its llm-surgeon and evaluate settings, shots aside (an overlay such as config/paper.yaml is merged onto "
        "config/config.yaml, as --configfile is)",
    )
    args = ap.parse_args()
    cfg = load(ROOT / "config", Path(args.config))
    if not Path(args.model).is_dir():
        sys.exit(f"no checkpoint at {args.model}: run `snakemake --cores 1 resources/models/{args.model_name}` first")
    work, py = Path(args.work), [sys.executable, "-m", "prunenet"]
    evals = []
    for shots in args.shots:
        model = work / f"shots{shots}" / f"r{args.ratio}-s{args.seed}"
        out = work / f"shots{shots}.json"
        if not out.exists():
            run(
                py
                + ["prune", "--model", args.model, "--model-name", args.model_name, "--out", str(model)]
                + ["--method", "llm-surgeon", "--ratio", str(args.ratio), "--data-dir", args.data_dir]
                + settings(cfg, shots)
                + ["--seed", str(args.seed), "--device", "cpu"]
            )
            run(
                py
                + ["evaluate", "--model", str(model), "--model-name", args.model_name, "--method", "llm-surgeon"]
                + ["--setting", f"shots{shots}", "--out", str(out), "--device", "cpu", "--seed", "0"]
                + ["--data-dir", args.data_dir]
                + evaluation(cfg, args.limit)
            )
        evals.append(out)
    pairs = work / "pairs.csv"
    run(
        py
        + [
            "report",
            "pairs",
            "--inputs",
            *map(str, evals),
            "--out",
            str(pairs),
            "--out-md",
            str(pairs.with_suffix(".md")),
        ]
    )
    print(f"\nLLM Surgeon, {args.model_name}, r = {args.ratio}, calibration draw {args.seed}, {args.limit} items/task")
    for shots, path in zip(args.shots, evals):
        d = json.loads(path.read_text())
        acc = [task["primary"] * 100 for task in d["tasks"].values()]  # the config's tasks
        ppl = ", ".join(f"{k} {v['ppl']:.2f}" for k, v in d["perplexity"].items())
        print(
            f"shots {shots:3d}: compress {d['meta']['compress_seconds']:7.0f} s, peak {d['meta']['peak_memory_mb']:.0f}"
            f" MB, avg acc {sum(acc) / len(acc):.1f}, PPL {ppl}"
        )
    df = pd.read_csv(pairs)
    print(df.to_string(index=False))
    print("headline: " + "; ".join(_headline(df)))


def _headline(df: pd.DataFrame) -> list[str]:
    rows = df[df["task"] == "avg"]
    return [" ".join(f"{k}={v}" for k, v in row.items()) for row in rows.to_dict("records")]


if __name__ == "__main__":
    main()
