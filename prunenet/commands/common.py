"""What every command's MLflow tags and result files name a run by: the model, method, setting, ratio, seed."""

from __future__ import annotations

from pathlib import Path


def run_tags(args, stage: str, **extra) -> dict[str, str]:
    tags = {"stage": stage, "model": args.model_name or Path(args.model).name}
    tags.update({k: str(v) for k, v in extra.items() if v is not None})
    return tags


def result_header(args, meta: dict) -> dict:
    """What names a measured checkpoint in every result file (evaluation, speed): tables group by these."""
    return {
        "model": args.model_name or Path(args.model).name,
        "model_path": args.model,
        "method": args.method or meta.get("method", "dense"),
        "setting": args.setting,
        "ratio": meta.get("ratio", 0.0),
        "seed": meta.get("seed"),
        "meta": meta,
    }
