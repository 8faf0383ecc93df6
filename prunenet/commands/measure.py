"""The steps that measure a model: task scores and perplexity (``evaluate``), speed in PyTorch or llama.cpp."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from ..errors import PruneNetError
from .common import result_header, run_tags


def _require_gguf(args, command: str) -> None:
    """``--backend llamacpp``: --model must be a GGUF file and llama.cpp installed (checked before any work)."""
    if not str(args.model).endswith(".gguf") or not Path(args.model).is_file():
        raise PruneNetError(f"{command} --backend llamacpp takes a GGUF file (prunenet export), not {args.model}")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise PruneNetError(f"{command} --backend llamacpp needs llama.cpp: bash envs/install.sh llamacpp") from None


def _evaluate_torch(args, tasks) -> dict:
    """Task scores and perplexities of a checkpoint in PyTorch, the model loaded once for both."""
    from ..evaluation.measure import measure
    from ..models import load_model, read_meta

    meta = read_meta(args.model)
    out = result_header(args, meta)
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)
    out |= measure(
        model,
        tok,
        tasks,
        args.ppl_datasets,
        args.data_dir,
        ppl_seq_len=args.ppl_seq_len,
        ppl_blocks=args.ppl_blocks,
        batch_size=args.batch_size,
        **{name: getattr(args, name) for name in ("limit", "device", "dtype", "seed", "num_fewshot", "lm")},
    )
    if "stats" not in meta:
        from ..stats import model_stats

        out["meta"]["stats"] = model_stats(model)
    return out


def _evaluate_llamacpp(args) -> dict:
    """Perplexities of a GGUF file computed by llama.cpp, with the file's type and size."""
    from ..evaluation.ppl_llamacpp import perplexities_gguf
    from ..export import file_type
    from ..speed_llamacpp import gguf_meta

    out = result_header(args, gguf_meta(args.model))
    out |= {"backend": "llamacpp", "dtype": file_type(args.model), "file_bytes": Path(args.model).stat().st_size}
    out["perplexity"] = perplexities_gguf(
        args.model, args.tokenizer, args.ppl_datasets, args.data_dir, args.ppl_seq_len, args.ppl_blocks, args.cache_type
    )
    return out


def cmd_evaluate(args) -> None:
    from .. import tracking
    from ..artifacts import write_json
    from ..evaluation import check_tasks
    from ..provenance import as_params, provenance

    llamacpp = args.backend == "llamacpp"
    if llamacpp:
        _require_gguf(args, "evaluate")
        if args.tasks:
            raise PruneNetError("evaluate --backend llamacpp computes perplexity only: pass --tasks with no names")
        if not args.tokenizer or not (Path(args.tokenizer) / "tokenizer.json").is_file():
            raise PruneNetError("evaluate --backend llamacpp needs --tokenizer: the exported checkpoint's directory")
    # unknown names, the MMLU group beside its subjects: refused before any model loads, checked here only
    tasks = check_tasks(args.tasks) if args.tasks else None
    if not args.data_dir and (args.tasks or args.ppl_datasets):
        from .. import hub

        hub.require("evaluation without --data-dir", "pass --data-dir with the local task and text copies")
    t0 = time.perf_counter()
    out = _evaluate_llamacpp(args) if llamacpp else _evaluate_torch(args, tasks)
    out["eval_seconds"] = time.perf_counter() - t0
    out["provenance"] = provenance() | {
        "metrics": {t: r["primary_metric"] for t, r in out.get("tasks", {}).items()},
        "batch_size": args.batch_size,
        "limit": args.limit,
    }
    tags = run_tags(args, "evaluate", method=out["method"], setting=args.setting, ratio=out["ratio"], seed=out["seed"])
    params = {"tasks": args.tasks, "limit": args.limit, "data_dir": args.data_dir, "model_path": args.model}
    with tracking.run(
        tags["model"],
        f"evaluate {out['method']} r={out['ratio']} s={out['seed']}",
        params | {"batch_size": args.batch_size} | as_params(out["provenance"]),
        tags,
    ) as run:
        out["provenance"]["mlflow_run_id"] = run.id
        for task, res in out.get("tasks", {}).items():
            run.metrics({f"{task}.{k}": v for k, v in res.items()})
        run.metrics({f"ppl.{name}": res["ppl"] for name, res in out["perplexity"].items()})
        write_json(args.out, out)
        run.artifact(args.out)
    print(f"wrote {args.out}")


def _speed_llamacpp(args, settings):
    """Batch 1 in llama.cpp on a GGUF file: (result, the source checkpoint's metadata, the file's tensor type)."""
    from dataclasses import replace

    from ..export import file_type
    from ..speed_llamacpp import gguf_meta, measure_gguf

    _require_gguf(args, "speed")
    result = measure_gguf(args.model, replace(settings, batch_sizes=(1,)))
    return result, gguf_meta(args.model), file_type(args.model)


def cmd_speed(args) -> None:
    from .. import tracking
    from ..artifacts import write_json
    from ..models import load_model, read_meta
    from ..provenance import as_params, provenance
    from ..speed import SpeedSettings, measure

    settings = SpeedSettings(
        tuple(args.batch_sizes), args.prompt_len, args.gen_len, args.warmup, args.repeats, seed=args.seed
    )
    llamacpp = args.backend == "llamacpp"
    if llamacpp:
        result, meta, dtype = _speed_llamacpp(args, settings)
    else:
        meta = read_meta(args.model)
        model, _ = load_model(args.model, device=args.device, dtype=args.dtype)
        result = measure(model, model.config.vocab_size, settings)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    backend = {"backend": "llamacpp"} if llamacpp else {}
    out = (
        result_header(args, meta)
        | backend
        | {
            "dtype": dtype,
            "speed": asdict(result),
            "provenance": provenance(),
        }
    )
    tags = run_tags(args, "speed", method=out["method"], setting=args.setting, ratio=out["ratio"], seed=out["seed"])
    params = asdict(settings) | as_params(out["provenance"])
    with tracking.run(tags["model"], f"speed {out['method']} r={out['ratio']}", params, tags) as run:
        out["provenance"]["mlflow_run_id"] = run.id
        for cell, res in result.cells.items():
            run.metrics({f"{cell}.{k}": res[k]["median"] for k in ("prefill_tok_s", "decode_tok_s")})
        run.metric("peak_memory_mb", result.peak_memory_mb)
        write_json(args.out, out)
        run.artifact(args.out)
    cells = ", ".join(f"{c}: {r['decode_tok_s']['median']:.1f} decode tok/s" for c, r in result.cells.items())
    print(f"wrote {args.out} ({cells})")


# The `rft` arguments that are finetune's keyword arguments of the same name.
