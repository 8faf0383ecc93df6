"""Every registered table's :class:`~.specs.TableSpec`, in the order the workflow's ``all`` builds them.

The workflow's ``table`` rule reads a table's spec here (its inputs, its report options) and ``all`` builds
every table in this order (those of a kind a configuration leaves out, e.g. RFT without an ``rft`` section,
apart). The ablations' specs come from their :data:`~.ablations.ABLATIONS` entries; tests check that every
registered table has exactly one spec.
"""

from __future__ import annotations

from .ablations import ABLATIONS
from .labels import PAPER_TASKS
from .specs import TableSpec

TABLE_SPECS: dict[str, TableSpec] = {
    "table2": TableSpec(notes=True),
    "pairs": TableSpec(),
    "table1": TableSpec(),
    "table4": TableSpec(methods="compare", tasks=tuple(PAPER_TASKS["table4"]), notes=True),
    "table5": TableSpec(methods="compare", tasks=tuple(PAPER_TASKS["table5"]), notes=True),
    "baselines": TableSpec(methods="compare", notes=True),  # every method on PruneNet's parameter budget
    "table9": TableSpec("speed"),
    "quantize": TableSpec("gguf"),  # prune x quantize in llama.cpp
    **{name: ablation.spec for name, ablation in ABLATIONS.items()},
    "table20": TableSpec("attention", methods=("prunenet-attention",)),
    "table21": TableSpec(methods=("prunenet",), notes=True),
    "table22": TableSpec(methods=("slicegpt",), notes=True),
    "table23": TableSpec("mmlu", methods="mmlu", tasks="mmlu"),
    "table6": TableSpec("transfer"),
    "table3": TableSpec("rft", rft="first"),
    "table8": TableSpec("rft", rft="all"),
}
