"""Reports: tables and figures built from the pipeline's outputs, by kind (``prunenet report KIND``).

A new table is one function in :mod:`.tables` decorated with ``@TABLES.decorator("name")``
(inputs: evaluation JSONs; outputs: CSV + Markdown) and a :class:`~.specs.TableSpec` in
:data:`~.targets.TABLE_SPECS` (what it reads); the workflow's ``table`` rule builds it as
``results/tables/<name>.csv`` and ``all`` builds every table in that order.
"""

from __future__ import annotations

from .ablations import ABLATIONS  # registers tables 7, 10-19
from .figures import fig1, fig3, fig4, ppl_vs_ratio
from .frames import accuracy_frame, load_results
from .labels import TABLE2_TASKS
from .quantize import quantize_frame  # also registers the prune x quantize table (llama.cpp results)
from .settings import settings
from .spectra import export_spectra
from .speed import speedup
from .summary import summary  # also registers table9 (inputs: `prunenet speed` JSONs)
from .tables import TABLES

FIGURES = {"fig1": fig1, "fig3": fig3, "fig4": fig4, "ppl_vs_ratio": ppl_vs_ratio, "speedup": speedup}
# kind -> function; tables also write a Markdown twin (--out-md)
REPORTS = dict(TABLES.items()) | FIGURES | {"summary": summary, "settings": settings}  # summary: results/report.md
WITH_MARKDOWN = (*TABLES.names(), "settings")  # kinds that write a Markdown twin (--out-md)

__all__ = [
    "ABLATIONS",
    "FIGURES",
    "REPORTS",
    "TABLES",
    "WITH_MARKDOWN",
    "TABLE2_TASKS",
    "accuracy_frame",
    "export_spectra",
    "load_results",
    "quantize_frame",
]
