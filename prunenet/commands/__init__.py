"""What each ``prunenet`` subcommand does: load, run one pipeline step, log one MLflow run, write atomically.

:mod:`prunenet.cli` parses the arguments and calls these; user mistakes raise
:class:`~prunenet.errors.PruneNetError`, which the CLI prints as one line (exit status 2).
"""

from __future__ import annotations

from .measure import cmd_evaluate, cmd_speed
from .outputs import cmd_export, cmd_report, cmd_spectra
from .pipeline import cmd_download, cmd_prepare, cmd_prune, cmd_rft, cmd_sweep, cmd_train

__all__ = [
    "cmd_download",
    "cmd_evaluate",
    "cmd_export",
    "cmd_prepare",
    "cmd_prune",
    "cmd_report",
    "cmd_rft",
    "cmd_speed",
    "cmd_spectra",
    "cmd_sweep",
    "cmd_train",
]
