"""prunenet-cached-hf (CachedHFLM): the same log-likelihoods as stock lm-eval HFLM, each shared context encoded once.

Stock ``HFLM`` is the reference throughout: tiny random LLaMA/OPT/Phi models on hand-made token requests that
exercise every path (shared contexts, one-token contexts and answers, contexts sharing a prefix, duplicates, greedy
continuations, requests stock must truncate), then the real SmolLM2 on the five zero-shot tasks through
``run_lm_eval``, whose per-item results (``items``) are checked here too.
"""

from __future__ import annotations

import importlib
import itertools
import random

import pytest
import torch
from lm_eval.api.registry import get_model
from lm_eval.models.huggingface import HFLM

from prunenet import evaluation as ev
from prunenet.errors import PruneNetError
from prunenet.evaluation import cached_lm

FIVE = ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one OpenMP thread per module


def greedy(model, ctx: list[int], n: int) -> list[int]:
    """The model's own greedy continuation of ``ctx`` (so that is_greedy is True for some requests)."""
    out = list(ctx)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ctx) :]


def hand_requests(model, seed: int = 0) -> list:
    """Token-level requests ``((ctx_str, cont_str), ctx, cont)`` covering every path of the cached scorer."""
    rng = random.Random(seed)

    def toks(n: int) -> list[int]:
        return [rng.randrange(1, 2000) for _ in range(n)]

    reqs = []
    for n_ctx in (5, 9, 23, 40):  # shared contexts, answers of different lengths (1 = scored by the prefix alone)
        ctx = toks(n_ctx)
        reqs += [(ctx, toks(n)) for n in (1, 1, 3, 7, 12)]
        reqs.append((ctx, greedy(model, ctx, 1)))
        reqs.append((ctx, greedy(model, ctx, 4)))
    one = toks(1)  # one-token contexts: a one-token prefix whose logits score the first answer token
    reqs += [(one, toks(n)) for n in (1, 2, 6)] + [(toks(1), toks(4)), (one, greedy(model, one, 3))]
    base = toks(15)  # WinoGrande-like: two contexts sharing a prefix, the same continuation
    tail = toks(6)
    reqs += [(base + toks(2), tail), (base + toks(3), tail), (base, tail), (base + toks(1), toks(1))]
    reqs.append(reqs[0])  # duplicate
    reqs.append((toks(50), toks(20)))  # longer than max_length + 1: stock truncates, cached falls back to stock
    rng.shuffle(reqs)
    return [(("ctx", "cont"), ctx, cont) for ctx, cont in reqs]


def assert_same(stock: list, cached: list, tol: float = 1e-4) -> None:
    assert len(stock) == len(cached)
    for (a, ga), (b, gb) in zip(stock, cached):
        assert abs(a - b) <= tol, (a, b)
        assert ga == gb


@pytest.mark.parametrize("family", ["llama", "opt", "phi"])
def test_tiny_models_match_stock(family, tiny_model, tokenizer):
    model = tiny_model(family)
    reqs = hand_requests(model)
    kw = dict(pretrained=model, tokenizer=tokenizer, device="cpu", max_length=64)
    stock = HFLM(batch_size=3, **kw)._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert any(g for _, g in stock) and not all(g for _, g in stock)
    for bs in (1, 3, 16):
        lm = cached_lm.CachedHFLM(batch_size=bs, **kw)
        assert lm._cache_path_ok()  # LLaMA, OPT and Phi take the cached path
        first = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
        assert_same(stock, first)
        assert lm._loglikelihood_tokens(reqs, disable_tqdm=True) == first  # no state carried between calls
        assert lm._loglikelihood_tokens(reqs[::-1], disable_tqdm=True) == first[::-1]


def test_without_mask_logits_to_keep(tiny_model, tokenizer, monkeypatch):
    """Models whose forward takes only an int logits_to_keep: trailing logits are indexed instead."""
    model = tiny_model("llama", seed=1)
    reqs = hand_requests(model, seed=1)
    kw = dict(pretrained=model, tokenizer=tokenizer, device="cpu", max_length=64, batch_size=4)
    stock = HFLM(**kw)._loglikelihood_tokens(reqs, disable_tqdm=True)
    monkeypatch.setattr(cached_lm.CachedHFLM, "_mask_keep", property(lambda self: False))
    assert_same(stock, cached_lm.CachedHFLM(**kw)._loglikelihood_tokens(reqs, disable_tqdm=True))


def test_unsupported_models_fall_back_to_stock(tiny_model, tokenizer, monkeypatch):
    model = tiny_model("llama")
    reqs = hand_requests(model)
    lm = cached_lm.CachedHFLM(pretrained=model, tokenizer=tokenizer, device="cpu", max_length=64, batch_size=4)
    monkeypatch.setattr(cached_lm.CachedHFLM, "_cache_path_ok", lambda self: False)
    monkeypatch.setattr(cached_lm.CachedHFLM, "_encode_prefixes", None)  # the cached path would fail
    stock = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", max_length=64, batch_size=4)
    assert lm._loglikelihood_tokens(reqs, disable_tqdm=True) == stock._loglikelihood_tokens(reqs, disable_tqdm=True)


def test_clusters_and_batches():
    a, b = [1, 2, 20, 21, 22, 23], [1, 2, 30, 31, 32, 33]
    reqs = [
        ([1, 2, 3, 4, 5, 6, 7, 8, 10], [5]),  # WinoGrande-like: shares 8 tokens with the next context: merged
        ([1, 2, 3, 4, 5, 6, 7, 8, 11], [5]),
        *[(a, [k, 7]) for k in range(4)],  # HellaSwag-like: 4 answers each, only 2 tokens shared: kept apart
        *[(b, [k, 7]) for k in range(4)],
        ([9], [1, 2]),
        ([9], [1, 2]),  # duplicate: one row
    ]
    reqs = [(("", ""), ctx, cont) for ctx, cont in reqs]
    clusters = cached_lm.cluster_requests(reqs, list(range(len(reqs))))
    by_prefix = {c.prefix: sorted(i for idx in c.rows.values() for i in idx) for c in clusters}
    assert by_prefix == {
        (1, 2, 3, 4, 5, 6, 7, 8): [0, 1],
        tuple(a): [2, 3, 4, 5],
        tuple(b): [6, 7, 8, 9],
        (9,): [10, 11],
    }
    assert [len(c.rows) for c in clusters] == [2, 4, 4, 1]
    lengths = [40, 39, 38, 20, 19, 3, 2, 1, 1, 1]
    plan = cached_lm.plan_batches(lengths, budget=100, forward_cost=10)
    assert [i for b, e in plan for i in range(b, e)] == list(range(len(lengths)))
    assert all((e - b) * lengths[b] <= 100 for b, e in plan)

    def cost(plan):
        return sum((e - b) * lengths[b] + 10 for b, e in plan)

    cuts = [  # every way to cut the list into consecutive batches within the budget
        [(b, e) for b, e in zip((0, *m), (*m, len(lengths)))]
        for k in range(len(lengths))
        for m in itertools.combinations(range(1, len(lengths)), k)
    ]
    assert cost(plan) == min(cost(p) for p in cuts if all((e - b) * lengths[b] <= 100 for b, e in p)) == 213


def test_registered_in_lm_eval_and_reimport_safe():
    assert get_model(cached_lm.NAME) is cached_lm.CachedHFLM
    assert issubclass(cached_lm.CachedHFLM, HFLM)
    importlib.import_module("prunenet.evaluation.cached_lm")
    again = importlib.reload(cached_lm)  # defines the class anew: the registry follows
    assert get_model(cached_lm.NAME) is again.CachedHFLM


# ------------------------------------------------------------------ run_lm_eval: lm choice and per-item results


def check_items(res: dict) -> None:
    """``items`` holds one entry per evaluated doc, sorted, and its means are the reported accuracies."""
    for task, r in res["tasks"].items():
        items = r["items"]
        assert len(items["doc_id"]) == r["n"] > 0
        if task == "mmlu":  # a group: its leaves concatenated, ids "<leaf>:<doc_id>"
            keys = [(i.rsplit(":", 1)[0], int(i.rsplit(":", 1)[1])) for i in items["doc_id"]]
            assert all(k[0].startswith("mmlu_") and not k[0].endswith("_local") for k in keys)
            assert keys == sorted(keys) and len(set(keys)) == len(keys)
        else:
            assert items["doc_id"] == sorted(items["doc_id"]) == list(range(r["n"]))
        for metric in ("acc", "acc_norm"):
            if metric in r:
                assert set(items[metric]) <= {0.0, 1.0} and len(items[metric]) == r["n"]
                assert sum(items[metric]) / r["n"] == pytest.approx(r[metric], abs=1e-12)
            else:
                assert metric not in items


def test_run_lm_eval_items_and_lm_choice(tiny_model, tokenizer, data_dir, tmp_path):
    model = tiny_model("llama")
    kw = dict(data_dir=str(data_dir), limit=3, batch_size=8, work_dir=str(tmp_path))
    tasks = ["piqa", "winogrande", "mmlu"]
    res = {"stock": ev.run_lm_eval((model, tokenizer), tasks, lm="stock", **kw)}
    res["cached"] = ev.run_lm_eval((model, tokenizer), tasks, **kw)  # the default
    for r in res.values():
        check_items(r)
    assert res["stock"]["tasks"] == res["cached"]["tasks"]
    assert res["cached"]["tasks"]["mmlu"]["n"] == 3 * 57
    with pytest.raises(PruneNetError, match="unknown lm 'fast'"):
        ev.run_lm_eval((model, tokenizer), ["piqa"], lm="fast", **kw)


@pytest.mark.slow
def test_smollm2_five_tasks_cached_equals_stock(smollm2, data_dir, tmp_path, monkeypatch):
    """The real model, the five tasks: identical acc / acc_norm and per-item results, log-likelihoods within 1e-4."""
    calls: dict[str, list] = {}
    stock_ll = HFLM.loglikelihood

    def spy(self, requests, disable_tqdm=False):
        out = stock_ll(self, requests, disable_tqdm=disable_tqdm)
        calls.setdefault(type(self).__name__, []).append(([r.args for r in requests], out))
        return out

    monkeypatch.setattr(HFLM, "loglikelihood", spy)  # CachedHFLM inherits it
    kw = dict(data_dir=str(data_dir), limit=10, batch_size=8, work_dir=str(tmp_path))
    res = {lm: ev.run_lm_eval(smollm2, FIVE, lm=lm, **kw) for lm in ("stock", "cached")}
    for task in FIVE:
        s, c = res["stock"]["tasks"][task], res["cached"]["tasks"][task]
        assert s["n"] == c["n"] == 10
        assert s["acc"] == c["acc"] and s.get("acc_norm") == c.get("acc_norm")
        assert s["items"] == c["items"]
    check_items(res["cached"])
    assert len(calls["HFLM"]) == len(calls["CachedHFLM"]) == 1  # all requests of the five tasks in one call
    (args_s, out_s), (args_c, out_c) = calls["HFLM"][0], calls["CachedHFLM"][0]
    assert args_s == args_c and len(out_s) > 10 * (2 + 2 + 4 + 3 + 3)
    assert_same(out_s, out_c)
