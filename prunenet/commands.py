"""What each ``prunenet`` subcommand does: load, run one pipeline step, log one MLflow run, write atomically.

:mod:`prunenet.cli` parses the arguments and calls these; user mistakes raise
:class:`~prunenet.errors.PruneNetError`, which the CLI prints as one line (exit status 2).
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import asdict
from pathlib import Path

from .errors import PruneNetError


def _tags(args, stage: str, **extra) -> dict[str, str]:
    tags = {"stage": stage, "model": args.model_name or Path(args.model).name}
    tags.update({k: str(v) for k, v in extra.items() if v is not None})
    return tags


def cmd_download(args) -> None:
    from . import tracking
    from .models import materialize, read_meta

    t0 = time.perf_counter()
    out = materialize(args.model, args.out, dtype=args.dtype)
    name = args.model_name or Path(args.out).name
    with tracking.run(
        name, "download", {"spec": args.model, "dtype": args.dtype}, {"stage": "download", "model": name}
    ) as run:
        run.metrics({"params": read_meta(out)["params"], "seconds": time.perf_counter() - t0})
    print(f"wrote {out}")


def cmd_train(args) -> None:
    from dataclasses import fields

    from . import tracking
    from .models import load_model
    from .policy import save_policy
    from .policy_training import check_train_config, policy_task, train_and_score
    from .training import TrainConfig

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    check_train_config(cfg)
    model, _ = load_model(args.model, device=args.device, dtype="float32")
    task = policy_task(model, cfg)
    del model
    tags = _tags(args, "train", ratio=cfg.ratio, penalty=cfg.penalty, state=cfg.state, eq3=cfg.eq3)
    with tracking.run(
        tags["model"],
        f"train r={cfg.ratio} {cfg.penalty}/{cfg.state}/{cfg.objective}/eq3-{cfg.eq3} s{cfg.seed}",
        vars(cfg) | {"model_path": args.model},
        tags,
    ) as run:
        on_episode = lambda ep, pen: run.metric("penalty", pen, step=ep)  # noqa: E731
        trained = train_and_score(task, cfg, args.model, args.eval_samples, on_episode=on_episode)
        result = trained.result
        save_policy(args.out, args.meta_out, result.best, result.last, trained.meta, eq3=cfg.eq3)
        run.metrics(trained.metrics())
        run.artifact(args.meta_out)
    print(
        f"wrote {args.out}: penalty {result.history[0]:.4f} -> best {min(result.history):.4f} "
        f"(policy {trained.evals['eval_penalty_policy']:.4f} vs random {trained.evals['eval_penalty_random']:.4f} "
        f"over {args.eval_samples} draws)"
    )


def _prune_request(args, **override):
    from . import choices
    from .methods import METHODS, PruneRequest

    method = METHODS.get(args.method)
    return PruneRequest(
        ratio=override.get("ratio", getattr(args, "ratio", None)),
        seed=args.seed,
        device=args.device,
        policy=override.get("policy", getattr(args, "policy", None)),
        which=getattr(args, "which", choices.DEFAULT_WHICH),
        state=getattr(args, "state", choices.DEFAULT_STATE),
        calib_dataset=args.calib_dataset,
        calib_samples=args.calib_samples,
        calib_seq_len=args.calib_seq_len,
        damping=args.damping,
        round_to=args.round_to,
        ffn_multiple=args.ffn_multiple,
        data_dir=args.data_dir,
        options={o.name: getattr(args, o.dest(method.name)) for o in method.options},
        prepared=getattr(args, "prepared", None),
    )


def cmd_sweep(args) -> None:
    from . import tracking
    from .artifacts import write_json
    from .data import load_texts, split_note
    from .evaluation.sweep import ppl_sweep, sweep_requests
    from .methods import METHODS
    from .methods.pipeline import check
    from .models import load_model

    needs_policy = METHODS.get(args.method).needs_policy
    if needs_policy and len(args.policies) != len(args.ratios):
        raise PruneNetError(
            f"method {args.method!r} needs one --policies file per ratio: got {len(args.policies)} for "
            f"{len(args.ratios)} ratios"
        )
    base = _prune_request(args, ratio=args.ratios[0], policy=args.policies[0] if needs_policy else None)
    requests = sweep_requests(base, args.ratios, args.policies if needs_policy else [])
    for request in requests:
        check(args.method, request)  # every point, before the model loads
    texts = load_texts(args.ppl_dataset, "test", args.data_dir)
    device = "cpu" if METHODS.get(args.method).offload else args.device
    model, tok = load_model(args.model, device=device, dtype="float32")  # as `prune` loads it
    tags = _tags(args, "sweep", method=args.method, seed=args.seed)
    with tracking.run(tags["model"], f"sweep {args.method} s={args.seed}", vars(base), tags) as run:
        points = ppl_sweep(model, tok, args.method, requests, texts, args.ppl_seq_len, args.ppl_blocks)
        for p in points:
            run.metrics({"ppl": p["ppl"], "effective_sparsity": p["effective_sparsity"]}, step=round(100 * p["ratio"]))
        out = {
            "model": args.model_name or Path(args.model).name,
            "method": args.method,
            "seed": args.seed,
            "dataset": split_note(args.ppl_dataset, "test", args.data_dir),
            "points": points,
        }
        write_json(args.out, out)
        run.artifact(args.out)
    print(f"wrote {args.out}: " + ", ".join(f"r={p['ratio']:g} ppl={p['ppl']:.2f}" for p in points))


def cmd_prune(args) -> None:
    from . import tracking
    from .methods import compress
    from .methods.pipeline import check

    request = _prune_request(args)
    checked = check(args.method, request, args.model)  # every argument and the prepared file, before any model loads
    tags = _tags(args, "prune", method=args.method, ratio=args.ratio)
    with tracking.run(
        tags["model"], f"prune {args.method} r={args.ratio}", vars(request) | {"source": args.model}, tags
    ) as run:
        meta, seconds = compress(args.model, args.out, args.method, checked, args.flops_seq_len)
        run.metrics(meta["stats"] | {"compress_seconds": seconds, "peak_memory_mb": meta["peak_memory_mb"]})
    stats = meta["stats"]
    print(f"wrote {args.out}: {stats['params']:,} params (effective sparsity {stats['effective_sparsity']:.3f})")


def cmd_prepare(args) -> None:
    from . import tracking
    from .methods import METHODS
    from .methods.prepared import fingerprint, save_prepared
    from .models import load_model

    method = METHODS.get(args.method)
    request = _prune_request(args)
    method.check(request)  # options and calibration, before the model loads
    tags = _tags(args, "prepare", method=args.method)
    with tracking.run(tags["model"], f"prepare {args.method}", vars(request) | {"source": args.model}, tags) as run:
        model, tok = load_model(args.model, device="cpu" if method.offload else args.device, dtype="float32")
        t0 = time.perf_counter()
        state = method.prepare(model, tok, request)
        seconds = time.perf_counter() - t0
        save_prepared(args.out, state, fingerprint(method, request, args.model), seconds)
        run.metrics({"prepare_seconds": seconds})
    print(f"wrote {args.out}: {len(state)} tensors of {args.method}'s ratio-independent state ({seconds:.1f} s)")


def _result_header(args, meta: dict) -> dict:
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


def cmd_evaluate(args) -> None:
    from . import tracking
    from .artifacts import write_json
    from .evaluation import check_tasks
    from .evaluation.measure import measure
    from .models import load_model, read_meta
    from .provenance import as_params, provenance

    # unknown names, the MMLU group beside its subjects: refused before any model loads, checked here only
    tasks = check_tasks(args.tasks) if args.tasks else None
    if not args.data_dir and (args.tasks or args.ppl_datasets):
        from . import hub

        hub.require("evaluation without --data-dir", "pass --data-dir with the local task and text copies")
    meta = read_meta(args.model)
    out = _result_header(args, meta)
    t0 = time.perf_counter()
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)  # once, for both measurements
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
        from .stats import model_stats

        out["meta"]["stats"] = model_stats(model)
    out["eval_seconds"] = time.perf_counter() - t0
    out["provenance"] = provenance() | {
        "metrics": {t: r["primary_metric"] for t, r in out.get("tasks", {}).items()},
        "batch_size": args.batch_size,
        "limit": args.limit,
    }
    tags = _tags(args, "evaluate", method=out["method"], setting=args.setting, ratio=out["ratio"], seed=out["seed"])
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

    from .export import file_type
    from .speed_llamacpp import gguf_meta, measure_gguf

    if not str(args.model).endswith(".gguf") or not Path(args.model).is_file():
        raise PruneNetError(f"--backend llamacpp measures a GGUF file (prunenet export): {args.model} is not one")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise PruneNetError("--backend llamacpp needs llama.cpp: bash envs/install.sh llamacpp") from None
    result = measure_gguf(args.model, replace(settings, batch_sizes=(1,)))
    return result, gguf_meta(args.model), file_type(args.model)


def cmd_speed(args) -> None:
    from . import tracking
    from .artifacts import write_json
    from .models import load_model, read_meta
    from .provenance import as_params, provenance
    from .speed import SpeedSettings, measure

    settings = SpeedSettings(
        tuple(args.batch_sizes), args.prompt_len, args.gen_len, args.warmup, args.repeats, seed=args.seed
    )
    if getattr(args, "backend", "torch") == "llamacpp":
        result, meta, dtype = _speed_llamacpp(args, settings)
    else:
        meta = read_meta(args.model)
        model, _ = load_model(args.model, device=args.device, dtype=args.dtype)
        result = measure(model, model.config.vocab_size, settings)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    backend = {"backend": "llamacpp"} if getattr(args, "backend", "torch") == "llamacpp" else {}
    out = (
        _result_header(args, meta)
        | backend
        | {
            "dtype": dtype,
            "speed": asdict(result),
            "provenance": provenance(),
        }
    )
    tags = _tags(args, "speed", method=out["method"], setting=args.setting, ratio=out["ratio"], seed=out["seed"])
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
_RFT_OPTIONS = (
    "seq_len batch_size lr epochs max_steps lora_r lora_alpha lora_dropout eval_every seed device dtype log_csv "
    "val_fraction test_blocks micro_batch_size allow_truncate"
).split()


def cmd_rft(args) -> None:
    from . import hub, tracking
    from .rft import finetune

    if not args.data_dir:
        hub.require(f"RFT on {args.dataset} without --data-dir", "pass --data-dir with the local copies")
    params = {k: v for k, v in vars(args).items() if k not in ("func",)}
    tags = _tags(args, "rft", dataset=args.dataset, samples=args.samples)
    with tracking.run(
        tags["model"], f"rft {args.dataset} n={args.samples} {Path(args.model).name}", params, tags
    ) as run:
        summary = finetune(
            args.model,
            args.out,
            args.dataset,
            args.samples,
            args.data_dir,
            **{name: getattr(args, name) for name in _RFT_OPTIONS},
            on_metrics=lambda name, value, step: run.metric(name, value, step),
        )
        run.metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        run.artifact(args.log_csv)
    print(json.dumps(summary, indent=1, default=str))


def cmd_spectra(args) -> None:
    from . import tracking
    from .reporting import export_spectra

    written = export_spectra(args.inputs, args.out, args.layers, args.state)
    with tracking.run(
        args.experiment,
        "spectra",
        {"inputs": len(args.inputs), "state": args.state},
        {"stage": "report", "kind": "spectra"},
    ) as run:
        run.artifact(args.out)
    print("wrote " + ", ".join(map(str, written)))


def cmd_report(args) -> None:
    from . import reporting, tracking

    try:
        options = json.loads(args.options or "{}")
    except json.JSONDecodeError as exc:
        raise PruneNetError(
            f'--options is not valid JSON ({exc.msg}): give a JSON object, e.g. \'{{"tasks": ["piqa"]}}\''
        ) from None
    if not isinstance(options, dict):
        raise PruneNetError('--options must be a JSON object, e.g. \'{"tasks": ["piqa"]}\'')
    is_table = args.kind in reporting.WITH_MARKDOWN
    if is_table != bool(args.out_md):
        raise PruneNetError(f"report {args.kind} {'needs' if is_table else 'takes no'} --out-md")
    outputs = (args.out, args.out_md) if is_table else (args.out,)
    build = reporting.REPORTS[args.kind]
    params = list(inspect.signature(build).parameters.values())[1 + len(outputs) :]  # after inputs and outputs
    accepted = [p.name for p in params if p.kind is not p.VAR_KEYWORD]
    unknown = sorted(set(options) - set(accepted))
    if unknown and len(accepted) == len(params):
        known = f"known: {', '.join(accepted)}" if accepted else "it takes none"
        raise PruneNetError(f"report {args.kind}: unknown --options key {', '.join(unknown)} ({known})")
    written = build(args.inputs, *outputs, **options)
    with tracking.run(
        args.experiment,
        f"report {args.kind}",
        {"kind": args.kind, "inputs": len(args.inputs)},
        {"stage": "report", "kind": args.kind},
    ) as run:
        for path in written:
            run.artifact(path)
    print("wrote " + ", ".join(map(str, written)))


def cmd_export(args) -> None:
    """Refuse what llama.cpp cannot run before loading, then write the GGUF and print what was written."""
    from .export import export, plan

    p = plan(args.checkpoint, args.type, args.merge_low_rank)
    summary = export(p, args.out)
    if summary["merged_low_rank"]:
        print(f"merged {summary['merged_low_rank']} low-rank linears back into dense ones: their saving is gone")
    print(json.dumps({"out": str(args.out), "type": args.type} | summary))
