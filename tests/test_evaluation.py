"""Evaluation: offline lm-eval tasks reproduce the built-in prompts; run_lm_eval; perplexity.

Ground truth for prompts: the *built-in* task YAML fed with the same items in the hub's
field layout, where the hub-layout docs are built here by hand from the local raw files.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from prunenet import evaluation as ev
from prunenet.data import LOCAL_FILES, load_texts
from prunenet.errors import PruneNetError
from prunenet.models import save_checkpoint

MMLU_SUBJECTS = ("abstract_algebra", "high_school_us_history", "professional_law")


# ------------------------------------------------------------------ helpers


def raw_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open() if line.strip()]


def hub_layout(task: str, rec: dict) -> dict:
    """The hub (HF datasets) record for a local one, written independently of the package's converters."""
    if task in ("piqa", "winogrande"):
        return dict(rec)
    if task.startswith("arc_"):
        q = rec["question"]
        return {
            "id": rec["id"],
            "question": q["stem"],
            "answerKey": rec["answerKey"],
            "choices": {"text": [c["text"] for c in q["choices"]], "label": [c["label"] for c in q["choices"]]},
        }
    if task == "hellaswag":  # ctx_a/ctx_b split unknown: all of ctx in ctx_a (see test_hellaswag_known_difference)
        return {
            "activity_label": rec["activity_label"],
            "ctx_a": rec["ctx"],
            "ctx_b": "",
            "ctx": rec["ctx"],
            "endings": rec["endings"],
            "label": str(rec["label"]),
        }
    raise ValueError(task)


def mmlu_hub(row: list[str], subject: str) -> dict:
    return {
        "question": row[0],
        "subject": subject,
        "choices": row[1:5],
        "answer": {"A": 0, "B": 1, "C": 2, "D": 3}[row[5]],
    }


def builtin_task(tmp: Path, rel_yaml: str, name: str, files: dict[str, list[dict]], eval_split: str):
    """The built-in task definition with its dataset swapped for the given hub-layout docs."""
    from lm_eval.tasks import TaskManager

    folder = tmp / name
    folder.mkdir(parents=True)
    data_files = {}
    for split, docs in files.items():
        p = folder / f"{split}.jsonl"
        p.write_text("".join(json.dumps(d) + "\n" for d in docs))
        data_files[split] = str(p)
    cfg = {
        "include": str(ev.lm_eval_tasks_dir() / rel_yaml),
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files, "cache_dir": str(tmp / "cache")},
        "training_split": None,
        "validation_split": None,
        "test_split": None,
    }
    cfg[f"{eval_split}_split"] = eval_split
    if "dev" in files:
        cfg["fewshot_split"] = "dev"
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return TaskManager(include_path=str(folder), include_defaults=False).load([name])["tasks"][name]


def requests(task, doc, num_fewshot: int = 0):
    """Everything the model would see for one item: context/continuation pairs, target, choices."""
    ctx = task.fewshot_context(doc, num_fewshot)
    reqs = task.construct_requests(doc, ctx, metadata=("t", 0, 0))
    reqs = reqs if isinstance(reqs, list) else [reqs]
    return {
        "text": task.doc_to_text(doc),
        "target": task.doc_to_target(doc),
        "choices": task.doc_to_choice(doc),
        "ctx": ctx,
        "args": [r.arguments for r in reqs],
    }


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one OpenMP thread per module


@pytest.fixture(scope="module")
def offline(data_dir, tmp_path_factory):
    """All six offline tasks, generated once."""
    _, top = ev.load_lm_tasks(list(ev.BENCHMARKS), str(data_dir), tmp_path_factory.mktemp("lmeval_work"))
    return top


def leaf_tasks(group) -> dict:
    return {t.config.task: t for t in group.get_all_tasks(recursive=True)}


# ------------------------------------------------------------------ prompts == built-in


def pick_items(task: str, raw: list[dict]) -> list[int]:
    idx = [0, 1, 2]
    if task.startswith("arc_"):  # numeric labels and 3/5-choice questions are the tricky ones
        idx.append(next(i for i, r in enumerate(raw) if r["question"]["choices"][0]["label"] == "1"))
        idx.append(next(i for i, r in enumerate(raw) if len(r["question"]["choices"]) != 4))
    return idx


@pytest.mark.parametrize("task", ["piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge"])
def test_offline_prompts_match_builtin(task, offline, data_dir, tmp_path):
    rel, split = ev.BUILTIN_YAML[task]
    raw = raw_jsonl(Path(data_dir) / LOCAL_FILES[task][split])
    idx = pick_items(task, raw)
    ref = builtin_task(tmp_path, rel, f"{task}_ref", {split: [hub_layout(task, raw[i]) for i in idx]}, split)
    local = offline[task]
    assert local.config.task == f"{task}_local"
    assert len(local.eval_docs) == len(raw)
    ref_docs = list(ref.eval_docs)
    for j, i in enumerate(idx):
        assert requests(local, local.eval_docs[i]) == requests(ref, ref_docs[j])


def test_the_mmlu_subject_list_is_lm_evals():
    assert ev.MMLU_SUBJECTS == tuple(ev.mmlu_subjects())


def test_offline_mmlu_matches_builtin(offline, data_dir, tmp_path):
    leaves = leaf_tasks(offline["mmlu"])
    assert len(leaves) == 57 and all(name.endswith("_local") for name in leaves)
    for subject in MMLU_SUBJECTS:
        rows = {
            s: list(csv.reader((Path(data_dir) / LOCAL_FILES["mmlu"][s] / f"{subject}_{s}.csv").open(newline="")))
            for s in ("test", "dev")
        }
        hub = {s: [mmlu_hub(r, subject) for r in rows[s]] for s in rows}
        ref = builtin_task(tmp_path, f"mmlu/default/mmlu_{subject}.yaml", f"mmlu_{subject}_ref", hub, "test")
        local = leaves[f"mmlu_{subject}_local"]
        assert len(local.eval_docs) == len(rows["test"])
        ref_docs = list(ref.eval_docs)
        for i in (0, 1, len(rows["test"]) - 1):
            for shots in (0, 5):
                assert requests(local, local.eval_docs[i], shots) == requests(ref, ref_docs[i], shots)
    text = requests(leaves["mmlu_abstract_algebra_local"], leaves["mmlu_abstract_algebra_local"].eval_docs[0], 5)["ctx"]
    assert text.startswith("The following are multiple choice questions (with answers) about abstract algebra.")
    assert text.count("\nAnswer:") == 6


def test_hellaswag_known_difference(tmp_path):
    """The one documented offline difference: ctx_b's first letter is not re-capitalised."""
    true_hub = {
        "activity_label": "Roof shingle removal",
        "ctx_a": "A man is sitting on a roof.",
        "ctx_b": "he",
        "ctx": "A man is sitting on a roof. he",
        "endings": ["a.", "b.", "c.", "d."],
        "label": "3",
    }
    local_rec = {
        "activity_label": true_hub["activity_label"],
        "ctx": true_hub["ctx"],
        "endings": true_hub["endings"],
        "label": 3,
    }
    ref = builtin_task(tmp_path, "hellaswag/hellaswag.yaml", "hs_ref", {"validation": [true_hub]}, "validation")
    conv = builtin_task(
        tmp_path, "hellaswag/hellaswag.yaml", "hs_conv", {"validation": [ev.hellaswag_to_hub(local_rec)]}, "validation"
    )
    a, b = ref.doc_to_text(list(ref.eval_docs)[0]), conv.doc_to_text(list(conv.eval_docs)[0])
    assert a == "Roof shingle removal: A man is sitting on a roof. He"
    assert b == "Roof shingle removal: A man is sitting on a roof. he"


def test_generated_yaml_uses_absolute_paths(data_dir, tmp_path):
    out = ev.write_local_tasks(["piqa", "arc_easy"], data_dir, tmp_path)
    for f in out.glob("*.yaml"):
        cfg = yaml.safe_load(f.read_text())
        assert Path(cfg["include"]).is_absolute()
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in cfg["dataset_kwargs"]["data_files"].values())


# ------------------------------------------------------------------ run_lm_eval


@pytest.fixture
def tiny_ckpt(tiny_model, tokenizer, tmp_path):
    return str(save_checkpoint(tiny_model("llama"), tokenizer, tmp_path / "tiny"))


def test_run_lm_eval_tiny_all_tasks_reproducible(tiny_ckpt, data_dir, tmp_path):
    kwargs = dict(data_dir=str(data_dir), limit=3, batch_size=8, seed=0, work_dir=str(tmp_path / "work"))
    subjects = ["mmlu_abstract_algebra", "mmlu_formal_logic"]  # two subjects alone (paper Table 23), then the group
    res = ev.run_lm_eval(tiny_ckpt, list(ev.BENCHMARKS), **kwargs)
    res["tasks"] |= ev.run_lm_eval(tiny_ckpt, subjects, **kwargs)["tasks"]
    tasks = [*ev.BENCHMARKS, *subjects]
    assert set(res["tasks"]) == set(tasks)
    assert res["data_source"] == f"local:{Path(data_dir).resolve()}"
    assert res["limit"] == 3 and res["lm_eval_seed"] == 0 and res["num_fewshot"] == 0 and res["lm_eval_version"]
    for task, r in res["tasks"].items():
        assert r["primary_metric"] == ev.PRIMARY_METRIC[task]
        assert 0.0 <= r["primary"] <= 1.0 and 0.0 <= r["acc"] <= 1.0
        assert math.isfinite(r["primary_stderr"]) and math.isfinite(r["acc_stderr"])
        assert r["n"] == (3 * 57 if task == "mmlu" else 3)
        if task != "winogrande" and not task.startswith("mmlu"):
            assert 0.0 <= r["acc_norm"] <= 1.0
    json.dumps(res)
    group = res["tasks"]["mmlu"]["items"]
    for subject in ("abstract_algebra", "formal_logic"):  # a subject alone scores its items as inside the group
        alone = res["tasks"][f"mmlu_{subject}"]["items"]
        inside = {i: a for i, a in zip(group["doc_id"], group["acc"]) if i.startswith(f"mmlu_{subject}:")}
        assert {f"mmlu_{subject}:{i}": a for i, a in zip(alone["doc_id"], alone["acc"])} == inside
        assert res["tasks"][f"mmlu_{subject}"]["primary"] == pytest.approx(sum(alone["acc"]) / 3)
    again = ev.run_lm_eval(tiny_ckpt, ["piqa", "hellaswag", "arc_challenge"], **kwargs)
    for task in again["tasks"]:
        assert again["tasks"][task] == res["tasks"][task]


def test_the_mmlu_group_and_its_subjects_are_not_run_together(tiny_ckpt, data_dir):
    with pytest.raises(PruneNetError, match="not both"):
        ev.run_lm_eval(tiny_ckpt, ["mmlu", "mmlu_anatomy"], str(data_dir), limit=1)


def test_task_names_are_checked_once_and_travel_as_the_checked_value():
    tasks = ev.check_tasks(["piqa", "arc_easy", "piqa"])
    assert isinstance(tasks, ev.Tasks) and list(tasks) == ["piqa", "arc_easy"]  # in order, each once
    assert ev.check_tasks(tasks) is tasks  # the loaders downstream do not check again
    assert str(tasks) == str(["piqa", "arc_easy"]) and json.dumps(tasks) == '["piqa", "arc_easy"]'
    for bad, words in ((["boolq"], "unknown task"), (["mmlu", "mmlu_anatomy"], "not both"), ([], "no tasks")):
        with pytest.raises(PruneNetError, match=words):
            ev.check_tasks(bad)


def test_unknown_task(tiny_ckpt, data_dir):
    with pytest.raises(PruneNetError, match="unknown task 'boolq'.*piqa, winogrande"):
        ev.run_lm_eval(tiny_ckpt, ["piqa", "boolq"], str(data_dir), limit=1)


def test_missing_data_file(tiny_ckpt, data_dir, tmp_path):
    local = tmp_path / "data"
    (local / "piqa").mkdir(parents=True)
    (local / "piqa" / "validation.jsonl").write_text((Path(data_dir) / "piqa" / "validation.jsonl").read_text())
    with pytest.raises(PruneNetError, match=r"missing data file .*winogrande/dev\.jsonl"):
        ev.run_lm_eval(tiny_ckpt, ["piqa", "winogrande"], str(local), limit=1)
    (local / "mmlu" / "test").mkdir(parents=True)
    with pytest.raises(PruneNetError, match=r"missing data file .*mmlu/test/abstract_algebra_test\.csv"):
        ev.run_lm_eval(tiny_ckpt, ["mmlu"], str(local), limit=1)


def test_hub_unreachable(tiny_ckpt, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty_cache"))
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty_cache", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(PruneNetError, match=r"set data_dir to a local copy of the benchmarks, e\.g\. \.\./shared/data"):
        ev.run_lm_eval(tiny_ckpt, ["piqa"], None, limit=1)


# ------------------------------------------------------------------ perplexity


def test_perplexity_smollm2_wikitext2(smollm2, data_dir):
    model, tok = smollm2
    res = ev.perplexity(model, tok, load_texts("wikitext2", "test", data_dir), seq_len=256, max_blocks=8, batch_size=4)
    assert res["n_blocks"] == 8 and res["seq_len"] == 256 and res["n_tokens"] == 8 * 255
    assert math.isfinite(res["ppl"]) and 1.0 < res["ppl"] < 40
    assert res["ppl"] == pytest.approx(math.exp(res["nll"]))


def test_perplexity_is_exp_mean_token_nll(tiny_model, tokenizer, data_dir):
    model = tiny_model("llama")
    texts = load_texts("wikitext2", "test", data_dir)[:200]
    res = ev.perplexity(model, tokenizer, texts, seq_len=32, max_blocks=5, batch_size=2)
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False, return_tensors="pt").input_ids[0]
    ids = ids[: 5 * 32].view(5, 32)
    nlls = []
    with torch.no_grad():
        for row in ids:  # one block at a time, token by token log-softmax
            logp = torch.log_softmax(model(input_ids=row[None]).logits[0].double(), dim=-1)
            nlls += [-logp[t, row[t + 1]].item() for t in range(31)]
    assert res["n_tokens"] == len(nlls) == 5 * 31
    assert res["nll"] == pytest.approx(sum(nlls) / len(nlls), rel=1e-5)
    assert res["ppl"] == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-5)
    # per block, in block order: the mean NLL of its 31 predicted tokens (what the paired perplexity test pairs)
    assert res["block_nll"] == pytest.approx([np.mean(nlls[31 * b : 31 * (b + 1)]) for b in range(5)], rel=1e-5)
    assert not model.training


def test_perplexity_on_path_and_bos(tiny_ckpt, data_dir):
    res = ev.perplexity_on(tiny_ckpt, "wikitext2", "test", data_dir, seq_len=32, max_blocks=2, add_bos=True)
    assert res["n_blocks"] == 2 and res["n_tokens"] == 2 * 31 and math.isfinite(res["ppl"])
    assert "wikitext2/test (local" in res["dataset"]


def test_first_documents_only_are_the_full_splits_first(offline, data_dir, tmp_path):
    """An integer limit evaluates a split's first documents zero-shot, so the cut tasks (written for a limit) must
    hold exactly those documents, as lm-eval processes them (HellaSwag's preprocessing included), MMLU's few-shot
    dev split whole."""
    _, cut = ev.load_lm_tasks(list(ev.BENCHMARKS), str(data_dir), tmp_path, first=3)
    for name in ev.BENCHMARKS:
        full_leaves, cut_leaves = (
            leaf_tasks(o) if hasattr(o, "get_all_tasks") else {o.config.task: o} for o in (offline[name], cut[name])
        )
        assert full_leaves.keys() == cut_leaves.keys(), name
        for leaf, task in cut_leaves.items():
            docs = list(task.eval_docs)
            assert len(docs) == 3 and docs == list(full_leaves[leaf].eval_docs)[:3], leaf
            if task.has_training_docs() or leaf.startswith("mmlu"):
                assert list(task.fewshot_docs()) == list(full_leaves[leaf].fewshot_docs()), leaf
