"""``python -m prunenet <command>``: what the workflow rules call, one command per stage.

Every command logs one MLflow run (see :mod:`prunenet.tracking`) and writes its outputs
atomically. User mistakes end with one ``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import PruneNetError
from .arguments import Parser
from .subcommands import SUBCOMMANDS


def build_parser() -> argparse.ArgumentParser:
    """The CLI: one subcommand per pipeline stage, each declared by its own function in :mod:`.subcommands`."""
    p = Parser(prog="prunenet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return p


OUTPUT_FLAGS = ("out", "out_md", "meta_out", "log_csv")


def main(argv: list[str] | None = None) -> int:
    from ..artifacts import check_writable

    args = build_parser().parse_args(argv)
    try:
        for flag in OUTPUT_FLAGS:  # every output location, before any model loads
            if getattr(args, flag, None):
                check_writable(getattr(args, flag), "--" + flag.replace("_", "-"))
        args.func(args)
    except PruneNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
