"""Which policy a run uses, as one torch-free value: every dimension a policy is trained with, its id and its flags.

A policy's id names its directory (``results/policies/<model>/<id>/s<seed>``) and, through a pruned model's
setting wildcard, every checkpoint pruned with it. The workflow builds ids from the config (:meth:`from_config`),
an ablation changes one dimension (``penalty="ad"``), and ``rule train_policy`` reads the dimensions back from
its wildcard (:meth:`parse`) into the train command (:attr:`train_args`). A new dimension is one field here,
its place in :data:`ID_RE` and :attr:`id`, and its flag in :attr:`train_args`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from .choices import BASELINES, EQ3_READINGS, INITS, OBJECTIVES, PENALTIES, POLICY_STATES, PRESETS, STATES, UPDATES


def _alternatives(names: tuple[str, ...]) -> str:
    return "|".join(re.escape(n) for n in names)


# e.g. 'ks-up-paper-t0.3', 'ad-down-official-printed-loo4-t0.25', the authors' code (the default, config/config.yaml):
# 'ks-first-official-init-official-update-official-lr0.001-t0.3'. Tags left out are the paper's (Eq. 3 as coded, no
# baseline, one draw, the paper's init and update, the default learning rate), so the paper's policies keep their
# short ids.
DEFAULT_LR = PRESETS["paper"]["lr"]
ID_RE = re.compile(
    rf"(?P<penalty>{_alternatives(PENALTIES)})-(?P<state>{_alternatives(POLICY_STATES)})"
    rf"-(?P<objective>{_alternatives(OBJECTIVES)})(?:-(?P<eq3>{_alternatives(EQ3_READINGS[1:])}))?"
    rf"(?:-(?P<baseline>{_alternatives(BASELINES)})(?P<samples>[0-9]+))?"
    rf"(?:-init-(?P<init>{_alternatives(INITS[1:])}))?(?:-update-(?P<update>{_alternatives(UPDATES[1:])}))?"
    rf"(?:-lr(?P<lr>[0-9.]+(?:e-?[0-9]+)?))?-t(?P<ratio>[0-9.]+)"
)
PATTERN = re.sub(r"\(\?P<\w+>", "(?:", ID_RE.pattern)  # the same without named groups: a wildcard constraint


@dataclass(frozen=True)
class PolicySpec:
    """One policy's training dimensions; ``ratio``: the ratio it trains at, as written in paths ('0.3')."""

    ratio: str
    penalty: str = PENALTIES[0]
    state: str = STATES[0]
    objective: str = OBJECTIVES[0]
    eq3: str = EQ3_READINGS[0]
    baseline: str = BASELINES[0]
    samples: int = 1
    init: str = INITS[0]
    update: str = UPDATES[0]
    lr: float = DEFAULT_LR

    @classmethod
    def dimensions(cls) -> list[str]:
        """Every dimension but the ratio: what an ablation may change."""
        return [f.name for f in fields(cls) if f.name != "ratio"]

    @classmethod
    def from_config(cls, policy: Mapping, ratio: float | str, **changes: object) -> PolicySpec:
        """The configured policy (config section ``policy``; a dimension it lacks is the paper's) trained at
        ``ratio``, with ``changes`` (an ablation's dimensions) in place of the configured ones; unknown dimensions
        fail here, not in a job."""
        unknown = set(changes) - set(cls.dimensions())
        if unknown:
            raise ValueError(f"unknown policy dimension(s) {sorted(unknown)}: known are {cls.dimensions()}")
        base = cls(f"{float(ratio):g}", **{k: policy[k] for k in cls.dimensions() if k in policy})
        return replace(base, **changes)

    @classmethod
    def parse(cls, policy_id: str) -> PolicySpec:
        """A policy id (a path's wildcard) -> its dimensions; absent tags are the paper's."""
        m = ID_RE.fullmatch(policy_id)
        if m is None:
            raise ValueError(f"{policy_id!r} is not a policy id (e.g. 'ks-up-paper-t0.3')")
        given = {k: v for k, v in m.groupdict().items() if v is not None}
        numbers = {k: t(given[k]) for k, t in (("samples", int), ("lr", float)) if k in given}
        return cls(**(given | numbers))

    @property
    def id(self) -> str:
        """The path name: dimensions at the paper's value leave their tag out (Eq. 3, baseline and draws, init,
        update, learning rate)."""
        eq3 = "" if self.eq3 == EQ3_READINGS[0] else f"-{self.eq3}"
        estimator = "" if (self.baseline, self.samples) == (BASELINES[0], 1) else f"-{self.baseline}{self.samples}"
        init = "" if self.init == INITS[0] else f"-init-{self.init}"
        update = "" if self.update == UPDATES[0] else f"-update-{self.update}"
        lr = "" if float(self.lr) == DEFAULT_LR else f"-lr{float(self.lr):g}"
        return f"{self.penalty}-{self.state}-{self.objective}{eq3}{estimator}{init}{update}{lr}-t{self.ratio}"

    @property
    def train_args(self) -> str:
        """The ``prunenet train`` flags that train this policy (the learning rate is the rule's ``--lr``; init and
        update only where they are not the paper's, so the paper's commands read as before)."""
        values = asdict(self)
        names = ["ratio", *(d for d in self.dimensions() if d != "lr")]
        return " ".join(f"--{n} {values[n]}" for n in names if n not in ("init", "update") or values[n] != "paper")
