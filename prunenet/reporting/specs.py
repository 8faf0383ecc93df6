"""What each table is built from, declared beside the tables (torch- and pandas-free: the workflow reads it).

A :class:`TableSpec` says which runs a table reads and how its report command is called: the kind of inputs,
the methods of its rows, its task columns, whether it notes the models a method refuses, and, for an ablation,
its :class:`Variant` s. The workflow turns a spec into evaluation files with a few generic input functions
(``workflow/rules/targets.smk``), so adding a table or an ablation changes the package, not a rule file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..choices import DATASETS

# The kinds of inputs a table reads; the workflow has one input function per kind.
INPUT_KINDS = (
    "runs",  # dense and the pruned runs of its methods at prune.ratios (Table 2's, with schedules, when unnamed)
    "ablation",  # dense and each variant's runs
    "transfer",  # the transfer policies (config transfer; built only when it lists some)
    "speed",  # `prunenet speed` measurements
    "mmlu",  # MMLU evaluations of mmlu.methods
    "attention",  # prunenet-attention at attention.ratios, with RFT rows if asked
    "rft",  # the RFT runs and the runs they start from (built only with an rft section)
    "gguf",  # llama.cpp's perplexity and speed of exported GGUF files (built by `all` only with quantize.in_all)
)
# Config values a spec may name instead of a fixed list (read by the workflow):
METHOD_SOURCES = (
    "compare",  # compare.<table> (null: every registered method pruning to PruneNet's parameter budget)
    "mmlu",  # mmlu.methods
)
TASK_SOURCES = ("mmlu",)  # mmlu.subjects, as mmlu_<subject> columns
# Ratio lists an ablation variant runs at (config section ablations):
VARIANT_RATIOS = (
    "ratios",  # ablations.ratios (null: prune.ratios)
    "prune",  # prune.ratios (Table 2's)
    "rft",  # rft.ratios (null: prune.ratios), the ratios fine-tuned
    "high_ratio",  # ablations.high_ratio
    "schedule",  # the per-layer schedule ablations.schedule
    "schedule_mean",  # uniform pruning at that schedule's mean ratio
)
EACH_CALIB = "each"  # Variant.calib: one variant per ablations.calib_datasets corpus (label names it: {calib})
# Which configured models a table's rows come from (TableSpec.models):
MODEL_SOURCES = (
    "large_model",  # the one model config large_model names (paper Tables 14/15: LLaMA-2-13B); unset: not built
)


@dataclass(frozen=True)
class Variant:
    """One labelled group of runs of an ablation; the table's first variant is the reference.

    ``label`` may name ``{calib}`` (the corpus) and ``{schedule}`` (ablations.schedule as configured).
    ``policy``: policy dimensions that differ from the configured policy (any field of
    :class:`prunenet.policy_spec.PolicySpec` but the ratio), e.g. ``{"penalty": "ad"}``.
    ``rft``: the dataset its runs are fine-tuned on (first seed, rft.table_size samples, rft's training settings),
    named here rather than taken from rft.datasets, so a table after RFT on Alpaca (paper Table 12) reads Alpaca
    runs whatever rft.datasets lists; None: its runs without RFT.
    """

    label: str
    method: str
    ratios: str = "ratios"
    calib: str | None = None  # None: the method's configured corpus; EACH_CALIB: every ablations.calib_datasets
    policy: dict[str, str] = field(default_factory=dict)
    rft: str | None = None

    def __post_init__(self) -> None:
        if self.ratios not in VARIANT_RATIOS:
            raise ValueError(f"variant {self.label!r}: ratios {self.ratios!r} is not one of {VARIANT_RATIOS}")
        if self.rft is not None and self.rft not in DATASETS:
            raise ValueError(f"variant {self.label!r}: rft {self.rft!r} is not one of {DATASETS}")


@dataclass(frozen=True)
class TableSpec:
    """What one registered table reads and which options its report command gets.

    ``methods``: its rows' methods (a list), a config source (:data:`METHOD_SOURCES`), or None for prune.methods
    (Table 2's runs, schedules included). ``tasks``: the paper's task columns (those evaluated are shown), a
    config source (:data:`TASK_SOURCES`), or None for every evaluated task. ``notes``: a line under the table per
    (model, method) skipped because the method refuses the model. ``rft``: an RFT table's fine-tuning datasets,
    ``first`` or ``all`` of rft.datasets. ``models``: None for every configured model, or a config key naming
    the one model of its rows (:data:`MODEL_SOURCES`).
    """

    inputs: str = "runs"
    methods: tuple[str, ...] | str | None = None
    tasks: tuple[str, ...] | str | None = None
    notes: bool = False
    variants: tuple[Variant, ...] = ()
    rft: str = "first"
    models: str | None = None

    def __post_init__(self) -> None:
        if self.inputs not in INPUT_KINDS:
            raise ValueError(f"inputs {self.inputs!r} is not one of {INPUT_KINDS}")
        if isinstance(self.methods, str) and self.methods not in METHOD_SOURCES:
            raise ValueError(f"methods {self.methods!r}: give a list or one of {METHOD_SOURCES}")
        if isinstance(self.tasks, str) and self.tasks not in TASK_SOURCES:
            raise ValueError(f"tasks {self.tasks!r}: give a list or one of {TASK_SOURCES}")
        if (self.inputs == "ablation") != bool(self.variants):
            raise ValueError("an ablation table (inputs 'ablation') and only one lists variants")
        if self.models is not None and self.models not in MODEL_SOURCES:
            raise ValueError(f"models {self.models!r}: give None (every model) or one of {MODEL_SOURCES}")

    @property
    def needs(self) -> tuple[str, ...]:
        """The optional config sections this table reads: without one of them `all` leaves it out (the transfer
        policies, an rft section, the large model, llama.cpp's quantize section)."""
        out = [self.inputs] if self.inputs in ("transfer", "rft") else []
        out += ["quantize"] if self.inputs == "gguf" else []
        out += ["rft"] if any(v.rft for v in self.variants) and "rft" not in out else []
        return tuple(out + ([self.models] if self.models else []))
