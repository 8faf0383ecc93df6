"""The steps that turn results into files for people and runtimes: spectra, tables and reports, GGUF export."""

from __future__ import annotations

import inspect
import json

from ..errors import PruneNetError


def cmd_spectra(args) -> None:
    from .. import tracking
    from ..reporting import export_spectra

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
    from .. import reporting, tracking

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
    from ..export import export, plan

    p = plan(args.checkpoint, args.type, args.merge_low_rank)
    summary = export(p, args.out)
    if summary["merged_low_rank"]:
        print(f"merged {summary['merged_low_rank']} low-rank linears back into dense ones: their saving is gone")
    print(json.dumps({"out": str(args.out), "type": args.type} | summary))
