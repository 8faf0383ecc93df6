"""Calibration statistics of every projection's input, read by forward hooks, one decoder block at a time.

Both methods need one statistic of the input ``X`` (``in × tokens``) of each linear:

* SVD-LLM (Wang et al. 2024, truncation-aware data whitening) the Gram matrix ``X Xᵀ``, whose Cholesky
  factor ``S`` whitens it;
* ASVD (Yuan et al. 2023, activation-aware scaling) the mean absolute activation of each input channel,
  ``S_ii = (1/n Σ_j |x_ij|)^α``.

Nothing but running sums is kept: per-batch products are formed in float32 (bfloat16/half activations are
upcast first) and summed in float64, so 8k calibration tokens cost one extra ``in × in`` accumulator per input
group. q/k/v read one tensor and so do gate/up (:func:`prunenet.lowrank.layers.input_groups`): their
statistics are computed once and shared.

Blocks are run one at a time (:func:`capture` records the inputs of block 0 and the keyword arguments every
block receives; :func:`run_block` runs one), so SVD-LLM's closed-form update can feed block ``i`` with the
outputs of the already-compressed blocks before it, and no LM head is ever computed for statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from accelerate.utils import send_to_device
from torch import nn

from ..arch import get_adapter
from .layers import input_groups


@dataclass
class InputStats:
    """Running sums over the tokens a linear reads: Gram ``Σ x xᵀ`` and ``Σ |x|`` (float64)."""

    gram: torch.Tensor | None = None
    abs_sum: torch.Tensor | None = None
    tokens: int = 0
    want_gram: bool = True
    want_abs: bool = True

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        if self.want_gram:
            g = (x.T @ x).double()
            self.gram = g if self.gram is None else self.gram.add_(g)
        if self.want_abs:
            a = x.abs().sum(0).double()
            self.abs_sum = a if self.abs_sum is None else self.abs_sum.add_(a)
        self.tokens += x.shape[0]

    def abs_mean(self) -> torch.Tensor:
        """ASVD's per-channel mean ``|x|`` over every calibration token."""
        return self.abs_sum / self.tokens


@dataclass
class Calibration:
    """What running blocks one by one needs: each batch's input to block 0 and each block's keyword arguments."""

    hidden: list[torch.Tensor]
    kwargs: list[list[dict]] = field(default_factory=list)  # [batch][block] -> kwargs of that call


def _hidden(out) -> torch.Tensor:
    """A block's hidden-state output (some families return a tuple, some the tensor)."""
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def capture(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> Calibration:
    """Block 0's inputs and every block's call arguments for the calibration ids, without running any block.

    Each block's ``forward`` is swapped for a recorder that returns its input unchanged, so the model's own
    forward builds exactly the masks, positions and rotary tables each block gets (sliding-window blocks
    get theirs), at the cost of the embeddings alone.
    """
    adapter = get_adapter(model)
    layers = list(adapter.layers())
    device = next(model.parameters()).device
    cal = Calibration(hidden=[])

    def recorder(i: int, sink: list):
        def forward(hidden_states, *args, **kwargs):
            if i == 0:
                cal.hidden.append(hidden_states)
            kw = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "use_cache", "past_key_value")}
            if args:  # positional extras are never used by the supported families; keep them just in case
                kw["__args__"] = args
            sink.append(kw)
            return hidden_states

        return forward

    try:
        for b in range(0, ids.shape[0], batch_size):
            sink: list[dict] = []
            for i, layer in enumerate(layers):
                layer.forward = recorder(i, sink)
            adapter.base()(input_ids=ids[b : b + batch_size].to(device), use_cache=False)
            cal.kwargs.append(sink)
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
    return cal


@torch.no_grad()
def run_block(layer: nn.Module, i: int, hidden: Sequence[torch.Tensor], cal: Calibration) -> list[torch.Tensor]:
    """Block ``i`` applied to each batch of ``hidden`` with that batch's recorded arguments.

    Each batch is computed where the block's weights are and its output kept where its input waited, so a
    model that waits on the host can send one block at a time to the GPU while the calibration activations
    stay on the host (:func:`prunenet.lowrank.svd_llm.compress_svd_llm`); where both are one device nothing moves.
    """
    device = next(layer.parameters()).device
    outs = []
    for h, kwargs in zip(hidden, cal.kwargs):
        kw = send_to_device(dict(kwargs[i]), device)  # rotary tables and masks, nested in tuples
        args = kw.pop("__args__", ())
        outs.append(_hidden(layer(h.to(device), *args, **kw)).to(h.device))
    return outs


@contextlib.contextmanager
def recording(
    model: nn.Module, layer: nn.Module, gram: bool = True, abs_mean: bool = False
) -> Iterator[dict[nn.Module, InputStats]]:
    """While open, accumulate the input statistics of every projection of ``layer`` (one per input group).

    Yields ``{linear: InputStats}``; the members of a group map to the same object.
    """
    stats: dict[nn.Module, InputStats] = {}
    handles = []
    for group in input_groups(model, layer):
        s = InputStats(want_gram=gram, want_abs=abs_mean)
        for lin in group:
            stats[lin] = s

        def hook(_mod, args, _out, s=s):
            s.add(args[0])

        handles.append(group[0].register_forward_hook(hook))
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def block_inputs(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> list[torch.Tensor]:
    """The hidden states entering every decoder block on ``ids`` (dense model), each ``[n, seq, hidden]``, kept on
    the host: at LLaMA-2-7B with ASVD's 32 × 2048 sensitivity tokens they take 32 × 0.5 GB in bfloat16, more
    than a 24 GB GPU has beside the model (:func:`prunenet.lowrank.search.tail_losses` moves one window at a
    time to the model)."""
    adapter = get_adapter(model)
    layers = list(adapter.layers())
    cal = capture(model, ids, batch_size)
    hidden, inputs = cal.hidden, []
    for i, layer in enumerate(layers):
        inputs.append(torch.cat(hidden).cpu())
        hidden = run_block(layer, i, hidden, cal)
    return inputs
