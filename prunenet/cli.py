"""``python -m prunenet <command>``: what the workflow rules call, one command per stage.

Every command logs one MLflow run (see :mod:`prunenet.tracking`) and writes its outputs
atomically. User mistakes end with one ``error: ...`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import PruneNetError


def _ratios(text: str) -> float | list[float] | str:
    """``0.3``, a per-layer list ``0.1,0.2,...`` or a schedule ``linear:0.1:0.5``."""
    if ":" in text:
        return text
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a ratio or comma-separated ratios: {text!r}") from None
    return values[0] if len(values) == 1 else values


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
    with tracking.run(name, "download", {"spec": args.model, "dtype": args.dtype}, {"stage": "download", "model": name}) as run:
        run.metrics({"params": read_meta(out)["params"], "seconds": time.perf_counter() - t0})
    print(f"wrote {out}")


def cmd_train(args) -> None:
    from . import tracking
    from .models import load_model
    from .policy import PolicyNetwork, save_policy
    from .training import TrainConfig, collect_states, mean_penalty, train_policy

    cfg = TrainConfig(ratio=args.ratio, episodes=args.episodes, gamma=args.gamma, lr=args.lr, penalty=args.penalty,
                      state=args.state, objective=args.objective, baseline=args.baseline, samples=args.samples,
                      spectrum=args.spectrum, seed=args.seed)
    cfg.validate()
    model, _ = load_model(args.model, device=args.device, dtype="float32")
    states = collect_states(model, cfg.state)
    del model
    params = vars(cfg) | {"model_path": args.model}
    with tracking.run(_tags(args, "train")["model"], f"train r={cfg.ratio} {cfg.penalty}/{cfg.state}/{cfg.objective} s{cfg.seed}",
                      params, _tags(args, "train", ratio=cfg.ratio, penalty=cfg.penalty, state=cfg.state)) as run:
        result = train_policy(states, cfg, on_episode=lambda ep, pen: run.metric("penalty", pen, step=ep))
        best = PolicyNetwork(states.shape[1], states.shape[2], bias=cfg.objective == "official")
        best.load_state_dict(result.best)
        evals = {
            "eval_penalty_policy": mean_penalty(states, "policy", cfg.ratio, best.to(states.device), args.eval_samples, cfg.penalty, cfg.spectrum, cfg.seed + 1),
            "eval_penalty_random": mean_penalty(states, "random", cfg.ratio, None, args.eval_samples, cfg.penalty, cfg.spectrum, cfg.seed + 1),
        }
        meta = {"model": args.model, "shape": list(states.shape), "config": result.config, "history": result.history,
                "layer_penalties_last": result.layer_penalties[-1], "best_episode": result.best_episode,
                "seconds": result.seconds, **evals}
        save_policy(args.out, result.best, result.last, meta)
        run.metrics(evals | {"train_seconds": result.seconds, "best_episode": result.best_episode,
                             "best_penalty": min(result.history), "first_penalty": result.history[0]})
        run.artifact(str(args.out).removesuffix(".safetensors") + ".json")
    print(f"wrote {args.out}: penalty {result.history[0]:.4f} -> best {min(result.history):.4f} "
          f"(policy {evals['eval_penalty_policy']:.4f} vs random {evals['eval_penalty_random']:.4f} over {args.eval_samples} draws)")


def cmd_prune(args) -> None:
    from . import tracking
    from .models import load_model, save_checkpoint
    from .policy import check_ratio, load_policy
    from .slicing import layer_ratios, plan_rows, prune_ffn
    from .stats import model_stats

    # Range check before any loading: every entry of a per-layer list, both ends of a schedule.
    probe_layers = len(args.ratio) if isinstance(args.ratio, list) else 2
    for r in layer_ratios(args.ratio, probe_layers):
        check_ratio(r)
    model, tok = load_model(args.model, device=args.device, dtype="float32")
    dense = model_stats(model, seq_len=args.flops_seq_len)
    policy, pmeta = (None, {})
    selector = {"prunenet": "policy"}.get(args.method, args.method)
    if selector != "random":
        if not args.policy:
            raise PruneNetError(f"method {args.method!r} needs a trained policy: pass --policy FILE")
        policy, pmeta = load_policy(args.policy, args.which)
    state = pmeta.get("config", {}).get("state", args.state)
    t0 = time.perf_counter()
    rows = plan_rows(model, selector, args.ratio, policy, state=state, seed=args.seed)
    sizes = prune_ffn(model, rows)
    stats = model_stats(model, dense["params"], args.flops_seq_len) | {"dense_flops_per_token": dense["flops_per_token"]}
    ratios = layer_ratios(args.ratio, len(sizes))
    meta = {"method": args.method, "ratio": round(sum(ratios) / len(ratios), 6), "ratio_spec": args.ratio,
            "layer_ratios": ratios, "policy": args.policy, "which": args.which, "state": state,
            "seed": args.seed, "intermediate_sizes": sizes, "stats": stats, "source": args.model,
            "policy_trained_at": pmeta.get("config", {}).get("ratio")}
    with tracking.run(_tags(args, "prune")["model"], f"prune {args.method} r={args.ratio}", meta | {"stats": None},
                      _tags(args, "prune", method=args.method, ratio=args.ratio)) as run:
        save_checkpoint(model, tok, args.out, meta)
        run.metrics(stats | {"prune_seconds": time.perf_counter() - t0})
    print(f"wrote {args.out}: {stats['params']:,} params (effective sparsity {stats['effective_sparsity']:.3f})")


def cmd_slicegpt(args) -> None:
    from . import slicegpt, tracking
    from .models import load_model
    from .stats import model_stats

    model, tok = load_model(args.model, device="cpu", dtype="float32")
    dense = model_stats(model, seq_len=args.flops_seq_len)
    t0 = time.perf_counter()
    calib = slicegpt.calibration_blocks(tok, args.calib_dataset, args.data_dir, args.calib_samples, args.calib_seq_len, args.seed)
    model = slicegpt.slice_model(model, tok, args.ratio, calib, damping=args.damping, round_to=args.round_to, device=args.device)
    stats = model_stats(model, dense["params"], args.flops_seq_len) | {"dense_flops_per_token": dense["flops_per_token"]}
    meta = {"method": "slicegpt", "ratio": args.ratio, "calib_dataset": args.calib_dataset, "calib_samples": args.calib_samples,
            "calib_seq_len": args.calib_seq_len, "seed": args.seed, "stats": stats, "source": args.model,
            "slice_seconds": time.perf_counter() - t0}
    with tracking.run(_tags(args, "prune")["model"], f"prune slicegpt r={args.ratio}", meta | {"stats": None},
                      _tags(args, "prune", method="slicegpt", ratio=args.ratio)) as run:
        slicegpt.save_sliced(model, tok, args.out, meta)
        run.metrics(stats | {"prune_seconds": meta["slice_seconds"]})
    print(f"wrote {args.out}: {stats['params']:,} params (effective sparsity {stats['effective_sparsity']:.3f})")


def cmd_evaluate(args) -> None:
    from . import tracking
    from .artifacts import write_json
    from .data import load_texts, split_note
    from .evaluation import perplexity, run_lm_eval
    from .models import load_model, read_meta

    meta = read_meta(args.model)
    out = {"model": args.model_name or Path(args.model).name, "model_path": args.model, "method": args.method or meta.get("method", "dense"), "ratio": meta.get("ratio", 0.0),
           "meta": meta}
    t0 = time.perf_counter()
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)  # once, for both measurements
    if args.tasks:
        out |= run_lm_eval((model, tok), args.tasks, args.data_dir, args.limit, device=args.device, dtype=args.dtype,
                           batch_size=args.batch_size, seed=args.seed, num_fewshot=args.num_fewshot,
                           work_dir=str(Path(args.out).parent / ".lm_tasks"))
    if args.ppl_dataset:
        texts = load_texts(args.ppl_dataset, "test", args.data_dir)
        out["perplexity"] = perplexity(model, tok, texts, seq_len=args.ppl_seq_len, max_blocks=args.ppl_blocks,
                                       batch_size=args.batch_size) | {"source": split_note(args.ppl_dataset, "test", args.data_dir)}
    if "stats" not in meta:
        from .stats import model_stats

        out["meta"]["stats"] = model_stats(model)
    out["eval_seconds"] = time.perf_counter() - t0
    tags = _tags(args, "evaluate", method=out["method"], ratio=out["ratio"])
    with tracking.run(tags["model"], f"evaluate {out['method']} r={out['ratio']}",
                      {"tasks": args.tasks, "limit": args.limit, "data_dir": args.data_dir, "model_path": args.model}, tags) as run:
        for task, res in out.get("tasks", {}).items():
            run.metrics({f"{task}.{k}": v for k, v in res.items()})
        if "perplexity" in out:
            run.metric("ppl", out["perplexity"]["ppl"])
        write_json(args.out, out)
        run.artifact(args.out)
    print(f"wrote {args.out}")


def cmd_rft(args) -> None:
    from . import tracking
    from .rft import finetune

    params = {k: v for k, v in vars(args).items() if k not in ("func",)}
    tags = _tags(args, "rft", dataset=args.dataset, samples=args.samples)
    with tracking.run(tags["model"], f"rft {args.dataset} n={args.samples} {Path(args.model).name}", params, tags) as run:
        summary = finetune(args.model, args.out, args.dataset, args.samples, args.data_dir, seq_len=args.seq_len,
                           batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, max_steps=args.max_steps,
                           lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                           eval_every=args.eval_every, seed=args.seed, device=args.device, dtype=args.dtype,
                           log_csv=args.log_csv, val_fraction=args.val_fraction, test_blocks=args.test_blocks,
                           micro_batch_size=args.micro_batch_size, allow_truncate=args.allow_truncate,
                           on_metrics=lambda name, value, step: run.metric(name, value, step))
        run.metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        run.artifact(args.log_csv)
    print(json.dumps(summary, indent=1, default=str))


def cmd_report(args) -> None:
    from . import reporting, tracking

    written = reporting.REPORTS[args.kind](args.inputs, args.out, **json.loads(args.options or "{}"))
    with tracking.run(args.experiment, f"report {args.kind}", {"kind": args.kind, "inputs": len(args.inputs)},
                      {"stage": "report", "kind": args.kind}) as run:
        for path in written:
            run.artifact(path)
    print("wrote " + ", ".join(map(str, written)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunenet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, model_help="model checkpoint directory"):
        sp.add_argument("--model", required=True, help=model_help)
        sp.add_argument("--model-name", help="MLflow experiment name (default: model directory name)")
        sp.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--flops-seq-len", type=int, default=2048, help="context length for FLOP counts")

    d = sub.add_parser("download", help="resolve a model spec into a local safetensors checkpoint")
    d.add_argument("--model", default="smollm2-135m", help="embedded name, .gguf file, local dir or hub id")
    d.add_argument("--model-name")
    d.add_argument("--out", required=True)
    d.add_argument("--dtype", default="float32")
    d.set_defaults(func=cmd_download)

    t = sub.add_parser("train", help="train the PruneNet policy (REINFORCE, no calibration data)")
    common(t)
    t.add_argument("--out", required=True, help="policy .safetensors file (a .json twin is written beside it)")
    t.add_argument("--ratio", type=float, default=0.3)
    t.add_argument("--episodes", type=int, default=20)
    t.add_argument("--gamma", type=float, default=0.99)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--penalty", default="ks", choices=["ks", "ad"])
    t.add_argument("--state", default="up", choices=["up", "gate", "down"])
    t.add_argument("--objective", default="paper", choices=["paper", "official"])
    t.add_argument("--baseline", default="none", choices=["none", "running", "loo"],
                   help="variance reduction (paper: none): running mean of the return per layer, or leave-one-out over --samples draws")
    t.add_argument("--samples", type=int, default=1, help="row sets drawn per layer and episode (paper: 1)")
    t.add_argument("--spectrum", default="svd", choices=["svd", "gram"])
    t.add_argument("--eval-samples", type=int, default=20, help="draws used to compare the policy with random rows")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("prune", help="slice FFNs with a trained policy or an ablation selector")
    common(pr)
    pr.add_argument("--out", required=True)
    pr.add_argument("--ratio", type=_ratios, required=True,
                    help="0.3, a per-layer list 0.1,0.2,... or a schedule linear:0.1:0.5 (first:last layer)")
    pr.add_argument("--method", default="prunenet", choices=["prunenet", "deterministic", "random"])
    pr.add_argument("--policy", help="policy file from `prunenet train`")
    pr.add_argument("--which", default="best", choices=["best", "last"])
    pr.add_argument("--state", default="up", choices=["up", "gate", "down"], help="only used without a policy")
    pr.set_defaults(func=cmd_prune)

    s = sub.add_parser("slicegpt", help="SliceGPT baseline (needs calibration data)")
    common(s)
    s.add_argument("--out", required=True)
    s.add_argument("--ratio", type=float, required=True)
    s.add_argument("--calib-dataset", default="wikitext2", choices=["wikitext2", "ptb", "alpaca"])
    s.add_argument("--calib-samples", type=int, default=32)
    s.add_argument("--calib-seq-len", type=int, default=256)
    s.add_argument("--damping", type=float, default=0.01)
    s.add_argument("--round-to", type=int, default=8)
    s.add_argument("--data-dir", help="local benchmark data (offline); default: the hub")
    s.set_defaults(func=cmd_slicegpt)

    e = sub.add_parser("evaluate", help="zero-shot lm-eval tasks and perplexity -> one JSON")
    common(e)
    e.add_argument("--out", required=True)
    e.add_argument("--method", help="label (default: from the checkpoint's metadata)")
    e.add_argument("--tasks", nargs="*", default=["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"])
    e.add_argument("--limit", type=int, help="items per task (default: all)")
    e.add_argument("--num-fewshot", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--dtype", default="auto")
    e.add_argument("--data-dir", help="local benchmark data (offline); default: lm-eval's hub tasks")
    e.add_argument("--ppl-dataset", default="wikitext2", help="perplexity corpus ('' to skip)")
    e.add_argument("--ppl-seq-len", type=int, default=512)
    e.add_argument("--ppl-blocks", type=int, help="max blocks (default: whole test split)")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("rft", help="LoRA recovery fine-tuning of a pruned checkpoint")
    common(r)
    r.add_argument("--out", required=True)
    r.add_argument("--dataset", default="wikitext2")
    r.add_argument("--samples", type=int, default=100, help="training samples (blocks of --seq-len tokens; Alpaca: records)")
    r.add_argument("--data-dir")
    r.add_argument("--seq-len", type=int, default=256)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--lr", type=float, default=2e-4)
    r.add_argument("--epochs", type=float, default=1.0)
    r.add_argument("--max-steps", type=int)
    r.add_argument("--lora-r", type=int, default=8)
    r.add_argument("--lora-alpha", type=int, default=16)
    r.add_argument("--lora-dropout", type=float, default=0.05)
    r.add_argument("--eval-every", type=int, default=10)
    r.add_argument("--val-fraction", type=float, default=0.1)
    r.add_argument("--test-blocks", type=int, default=16, help="test-split blocks for perplexity before/after")
    r.add_argument("--micro-batch-size", type=int, default=2, help="gradient accumulation chunk (memory)")
    r.add_argument("--allow-truncate", action="store_true", help="use all available samples if fewer than requested")
    r.add_argument("--dtype", default="auto")
    r.add_argument("--log-csv", required=True)
    r.set_defaults(func=cmd_rft)

    rep = sub.add_parser("report", help="aggregate evaluation JSONs into tables and figures")
    rep.add_argument("kind", help="table1 | table2 | table3 | table8 | fig1 | fig3 | fig4")
    rep.add_argument("--inputs", nargs="+", required=True)
    rep.add_argument("--out", required=True)
    rep.add_argument("--experiment", default="reports")
    rep.add_argument("--options", help="JSON dict of extra options")
    rep.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PruneNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
