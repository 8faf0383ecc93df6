"""An lm-eval model that encodes each shared context once: ``prunenet-cached-hf``.

Why: multiple-choice tasks send one loglikelihood request per answer, all with the same context, and stock
:class:`~lm_eval.models.huggingface.HFLM` runs ``context + answer`` through the model for each, so HellaSwag and ARC
spend most of their compute re-encoding contexts. :class:`CachedHFLM` is HFLM with ``_loglikelihood_tokens`` replaced:

1. Requests are deduplicated and clustered: the answers of one context share it as their prefix, and neighbouring
   contexts sharing a long prefix (WinoGrande's two fillings of a sentence) merge when that computes fewer tokens.
2. Prefixes run in right-padded batches, keeping their key/value cache and, at each prefix's last position only,
   the logits that score the first answer token (a one-token answer needs nothing more).
3. The rest of each request, ``(context + answer)[P:-1]``, runs in right-padded batches on a fresh cache holding
   its prefix, with a mask that hides other rows' prefix padding and position ids continuing from its own prefix.

Batches are planned in token slots (:func:`plan_batches`), each forward holding at most what stock's widest batch of
the same requests holds (``batch_size`` x the longest request). Answers are stock's (sum of the answer's log-probs,
is-greedy), in the original order, with the same log-softmax dtype, and go to ``cache_hook``; they differ from
stock's only by float rounding (other kernel shapes: ~1e-5, a few float32 ulps of long answers' sums).

Fallbacks to stock ``HFLM._loglikelihood_tokens``: requests longer than ``max_length + 1`` tokens (stock truncates
them from the left), ``batch_size="auto"``, seq2seq models, models whose cache is not a plain full-attention
:class:`~transformers.DynamicCache` (sliding-window, linear-attention/state-space, KV-sharing layers) and models
whose ``forward`` lacks ``past_key_values``/``position_ids``/``attention_mask`` (e.g. wrapped ones). LLaMA-family
(SmolLM2), OPT and Phi take the cached path.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lm_eval.api.registry import model_registry, register_model
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

NAME = "prunenet-cached-hf"

Request = tuple[tuple[str, str], list[int], list[int]]
Tokens = tuple[int, ...]
Answer = tuple[float, bool]
KV = list[tuple[torch.Tensor, torch.Tensor]]
RowKey = tuple[int, int, int, Tokens]  # (prefix chunk, cluster within it, prefix length, tokens fed after the prefix)
Entry = tuple[int, Tokens, list[int]]  # (context length, context + continuation tokens, request indices)
First = dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]  # (chunk, cluster) -> (log-probs, argmax) at P-1


@dataclass
class _Cluster:
    """Requests fed after one shared ``prefix`` (not empty, no longer than any of their contexts); ``rows`` maps
    (context + continuation tokens, continuation length) to the indices of the identical requests."""

    prefix: Tokens
    rows: dict[tuple[Tokens, int], list[int]]


def _lcp(a: Tokens, b: Tokens) -> int:
    """Length of the common prefix of two token sequences."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def cluster_requests(requests: list[Request], indices: list[int]) -> list[_Cluster]:
    """Group ``requests[indices]`` by context, then merge neighbours (in sorted order) that share a prefix.

    A cluster of ``n`` rows with a shared prefix of ``P`` tokens computes ``sum(len_i - 1) - (n - 1) * P`` tokens,
    so two clusters are merged exactly when their common prefix saves more than the prefixes they give up.
    """
    by_ctx: dict[Tokens, dict[tuple[Tokens, int], list[int]]] = {}
    for i in indices:
        _, ctx, cont = requests[i]
        assert ctx and cont, "empty context or continuation"  # as stock asserts
        by_ctx.setdefault(tuple(ctx), {}).setdefault((tuple(ctx) + tuple(cont), len(cont)), []).append(i)
    out: list[_Cluster] = []
    for prefix in sorted(by_ctx):
        rows = by_ctx[prefix]
        if out:
            last = out[-1]
            common, na, nb = _lcp(last.prefix, prefix), len(last.rows), len(rows)
            if (na + nb - 1) * common > (na - 1) * len(last.prefix) + (nb - 1) * len(prefix):
                last.prefix = last.prefix[:common]
                for key, idx in rows.items():
                    last.rows.setdefault(key, []).extend(idx)
                continue
        out.append(_Cluster(prefix, dict(rows)))
    return out


def plan_batches(lengths: list[int], budget: int, forward_cost: int) -> list[tuple[int, int]]:
    """Cut descending ``lengths`` into consecutive batches of at most ``budget`` padded token slots.

    Minimises padded slots + ``forward_cost`` per batch (dynamic programming): rows and prefixes are much shorter
    than stock's full sequences, so a fixed count per forward would make many small forwards (each has a fixed
    cost: on CPU, one pass over the weights), while one big batch would pad short rows to the longest.
    """
    n = len(lengths)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for begin in range(end - 1, -1, -1):
            slots = (end - begin) * max(lengths[begin], 1)
            if slots > budget and begin < end - 1:
                break
            if best[begin] + slots + forward_cost < best[end]:
                best[end], cut[end] = best[begin] + slots + forward_cost, begin
    out, end = [], n
    while end:
        out.append((cut[end], end))
        end = cut[end]
    return out[::-1]


class CachedHFLM(HFLM):
    """HFLM whose loglikelihoods reuse each shared context's key/value cache (see the module docstring)."""

    #: prefix caches kept at once: the rows of all their clusters are sorted by length together, so that row
    #: batches need little padding (one chunk's rows alone vary a lot in length)
    kv_window_bytes: int = 256 * 2**20
    #: a forward's fixed cost in token slots, for :func:`plan_batches` (SmolLM2-135M, one CPU core: ~20)
    forward_cost_tokens: int = 24

    def _cache_path_ok(self) -> bool:
        """Whether this model can use the cached path; otherwise every request goes to stock HFLM."""
        needs = {"past_key_values", "position_ids", "attention_mask"}
        if self.backend != "causal" or not isinstance(self.batch_size, int) or not needs <= self._forward_params:
            return False
        try:
            layers = DynamicCache(config=self.model.config).layers
        except Exception:  # configs without a decoder/text config
            return False
        return all(type(layer) is DynamicLayer for layer in layers)

    @property
    def _forward_params(self) -> set[str]:
        return set(inspect.signature(self.model.forward).parameters)

    @property
    def _mask_keep(self) -> bool:
        """Whether the model's forward takes a boolean ``logits_to_keep`` mask (transformers' slice_logits_to_keep)."""
        return "slice_logits_to_keep" in vars(inspect.getmodule(type(self.model))) and "logits_to_keep" in (
            self._forward_params
        )

    def _forward(self, **kwargs) -> torch.Tensor:
        """The model's logits, under the same no-grad/autocast as stock ``_model_call``."""
        if "logits_to_keep" not in self._forward_params:
            kwargs.pop("logits_to_keep", None)  # all positions come back; callers index the trailing ones
        autocast = dict(dtype=self.mixed_precision_dtype, enabled=self.mixed_precision_dtype is not None)
        with torch.no_grad(), torch.autocast(device_type=self.device.type, **autocast):
            return self.model(**kwargs).logits

    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, override_bs: int | None = None
    ) -> list[Answer]:
        if not self._cache_path_ok():
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        res: list[Answer | None] = [None] * len(requests)
        long = [i for i, (_, c, x) in enumerate(requests) if len(c) + len(x) > self.max_length + 1]
        if long:  # stock truncates these from the left: let it
            for i, answer in zip(long, super()._loglikelihood_tokens([requests[i] for i in long], disable_tqdm=True)):
                res[i] = answer
        short = sorted(set(range(len(requests))) - set(long))
        if not short:
            return res  # type: ignore[return-value]
        pbar = tqdm(total=len(short), disable=disable_tqdm or self.rank != 0, desc="Running loglikelihood")

        def put(idx: list[int], answer: Answer) -> None:
            for i in idx:
                res[i] = answer
                self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            pbar.update(len(idx))

        clusters = sorted(cluster_requests(requests, short), key=lambda c: -len(c.prefix))  # little prefix padding
        budget = self.batch_size * max(len(requests[i][1]) + len(requests[i][2]) - 1 for i in short)
        cost = self.forward_cost_tokens
        chunks = plan_batches([len(c.prefix) for c in clusters], budget, cost)[::-1]  # popped from the end
        while chunks:
            kvs: list[KV] = []
            rows: dict[RowKey, list[Entry]] = {}
            first: First = {}
            while chunks and sum(k.nbytes + v.nbytes for kv in kvs for k, v in kv) < self.kv_window_bytes:
                chunk = clusters[slice(*chunks.pop())]
                need = [any(len(t) - n == len(c.prefix) for t, n in c.rows) for c in chunk]
                kv, logp = self._encode_prefixes([c.prefix for c in chunk], need)
                kvs.append(kv)
                for j, c in enumerate(chunk):
                    p, key = len(c.prefix), (len(kvs) - 1, j)
                    if j in logp:
                        first[key] = logp[j]
                    for (toks, n), idx in c.rows.items():
                        if len(toks) - 1 == p:  # one-token answer to the whole prefix: scored by the prefix alone
                            lp, top = first[key]
                            put(idx, (float(lp[toks[p]]), bool(top == toks[p])))
                        else:  # the same feed with another last token is the same row
                            rows.setdefault((*key, p, toks[p:-1]), []).append((len(toks) - n, toks, idx))
            order = sorted(rows, key=lambda key: -len(key[3]))  # the window's rows together: little row padding
            for b, end in plan_batches([len(key[3]) for key in order], budget, cost):
                batch = [(key, rows[key]) for key in order[b:end]]
                for (_, entries), answers in zip(batch, self._score_rows(batch, kvs, first)):
                    for (_, _, idx), answer in zip(entries, answers):
                        put(idx, answer)
        pbar.close()
        return res  # type: ignore[return-value]

    def _pad(self, seqs: list[Tokens], width: int) -> torch.Tensor:
        """Right-padded ``[len(seqs), width]`` token ids (the padding value is never attended to)."""
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        return ids.to(self.device)

    def _encode_prefixes(self, prefixes: list[Tokens], need: list[bool]) -> tuple[KV, dict]:
        """Per-layer (keys, values) ``[n, heads, P_max, dim]`` of the right-padded prefixes, and
        ``{j: (log-probs, argmax)}`` at the last position of each prefix ``j`` that ``need`` s it.

        No mask is needed: attention is causal, so a prefix never sees its own right padding; the padding's keys are
        masked out when rows attend to this cache. The LM head runs at the needed positions only.
        """
        width = max(len(p) for p in prefixes)
        cache = DynamicCache(config=self.model.config)
        kwargs = dict(input_ids=self._pad(prefixes, width), past_key_values=cache, use_cache=True)
        js = [j for j, needed in enumerate(need) if needed]
        if js:
            keep = torch.zeros((len(prefixes), width), dtype=torch.bool)
            keep[js, [len(prefixes[j]) - 1 for j in js]] = True
            logp = F.log_softmax(self._logits_at(keep, **kwargs), dim=-1, dtype=self.softmax_dtype)
        else:
            self._forward(logits_to_keep=1, **kwargs)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        return kv, {j: (logp[k], logp[k].argmax()) for k, j in enumerate(js)}

    def _logits_at(self, keep: torch.Tensor, **kwargs) -> torch.Tensor:
        """Logits at the True positions of ``keep`` (``[rows, width]``), row-major: ``[n_true, vocab]``.

        Models built on transformers' ``slice_logits_to_keep`` take the mask itself, so the LM head runs on exactly
        those positions; others compute the trailing positions from the first kept one and are indexed here.
        """
        if self._mask_keep:
            return self._forward(logits_to_keep=keep.to(self.device), **kwargs)
        width, first = keep.shape[1], int(keep.any(0).nonzero()[0])
        logits = self._forward(logits_to_keep=width - first, **kwargs)[:, first - width :]
        return logits[keep[:, first:].to(logits.device)]

    def _batch_cache(self, keys: list[RowKey], kvs: list[KV]) -> DynamicCache:
        """A fresh cache with each row's prefix, right-padded to the longest (rows may come from several chunks).

        Copying into new tensors leaves the stored prefixes untouched for the next batch.
        """
        width, src = max(p for _, _, p, _ in keys), {}
        for r, (chunk, j, _, _) in enumerate(keys):
            src.setdefault(chunk, ([], []))[0].append(r)
            src[chunk][1].append(j)

        def gather(layer: int, t: int) -> torch.Tensor:  # t: 0 keys, 1 values
            ref = kvs[next(iter(src))][layer][t]
            out = ref.new_zeros((len(keys), ref.shape[1], width, ref.shape[3]))
            for chunk, (rs, js) in src.items():
                w = min(width, kvs[chunk][layer][t].shape[2])
                out[rs, :, :w] = kvs[chunk][layer][t][js, :, :w]
            return out

        return DynamicCache([(gather(i, 0), gather(i, 1)) for i in range(len(kvs[next(iter(src))]))])

    def _score_rows(self, batch: list[tuple[RowKey, list[Entry]]], kvs: list[KV], first: First) -> list:
        """(log-prob sum, is-greedy) of each row entry's continuation, given its cluster's cached prefix.

        Row ``r`` feeds ``tokens[P:-1]`` at positions ``P, P + 1, ..``; the logits at absolute position ``q`` score
        token ``q + 1``. A continuation whose context is the whole prefix takes its first token from ``first``.
        """
        keys = [key for key, _ in batch]
        width = max(len(feed) for *_, feed in keys)
        plens = torch.tensor([p for _, _, p, _ in keys], device=self.device)
        kwargs = dict(
            input_ids=self._pad([k[3] for k in keys], width),
            position_ids=plens[:, None] + torch.arange(width, device=self.device)[None, :],
        )
        pmax = int(plens.max())  # each row attends to its own prefix (the rest is others' padding) and to itself
        cols = torch.arange(pmax + width, device=self.device)[None, :]
        mask = (cols < plens[:, None]) | (cols >= pmax)
        kwargs.update(past_key_values=self._batch_cache(keys, kvs), use_cache=True)
        kwargs["attention_mask"] = None if mask.all() else mask.long()  # none: the model may take a faster path
        spans = [[(max(c - 1 - p, 0), len(toks) - 1 - p) for c, toks, _ in ents] for (_, _, p, _), ents in batch]
        keep = torch.zeros((len(keys), width), dtype=torch.bool)
        for r, sp in enumerate(spans):
            for s, e in sp:
                keep[r, s:e] = True
        flat_of = (keep.flatten().cumsum(0) - 1).view_as(keep)  # (row, position) -> row of the kept logits
        logp = F.log_softmax(self._logits_at(keep, **kwargs), dim=-1, dtype=self.softmax_dtype)
        rows_idx, targets, sizes = [], [], []
        for r, ((_, _, p, _), ents) in enumerate(batch):
            for (_, toks, _), (s, e) in zip(ents, spans[r]):
                rows_idx += flat_of[r, s:e].tolist()
                targets += toks[p + s + 1 : p + e + 1]
                sizes.append(e - s)
        rows_t, tgt = torch.tensor(rows_idx, device=logp.device), torch.tensor(targets, device=logp.device)
        tok_lp, hits = logp[rows_t, tgt], logp.argmax(dim=-1)[rows_t] == tgt
        flat = iter(zip(torch.split(tok_lp, sizes), torch.split(hits, sizes)))
        out: list[list[Answer]] = []
        for (chunk, j, p, _), ents in batch:
            out.append([])
            for (c, toks, _), (lp, hit) in zip(ents, flat):
                s, h = float(lp.sum()), bool(hit.all())
                if c == p:  # first token from the prefix's last position
                    logp0, top0 = first[(chunk, j)]
                    s, h = s + float(logp0[toks[p]]), h and bool(top0 == toks[p])
                out[-1].append((s, h))
        return out


def _register() -> None:
    """Register :class:`CachedHFLM` as ``NAME`` in lm-eval's model registry; safe to run again.

    A second run of this module (``importlib.reload``, or a second module object for the same file) defines a new
    class of the same name: the registry, which refuses to rebind a name to another object, is pointed at it.
    """
    current = model_registry.get(NAME, None)
    if current is None:
        register_model(NAME)(CachedHFLM)
    elif current is not CachedHFLM and f"{current.__module__}.{current.__qualname__}" == f"{__name__}.CachedHFLM":
        model_registry._objs[NAME] = CachedHFLM  # no public re-registration: same class, newer definition


_register()
