"""A pruning ratio as one value, parsed once where it enters: the CLI's ``--ratio``, the config, a path tag.

Why: a ratio used to travel config -> path wildcard -> CLI text -> per-layer list and be re-parsed at each
step by its own code (and so could be read differently at each). :class:`RatioSpec` is parsed at the edge and
handed on as the object; each form it takes (``.tag`` in paths, ``.cli`` on the command line, ``.record`` in
checkpoint metadata, ``.per_layer(n)`` for the model) is derived from it in one place. Torch-free at module
level: the workflow imports it while it builds the DAG.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import PruneNetError

# A schedule's kind -> its abbreviation in paths ('linear:0.1:0.5' -> 'lin0.1-0.5').
SCHEDULE_KINDS = {"linear": "lin", "shuffled": "shuf"}
# How many fields after the kind each schedule takes (shuffled: an optional draw seed).
SCHEDULE_FIELDS = {"linear": (2,), "shuffled": (2, 3)}
SCHEDULE_TAG = re.compile(r"(?P<kind>lin|shuf)(?P<lo>[0-9.]+)-(?P<hi>[0-9.]+)(?:-(?P<seed>[0-9]+))?")
# The path tag of any ratio, for a workflow wildcard: a number or a schedule tag (no named groups).
TAG_PATTERN = r"[0-9]+(\.[0-9]+)?|" + re.sub(r"\(\?P<\w+>", "(?:", SCHEDULE_TAG.pattern)

UNIFORM, PER_LAYER = "uniform", "per_layer"


@dataclass(frozen=True)
class RatioSpec:
    """One ratio for all layers, one per layer, or a schedule (paper T7) over the layers.

    ``kind``: 'uniform', 'per_layer', 'linear' or 'shuffled'; ``values``: the ratio, the per-layer ratios or a
    schedule's (first/low, last/high); ``seed``: a shuffled schedule's draw seed as given (None: absent, draws
    with 0); ``text``: the CLI form as given (kept verbatim so that what was asked is what is recorded).
    """

    kind: str
    values: tuple[float, ...]
    seed: int | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> RatioSpec:
        """The CLI's ``--ratio``: ``0.3``, ``0.1,0.2,...`` or ``linear:0.1:0.5`` / ``shuffled:0:0.4[:SEED]``."""
        if ":" in text:
            kind, _, rest = text.partition(":")
            parts = rest.split(":")
            try:
                if len(parts) not in SCHEDULE_FIELDS.get(kind, ()):
                    raise ValueError(kind)
                values, seed = (float(parts[0]), float(parts[1])), int(parts[2]) if len(parts) == 3 else None
            except ValueError:
                raise PruneNetError(
                    f"unknown ratio schedule {text!r}: use linear:START:END or shuffled:LOW:HIGH[:SEED], "
                    "e.g. linear:0.1:0.5"
                ) from None
            return cls(kind, values, seed, text)
        try:
            values = tuple(float(x) for x in text.split(","))
        except ValueError:
            raise PruneNetError(f"not a ratio or comma-separated ratios: {text!r}") from None
        return cls(UNIFORM if len(values) == 1 else PER_LAYER, values, None, text)

    @classmethod
    def of(cls, value: RatioSpec | float | Sequence[float] | str) -> RatioSpec:
        """A spec from what a caller holds: a spec (as is), CLI/config text, one number or a per-layer list."""
        if isinstance(value, RatioSpec):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, (int, float)):
            return cls(UNIFORM, (float(value),), None, str(value))
        values = tuple(float(v) for v in value)
        return cls(PER_LAYER, values, None, ",".join(str(v) for v in values))

    @classmethod
    def from_tag(cls, tag: str) -> RatioSpec:
        """A path's ratio wildcard: '0.3' or 'lin0.1-0.5' / 'shuf0-0.4-3' (its numbers kept as written)."""
        m = SCHEDULE_TAG.fullmatch(tag)
        if not m:
            return cls(UNIFORM, (float(tag),), None, tag)
        kind = {v: k for k, v in SCHEDULE_KINDS.items()}[m["kind"]]
        seed = int(m["seed"]) if m["seed"] else None
        text = f"{kind}:{m['lo']}:{m['hi']}" + (f":{m['seed']}" if m["seed"] else "")
        return cls(kind, (float(m["lo"]), float(m["hi"])), seed, text)

    @property
    def is_uniform(self) -> bool:
        return self.kind == UNIFORM

    @property
    def is_schedule(self) -> bool:
        return self.kind in SCHEDULE_KINDS

    @property
    def cli(self) -> str:
        """The ``--ratio`` text (as given where it was parsed from text)."""
        return self.text

    @property
    def tag(self) -> str:
        """The path form: 0.25 -> '0.25', 0.3 -> '0.3', linear:0.1:0.5 -> 'lin0.1-0.5', shuffled:0:0.4:3 ->
        'shuf0-0.4-3'. Per-layer lists have none (the workflow does not run them)."""
        if self.is_uniform:
            return f"{self.values[0]:g}"
        if not self.is_schedule:
            raise ValueError(f"a per-layer ratio list has no path tag: {self.text!r}")
        lo, hi = self.values
        return f"{SCHEDULE_KINDS[self.kind]}{lo:g}-{hi:g}" + ("" if self.seed is None else f"-{self.seed}")

    @property
    def mean(self) -> float:
        """The mean ratio: a schedule's is its range's middle (what a schedule's policy trains at)."""
        if self.is_schedule:
            return round(sum(self.values) / 2, 6)
        return sum(self.values) / len(self.values)

    @property
    def record(self) -> float | list[float] | str:
        """What a checkpoint's metadata records: the number, the list, or the schedule's text."""
        if self.is_uniform:
            return self.values[0]
        return list(self.values) if self.kind == PER_LAYER else self.text

    def per_layer(self, num_layers: int) -> list[float]:
        """The ratio of each of ``num_layers`` layers.

        ``linear:0.1:0.5`` prunes the first layer by 10 % and the last by 50 %, linearly in between.
        ``shuffled:0:0.4[:SEED]`` spreads the same evenly spaced ratios (0 … 0.4) over the layers in an order
        drawn from SEED (default 0): every layer gets a different ratio within the range, the mean is exactly
        the range's middle (paper T7: "between 0 % and 40 %, average 20 %"), and the draw is reproducible.
        """
        if self.is_uniform:
            return [self.values[0]] * num_layers
        if self.kind == PER_LAYER:
            if len(self.values) != num_layers:
                raise PruneNetError(
                    f"per-layer ratio list has {len(self.values)} entries but the model has {num_layers} layers"
                )
            return list(self.values)
        start, end = self.values
        step = (end - start) / max(num_layers - 1, 1)
        spaced = [round(start + i * step, 6) for i in range(num_layers)]
        if self.kind == "linear":
            return spaced
        import torch  # only a shuffled schedule draws, and only when a model is pruned

        generator = torch.Generator().manual_seed(self.seed or 0)
        return [spaced[i] for i in torch.randperm(num_layers, generator=generator).tolist()]

    def bounds(self) -> list[float]:
        """Every ratio some layer gets, known without the model (range checks before it loads): the list itself,
        else the ratios of a 2-layer model (the one ratio, a schedule's two ends)."""
        return self.per_layer(len(self.values) if self.kind == PER_LAYER else 2)

    def __float__(self) -> float:
        """The one ratio of a uniform spec (methods that take a single ratio)."""
        if not self.is_uniform:
            raise TypeError(f"ratio {self.text!r} is not a single ratio")
        return self.values[0]

    def __str__(self) -> str:
        """As the recorded value prints (run names, MLflow parameters)."""
        return str(self.record)
