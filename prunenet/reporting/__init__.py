"""Reports: tables and figures built from the pipeline's outputs, by kind (``prunenet report KIND``).

A new table is one function in :mod:`.tables` (inputs: evaluation JSONs; outputs: CSV +
Markdown) registered in :data:`REPORTS`, plus one line in the workflow's report rules.
"""

from __future__ import annotations

from .figures import fig1, fig3, fig4
from .spectra import export_spectra
from .tables import TABLE2_TASKS, accuracy_frame, load_results, table1, table2, table3, table8

# kind -> function; the kinds in TABLES also write a Markdown twin (--out-md)
REPORTS = {
    "table1": table1,
    "table2": table2,
    "table3": table3,
    "table8": table8,
    "fig1": fig1,
    "fig3": fig3,
    "fig4": fig4,
}
TABLES = ("table1", "table2", "table3", "table8")

__all__ = ["REPORTS", "TABLES", "TABLE2_TASKS", "accuracy_frame", "export_spectra", "load_results"]
