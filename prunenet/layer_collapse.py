"""LaCo's layer collapse (Algorithm 1 of Yang, Cao, Zhao 2024): which runs of layers to merge, on a budget.

The RDSC merge itself and the partial forward passes are :mod:`prunenet.layer_merge`.

**Layer collapse** (the paper's Algorithm 1): with C layers combined per merge, merge range [H, top],
minimum interval I and threshold T, start at the highest l whose group l … l+C−1 fits under the top; form
the candidate K = RDSC(M*, l, C) of the current model M*; s = the mean over calibration samples of the
cosine similarity between K's and the *original* model's last-layer representations; if s > T accept
(M* ← K, l ← l − I, clamped so the next group fits under the top of the shrunken model) else l ← l − 1;
stop when l < H. Choices where the paper leaves room (each a documented default):

* C counts the layers *combined* ("number of layers combined in each merge"): one merge removes C − 1
  layers, as the authors' code (``merge_layers_return_model(model, lay, MERGE_LAYERS - 1)``) and their
  Llama2-7B ratio (27.1 % = 9 of 32 layers = 3 merges at C = 4) imply.
* The representation is the last layer's output after the final norm (``hidden_states[-1]`` of HF, the
  authors' code); one sample's representation is its whole ``[seq, d]`` matrix flattened, its similarity
  the cosine of the two flattened vectors, and s their mean over samples (the authors' code, sentence by
  sentence). The reference is the original dense model, not the current M* (the authors' code compares
  every candidate with the unpruned model).
* The top of the range is an offset from the last layer (``keep_last``, default 1: the authors' code starts
  at ``HIGHEST_LAY − MERGE_LAYERS``, so its first group stops below the last layer), so the same setting
  fits any depth; after an accepted merge l is clamped so no group ever reaches into the kept top layers
  (the notebook only clamps l into the shrunken model).
* Budget (this project): the search stops as soon as ``n_remove`` layers are gone, combining fewer than C
  layers at the last merge. A pass that ends short lowers T by ``step`` and restarts from the dense model
  (the paper sets T per target ratio); a pass below T = −1 accepts everything, so the loop ends, and a
  range too small even for that is refused before any forward pass.

Cost: layers below l of every candidate are dense layers (merges only happen above, l moves down), so the
hidden states entering each layer are computed once on the dense model and a candidate runs only from
layer l up (:func:`final_states`); a candidate depends only on the merges accepted before it, so repeated
candidates across relaxed passes are looked up, not recomputed; and a pass stops as soon as accepting
everything left could no longer reach the budget (it is short whatever the rest would say).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .arch import get_adapter
from .errors import PruneNetError
from .layer_merge import (
    dense_states,
    final_states,
    merge_layer,
    per_layer_config,
    rdsc_merge,
    representation_similarity,
)


@dataclass(frozen=True)
class Merge:
    """One RDSC merge: layers ``base … base+size−1`` of the model at that point became one."""

    base: int  # index in the model the merge was applied to
    size: int  # layers combined (C, or fewer at the last merge)
    layers: list[int]  # the original (dense) layer indices combined, base layer first
    similarity: float  # s of the candidate against the dense model


@dataclass
class Collapse:
    """What :func:`layer_collapse` decided: the accepted merges (in order) and how it got there."""

    merges: list[Merge]
    threshold: float  # T of the final pass (the one whose merges these are)
    passes: int
    candidates: int  # candidate forwards actually run (memoised repeats excluded)
    trace: list[dict] = field(default_factory=list)  # every candidate of the final pass
    groups: list[list[int]] = field(default_factory=list)  # original layers behind each merged layer of the result

    @property
    def removed(self) -> int:
        return sum(m.size - 1 for m in self.merges)


@dataclass(frozen=True)
class _Stack:
    """A decoder stack the search holds without building a model: its layers (dense ones shared, merged ones
    new) and, per layer, the original indices merged into it (base first)."""

    layers: list[nn.Module]
    origin: list[list[int]]

    def merged(self, model: nn.Module, pos: int, size: int) -> _Stack:
        """This stack with layers ``pos … pos+size−1`` RDSC-merged into one (this stack is left as it is)."""
        merged = merge_layer(model, self.layers[pos : pos + size])
        return _Stack(
            self.layers[:pos] + [merged] + self.layers[pos + size :],
            self.origin[:pos] + [sum(self.origin[pos : pos + size], [])] + self.origin[pos + size :],
        )


@dataclass(frozen=True)
class Walk:
    """Algorithm 1's settings: C layers combined per merge, lowest base H, top layers never merged, interval I."""

    merge: int = 4
    lowest: int = 2
    keep_last: int = 1
    interval: int = 2

    def check_settings(self) -> None:
        """Refuse settings no model depth can make valid (one line naming the option to change)."""
        if self.merge < 2:
            raise PruneNetError(f"laco.merge must be at least 2 (layers combined per merge), got {self.merge}")
        if self.interval < 1:
            raise PruneNetError(f"laco.interval must be at least 1, got {self.interval}")
        if self.lowest < 0 or self.keep_last < 0:
            raise PruneNetError(f"laco.lowest and laco.keep_last must be >= 0, got {self.lowest}, {self.keep_last}")

    def check(self, n_layers: int) -> None:
        """Refuse settings under which no merge can happen in an ``n_layers`` model."""
        self.check_settings()
        if self.start(n_layers) < self.lowest:
            raise PruneNetError(
                f"no merge of {self.merge} layers fits in layers {self.lowest}..{n_layers - 1 - self.keep_last} of "
                f"a {n_layers}-layer model: lower laco.lowest, laco.keep_last or laco.merge"
            )

    def start(self, n_layers: int) -> int:
        """The highest base whose group of C layers stays below the ``keep_last`` top layers."""
        return n_layers - self.keep_last - self.merge

    def after_merge(self, pos: int, length: int) -> int:
        """Next base after accepting at ``pos`` (``length``: layers left): I lower, and its group must fit."""
        return min(pos - self.interval, self.start(length))


def _reach(pos: int, length: int, removed: int, n_remove: int, walk: Walk) -> int:
    """Layers removed in all if every candidate from here on passes. No walk removes more: an accepted merge
    moves l down by at least as much as it would from any lower position, so accepting everything keeps l
    highest after each merge."""
    while pos >= walk.lowest and removed < n_remove:
        size = min(walk.merge, n_remove - removed + 1)
        length -= size - 1
        removed += size - 1
        pos = walk.after_merge(pos, length)
    return removed


def _search(n_layers: int, n_remove: int, walk: Walk, accept) -> list[tuple[int, int, float, bool]]:
    """Algorithm 1's walk over positions. ``accept(history, l, size) -> (similarity, accepted)``; returns every
    candidate as (l, size, similarity, accepted). Stops at l < H, once ``n_remove`` layers are gone, or as soon
    as even accepting every remaining candidate could not reach ``n_remove`` (the pass is short whatever the
    rest says, so its remaining forwards are skipped: the result of the relaxation loop is unchanged)."""
    trace: list[tuple[int, int, float, bool]] = []
    history: list[tuple[int, int]] = []
    length, removed = n_layers, 0
    pos = walk.start(length)
    while pos >= walk.lowest and removed < n_remove:
        if _reach(pos, length, removed, n_remove, walk) < n_remove:
            break
        size = min(walk.merge, n_remove - removed + 1)
        sim, ok = accept(tuple(history), pos, size)
        trace.append((pos, size, sim, ok))
        if ok:
            history.append((pos, size))
            length -= size - 1
            removed += size - 1
            pos = walk.after_merge(pos, length)
        else:
            pos -= 1
    return trace


def max_removable(n_layers: int, n_remove: int, walk: Walk) -> int:
    """Layers the walk removes (at most ``n_remove``) when every candidate passes: the most any T reaches."""
    return _reach(walk.start(n_layers), n_layers, 0, n_remove, walk)


def check_collapse(n_layers: int, n_remove: int, walk: Walk, step: float) -> None:
    """Refuse, before any data is read or forward run, a request no threshold can satisfy."""
    if n_remove <= 0:
        return
    walk.check(n_layers)
    if step <= 0:
        raise PruneNetError(f"laco.threshold_step must be positive, got {step}")
    reach = max_removable(n_layers, n_remove, walk)
    if reach < n_remove:
        raise PruneNetError(
            f"LaCo can merge away at most {reach} of the {n_remove} layers this ratio needs within layers "
            f"{walk.lowest}..{n_layers - 1 - walk.keep_last}: lower laco.lowest, laco.interval or laco.keep_last"
        )


@torch.no_grad()
def layer_collapse(
    model: nn.Module,
    blocks: torch.Tensor,
    n_remove: int,
    walk: Walk = Walk(),
    *,
    threshold: float = 0.65,
    step: float = 0.05,
    batch_size: int = 8,
) -> Collapse:
    """Run Algorithm 1 on ``model`` (left unchanged) until exactly ``n_remove`` layers would be merged away.

    ``blocks`` are the calibration windows (``[n, seq]`` ids). Passes at T, T − step, … each restart from the
    dense model; the first that removes ``n_remove`` layers is returned. Apply it with :func:`apply_collapse`.
    """
    adapter = get_adapter(model)
    dense = list(adapter.layers())
    L = len(dense)
    if n_remove <= 0:
        return Collapse([], float(threshold), 0, 0)
    check_collapse(L, n_remove, walk, step)
    per_layer = per_layer_config(model)
    entries, reference = dense_states(model, blocks, range(max(walk.lowest, 1), walk.start(L) + 1), batch_size)
    memo: dict[tuple, float] = {}
    # the model after an accepted merge history: (decoder layers, original indices behind each layer)
    states: dict[tuple, _Stack] = {(): _Stack(dense, [[i] for i in range(L)])}

    def state(history: tuple) -> _Stack:
        """The stack after ``history``'s merges, built from the one a merge earlier (kept for accepted merges)."""
        if history not in states:
            states[history] = state(history[:-1]).merged(model, *history[-1])
        return states[history]

    def similarity(history: tuple, pos: int, size: int) -> float:
        """s of RDSC(M*, pos, size), M* the dense model after the merges in ``history`` (memoised)."""
        key = (history, pos, size)
        if key not in memo:
            cand = state(history).merged(model, pos, size)
            cfg = {k: [v[o[0]] for o in cand.origin] for k, v in per_layer.items()}
            out = final_states(model, cand.layers, blocks, cfg, pos, entries.get(pos), batch_size)
            memo[key] = representation_similarity(reference, out)
        return memo[key]

    passes = 0
    while True:
        t = round(threshold - passes * step, 10)
        passes += 1
        everything = t < -1.0

        def accept(history, pos, size, t=t, everything=everything):
            sim = similarity(history, pos, size)
            return sim, everything or sim > t

        trace = _search(L, n_remove, walk, accept)
        if sum(size - 1 for _, size, _, ok in trace if ok) >= n_remove:
            break
        if everything:  # cannot happen after the max_removable check; kept so the loop provably ends
            raise PruneNetError(f"LaCo could not merge away {n_remove} layers: lower laco.lowest")
    return _collapse(trace, state, t, passes, len(memo))


def _collapse(trace: list, state: Callable[[tuple], _Stack], t: float, passes: int, evaluated: int) -> Collapse:
    """The accepted merges of a pass's ``trace`` (in original layer indices), every candidate's row and the groups
    of original layers that end up as one."""
    merges, rows, history = [], [], ()
    for pos, size, sim, ok in trace:
        origin = state(history).origin
        layers_orig = sum(origin[pos : pos + size], [])
        rows.append({"base": pos, "layers": layers_orig, "similarity": round(sim, 6), "accepted": ok})
        if ok:
            merges.append(Merge(pos, size, layers_orig, sim))
            history = (*history, (pos, size))
    groups = [g for g in state(history).origin if len(g) > 1]
    return Collapse(merges, t, passes, evaluated, rows, groups)


def apply_collapse(model: nn.Module, collapse: Collapse) -> nn.Module:
    """Apply the accepted merges to ``model`` in place, in order (what the search evaluated, bit for bit)."""
    for m in collapse.merges:
        rdsc_merge(model, m.base, m.size - 1)
    return model
