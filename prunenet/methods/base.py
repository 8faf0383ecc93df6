"""What a compression method is to the rest of the pipeline: a registry entry and a run function.

The entry states what the method needs (a trained policy, calibration data), what it accepts
(per-layer ratio schedules) and which checkpoint format it writes; the CLI, the config schema
and the workflow read these facts instead of naming methods. Importing this package must not
import torch: the workflow reads the registry while it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..choices import ATTENTION_STATES, BUDGETS, DEFAULT_STATE, DEFAULT_WHICH, OBJECTIVES, UPDATES
from ..errors import PruneNetError
from ..ratios import RatioSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

# One ratio, one per layer, or a schedule "linear:A:B": the request holds it as a RatioSpec (None: ``prepare``).
Ratio = RatioSpec | float | list[float] | str | None


@dataclass(frozen=True)
class Prepared:
    """A prepared file, read once: what its state was computed from, the stage's wall time, and the state.

    Why one object: ``prune --prepared`` checks the record, reuses the tensors and reports the seconds; reading
    the file once (:func:`check_prepared`) and passing this on keeps them from disagreeing.
    """

    path: str
    record: dict[str, Any]
    seconds: float  # what ``prunenet prepare`` spent computing the state (counted in Table 9)
    tensors: dict[str, torch.Tensor]


@dataclass(frozen=True)
class PruneRequest:
    """Everything a user can ask of ``prunenet prune``; each method reads the fields it needs.

    ``ratio`` may be given as a number, list or text (tests, scripts); it is held as a :class:`RatioSpec`, so
    methods read one parsed value.
    """

    ratio: Ratio
    seed: int = 0
    device: str = "cpu"
    policy: str | None = None  # policy file (methods that need one)
    which: str = DEFAULT_WHICH  # best | last episode's policy
    state: str = DEFAULT_STATE  # state matrix of selectors without a policy file
    calib_dataset: str = "wikitext2"
    calib_samples: int = 32
    calib_seq_len: int = 256
    damping: float = 0.01
    round_to: int = 8  # SliceGPT: kept hidden width a multiple of this
    ffn_multiple: int = 1  # FFN rows kept per layer (and so every method's budget) rounded to a multiple of this
    data_dir: str | None = None
    dtype: str = "auto"  # the weights' dtype while compressing and in the saved model (choices.DTYPES)
    # The running method's own options (:attr:`Method.options`), by option name; absent = its default.
    options: dict[str, Any] = field(default_factory=dict)
    # The method's ratio-independent state (:attr:`Method.prepare`): a file from ``prunenet prepare`` (its path
    # as given; :func:`prunenet.methods.pipeline.check` reads it into a :class:`Prepared`), the tensors themselves
    # (a sweep prepares once in memory), or None to compute it in ``run``.
    prepared: str | Prepared | Mapping[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.ratio is not None:
            object.__setattr__(self, "ratio", RatioSpec.of(self.ratio))

    def weights_dtype(self) -> torch.dtype:
        """The dtype the model is loaded, compressed and saved in. ``auto`` resolves against the request's device,
        not the one a layer-by-layer method loads onto (SliceGPT holds the model on the CPU and computes each layer
        on ``device``), so a CUDA run is bfloat16 either way: LLaMA-2-7B's weights take 13.5 GB instead of 27."""
        from ..models import resolve_dtype

        return resolve_dtype(self.dtype, self.device)

    def nominal(self, method: Method) -> bool:
        """Whether ``method`` runs at its release's ratio (option ``budget: ratio``) rather than PruneNet's size."""
        return bool(method.nominal) and self.option(BUDGET, method) == "ratio"

    def option(self, name: str, method: Method) -> Any:
        """The value of ``method``'s option ``name`` in this request (its default when not given)."""
        spec = next((o for o in method.options if o.name == name), None)
        if spec is None:
            raise KeyError(f"method {method.name!r} has no option {name!r}")
        return self.options.get(name, spec.default)

    def calibration(self, tokenizer: Any) -> torch.Tensor:
        """The seeded calibration windows this request names: the one draw every calibrated method reads."""
        from ..data import calibration_blocks

        return calibration_blocks(
            tokenizer, self.calib_dataset, self.data_dir, self.calib_samples, self.calib_seq_len, self.seed
        )

    def calibration_meta(self) -> dict:
        """What a calibrated method records about its calibration data."""
        return {
            "calib_dataset": self.calib_dataset,
            "calib_samples": self.calib_samples,
            "calib_seq_len": self.calib_seq_len,
        }


@dataclass(frozen=True)
class Option:
    """One method-specific setting: the CLI flag ``--<method>-<name>`` and the config key ``<method>.<name>``."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None

    def flag(self, method: str) -> str:
        return f"--{method}-{self.name.replace('_', '-')}"

    def dest(self, method: str) -> str:
        return f"{method}_{self.name}".replace("-", "_")


@dataclass(frozen=True)
class Release:
    """One setting as the method's public release runs it, read there (never recalled), with why this differs.

    Why here: the release value, where it was read and the reason for a deviation are stated once, beside the
    method, and ``prunenet report settings`` renders them next to the configs' values (results/tables/settings.md),
    so no document restates a value that can drift. ``setting``: the key in the method's config section.
    """

    setting: str
    value: str  # as read in the release ("not checked" when it was not read there)
    where: str  # repository and file (and flag) it was read in
    why: str = ""  # one line: why this workflow's default (or paper.yaml) differs; empty when it does not


NOT_CHECKED = "not checked"
# Reasons several methods share (a :attr:`Release.why`), written once.
CPU_WINDOWS = "CPU default: fewer/shorter windows so the embedded model's job fits minutes on one core"
EQUAL_SIZE = "params: every baseline at PruneNet's parameter count, an equal-size comparison"
OFFLINE_SPLIT = "offline data has WikiText-2's validation split only (the hub, paper.yaml, reads its train split)"

BUDGET = "budget"  # the option a method with a nominal ratio gets (``<method>.budget``, ``--<method>-budget``)


def budget_option(nominal: str) -> Option:
    """The ``budget`` option of a method whose release defines its own ratio: ``params`` (the default, PruneNet's
    parameter count) or ``ratio`` (``nominal``, the release's meaning of the ratio). The schema states the same
    help as the key's description (tests/test_registry.py)."""
    help_ = f"params: PruneNet's parameter count at --ratio (equal size); ratio: {nominal}"
    return Option(BUDGET, str, BUDGETS[0], help_, BUDGETS)


@dataclass(frozen=True)
class Budget:
    """What a sized method (``Method.budget``) prunes to at ``ratio``, decided once per prune by
    :func:`prunenet.methods.pipeline.apply`: PruneNet's parameter count there (``params``: the parameters to
    remove), or, when ``params`` is None, ``ratio`` as the method's release defines it (:attr:`Method.nominal`)."""

    ratio: float
    params: int | None = None

    @property
    def nominal(self) -> bool:
        return self.params is None


# ``run(model, tokenizer, request)``; a method with ``budget=True`` takes a :class:`Budget` as a 4th argument.
RunFn = Callable[..., "tuple[nn.Module, dict]"]
PrepareFn = Callable[["nn.Module", Any, PruneRequest], "dict[str, torch.Tensor]"]


@dataclass(frozen=True)
class Method:
    """One registered compression method.

    ``run(model, tokenizer, request)`` compresses the loaded dense model (in place or not) and
    returns it with the method's own metadata; :func:`prunenet.methods.pipeline.apply` hands it
    what it declares it needs (the parameter budget) and adds the calibration record, and
    :func:`prunenet.methods.pipeline.compress` adds what every method reports (ratio, seed, sizes,
    FLOPs) and saves it in the ``checkpoint`` format (named as registered in
    :data:`prunenet.checkpoints.FORMATS`).
    """

    name: str
    summary: str
    run: RunFn
    needs_policy: bool = False
    needs_calibration: bool = False  # draws calibration windows; its checkpoint records which (calibration_meta)
    # Prunes to PruneNet's parameter budget at the ratio (:func:`prunenet.budget.ffn_rows_budget`): ``run`` takes
    # it as a 4th argument (a :class:`Budget`), computed once per prune by :func:`prunenet.methods.pipeline.apply`.
    budget: bool = False
    # What ``--ratio`` means at ``budget: ratio``, as the method's own release defines it (one line; empty: the method
    # has no ratio of its own). Non-empty gives the method the ``budget`` option (:func:`budget_option`), first.
    nominal: str = ""
    per_layer: bool = False  # accepts a ratio per layer / a schedule (paper T7)
    checkpoint: str = "per-layer-shapes"  # the name of its format in prunenet.checkpoints.FORMATS
    offload: bool = False  # loads the model on CPU and moves one layer at a time to the device
    # The seed changes the result through the method itself (a policy's training and draw, random rows).
    # False: the only randomness is the calibration sample; the workflow then runs the first seed only
    # unless calibration_seeds is "all".
    stochastic: bool = True
    options: tuple[Option, ...] = ()  # settings of this method alone (shared calibration flags excluded)
    # Work the ratio does not change (an activation statistic, a sensitivity search, layer scores), as named
    # tensors: ``prunenet prepare`` computes it once per model and seed, ``prune --prepared`` reuses it at
    # every ratio, and ``run`` reads it through :meth:`state` (computing it itself when none is given).
    prepare: PrepareFn | None = None
    # Option checks that need no model (ranges, parsable values): run by :meth:`check`, before loading.
    validate: Callable[[PruneRequest], None] | None = None
    # HF model types this method refuses (torch-free, for the workflow, which then skips the pair and says so in
    # the tables); the method's own one-line refusal stays where the architecture is checked.
    refuses: tuple[str, ...] = ()
    # The policy state this method's policy is trained on (None: the configured FFN state); the workflow names
    # the policy file from it (prunenet-attention: "qkv").
    policy_state: str | None = None
    # Prunes to PruneNet's parameter budget at each ratio, so it joins the same-budget comparisons (baselines.csv).
    same_budget: bool = True
    # Its settings as its public release runs them (:class:`Release`), one entry per config key; rendered by
    # ``prunenet report settings``. Empty: not checked against a release.
    release: tuple[Release, ...] = ()

    def load_device(self, device: str) -> str:
        """Where the model loads for ``device``: the host for a layer-by-layer method (``offload``: one layer at a
        time visits ``device``), else ``device``."""
        return "cpu" if self.offload else device

    def __post_init__(self) -> None:
        if self.nominal:
            if not self.budget:
                raise ValueError(f"method {self.name!r}: a nominal ratio needs budget=True")
            object.__setattr__(self, "options", (budget_option(self.nominal), *self.options))

    def fixed_policy(self) -> dict[str, str]:
        """The policy dimensions this method's trainer fixes whatever the config says: its state, and for an
        attention state the paper's objective and update (the attention trainer has no other, and the released loop
        trains FFN rows only: with the default's (official) values its train job would fail,
        prunenet.attention_policy.check_config and prunenet.released.check_config)."""
        if not self.policy_state:
            return {}
        fixed = {"state": self.policy_state}
        if self.policy_state in ATTENTION_STATES:
            fixed |= {"objective": OBJECTIVES[0], "update": UPDATES[0]}
        return fixed

    def section_flags(self, section: Mapping[str, Any]) -> list[str]:
        """``prunenet prune`` flags for the config section of this method's name, in its order: an own option
        (``Method.options``) as ``--<method>-<key>``, a shared calibration key as ``--calib-samples``. Written once
        for the workflow's prune rule and the benchmarks that run a method with a config's settings."""
        own = {o.name: o.flag(self.name) for o in self.options}
        return [a for key, value in section.items() for a in (own.get(key, f"--{key.replace('_', '-')}"), str(value))]

    def own_options(self, request: PruneRequest) -> dict[str, Any]:
        """The method's option values in ``request``, ``budget`` excluded: what its algorithm reads (the budget is
        the pipeline's, :func:`prunenet.methods.pipeline.apply`)."""
        return {o.name: request.option(o.name, self) for o in self.options if o.name != BUDGET}

    def check(self, request: PruneRequest) -> None:
        """Reject a request this method cannot serve, before any model is loaded.

        ``request.ratio`` None: a ``prepare`` request, which has no ratio.
        """
        ratio_ok = request.ratio is None or request.ratio.is_uniform
        if not self.per_layer and not ratio_ok:
            raise PruneNetError(f"method {self.name!r} takes a single --ratio, not per-layer ratios or a schedule")
        if request.prepared is not None and self.prepare is None:
            raise PruneNetError(f"method {self.name!r} has no ratio-independent stage: drop --prepared")
        if self.needs_policy and not request.policy:
            raise PruneNetError(f"method {self.name!r} needs a trained policy: pass --policy FILE")
        if self.needs_calibration:
            from .. import hub
            from ..data import check_calibration

            check_calibration(request.calib_dataset, request.calib_samples, request.calib_seq_len)
            if not request.data_dir:
                hub.require(f"{self.name}'s calibration text", "pass --data-dir with the local copies")
        if self.validate is not None:
            self.validate(request)

    def state(self, model: nn.Module, tokenizer: Any, request: PruneRequest) -> Mapping[str, torch.Tensor]:
        """The ratio-independent state for ``request``: the one it carries, else freshly prepared."""
        if isinstance(request.prepared, Mapping):
            return request.prepared
        if request.prepared is not None:
            return request.prepared.tensors  # a Prepared: pipeline.check read the file
        return self.prepare(model, tokenizer, request)
