"""The pipeline's steps that write a model or a policy: download, train, prepare, prune, sweep, RFT."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import PruneNetError
from .common import run_tags


def cmd_download(args) -> None:
    from .. import tracking
    from ..models import materialize, read_meta

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

    from .. import tracking
    from ..models import load_model
    from ..policy import save_policy
    from ..policy_training import check_train_config, policy_task, train_and_score
    from ..training import TrainConfig

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    check_train_config(cfg)
    model, _ = load_model(args.model, device=args.device, dtype=args.dtype)  # states are taken in float32
    task = policy_task(model, cfg)
    del model
    tags = run_tags(args, "train", ratio=cfg.ratio, penalty=cfg.penalty, state=cfg.state, eq3=cfg.eq3)
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


def prune_request(args, **override):
    """The :class:`~prunenet.methods.PruneRequest` of parsed ``prune``/``sweep``/``prepare`` arguments (also what
    benchmarks/rehearsal_case.py builds, so a rehearsal runs a method exactly as ``prunenet prune`` does)."""
    from .. import choices
    from ..methods import METHODS, PruneRequest

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
        dtype=args.dtype,
        options={o.name: getattr(args, o.dest(method.name)) for o in method.options},
        prepared=getattr(args, "prepared", None),
    )


def cmd_sweep(args) -> None:
    from .. import tracking
    from ..artifacts import write_json
    from ..data import load_texts, split_note
    from ..evaluation.sweep import ppl_sweep, sweep_requests
    from ..methods import METHODS
    from ..methods.pipeline import check
    from ..models import load_model

    needs_policy = METHODS.get(args.method).needs_policy
    if needs_policy and len(args.policies) != len(args.ratios):
        raise PruneNetError(
            f"method {args.method!r} needs one --policies file per ratio: got {len(args.policies)} for "
            f"{len(args.ratios)} ratios"
        )
    base = prune_request(args, ratio=args.ratios[0], policy=args.policies[0] if needs_policy else None)
    requests = sweep_requests(base, args.ratios, args.policies if needs_policy else [])
    for request in requests:
        check(args.method, request)  # every point, before the model loads
    texts = load_texts(args.ppl_dataset, "test", args.data_dir)
    device = METHODS.get(args.method).load_device(args.device)
    model, tok = load_model(args.model, device=device, dtype=base.weights_dtype())  # as `prune` loads it
    tags = run_tags(args, "sweep", method=args.method, seed=args.seed)
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
    from .. import tracking
    from ..methods import compress
    from ..methods.pipeline import check

    request = prune_request(args)
    checked = check(args.method, request, args.model)  # every argument and the prepared file, before any model loads
    tags = run_tags(args, "prune", method=args.method, ratio=args.ratio)
    with tracking.run(
        tags["model"], f"prune {args.method} r={args.ratio}", vars(request) | {"source": args.model}, tags
    ) as run:
        meta, seconds = compress(args.model, args.out, args.method, checked, args.flops_seq_len)
        run.metrics(meta["stats"] | {"compress_seconds": seconds, "peak_memory_mb": meta["peak_memory_mb"]})
    stats = meta["stats"]
    print(f"wrote {args.out}: {stats['params']:,} params (effective sparsity {stats['effective_sparsity']:.3f})")


def cmd_prepare(args) -> None:
    from .. import tracking
    from ..methods import METHODS
    from ..methods.prepared import fingerprint, save_prepared
    from ..models import load_model

    method = METHODS.get(args.method)
    request = prune_request(args)
    method.check(request)  # options and calibration, before the model loads
    tags = run_tags(args, "prepare", method=args.method)
    with tracking.run(tags["model"], f"prepare {args.method}", vars(request) | {"source": args.model}, tags) as run:
        device = method.load_device(args.device)
        model, tok = load_model(args.model, device=device, dtype=request.weights_dtype())
        t0 = time.perf_counter()
        state = method.prepare(model, tok, request)
        seconds = time.perf_counter() - t0
        save_prepared(args.out, state, fingerprint(method, request, args.model), seconds)
        run.metrics({"prepare_seconds": seconds})
    print(f"wrote {args.out}: {len(state)} tensors of {args.method}'s ratio-independent state ({seconds:.1f} s)")


_RFT_OPTIONS = (
    "seq_len batch_size lr epochs max_steps lora_r lora_alpha lora_dropout eval_every seed device dtype log_csv "
    "val_fraction test_blocks micro_batch_size allow_truncate"
).split()


def cmd_rft(args) -> None:
    from .. import hub, tracking
    from ..rft import finetune

    if not args.data_dir:
        hub.require(f"RFT on {args.dataset} without --data-dir", "pass --data-dir with the local copies")
    params = {k: v for k, v in vars(args).items() if k not in ("func",)}
    tags = run_tags(args, "rft", dataset=args.dataset, samples=args.samples)
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
