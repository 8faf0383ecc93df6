"""One source of truth: the registries against the schema, the CLI and the workflow; the adapters against the models."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, GPT2Config, Qwen3Config

from prunenet import choices
from prunenet.arch import ARCHITECTURES, get_adapter, supported_model_types
from prunenet.cli import build_parser
from prunenet.errors import PruneNetError
from prunenet.methods import METHODS, PruneRequest
from prunenet.methods.pipeline import check
from prunenet.reporting import REPORTS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())


def _choices(command: str, flag: str) -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings or a.dest == flag)
    return list(action.choices)


def test_schema_enums_equal_the_registries():
    assert SCHEMA["$defs"]["method"]["enum"] == METHODS.names()
    assert SCHEMA["$defs"]["dataset"]["enum"] == list(choices.DATASETS)
    assert SCHEMA["properties"]["dtype"]["enum"] == list(choices.DTYPES)  # config dtype -> the commands' --dtype
    from prunenet.evaluation.tasks import BENCHMARKS, MMLU_SUBJECTS

    assert SCHEMA["$defs"]["mmlu_subject"]["enum"] == list(MMLU_SUBJECTS)
    assert SCHEMA["properties"]["evaluate"]["properties"]["tasks"]["items"]["enum"] == list(BENCHMARKS)
    policy = SCHEMA["properties"]["policy"]["properties"]
    for key, values in (
        ("penalty", choices.PENALTIES),
        ("state", choices.STATES),
        ("objective", choices.OBJECTIVES),
        ("eq3", choices.EQ3_READINGS),
        ("baseline", choices.BASELINES),
        ("which", choices.WHICH),
    ):
        assert policy[key]["enum"] == list(values), key
    calib = SCHEMA["properties"]["slicegpt"]["properties"]
    from prunenet.choices import CALIB_SAMPLES, CALIB_SEQ_LEN

    assert (calib["calib_samples"]["default"], calib["calib_seq_len"]["default"]) == (CALIB_SAMPLES, CALIB_SEQ_LEN)


def test_method_options_equal_the_schema_and_the_cli():
    """A method's own options are its config section's keys (besides the shared calibration keys), with the
    schema's default and choices, and its CLI flags ``--<method>-<name>``."""
    calib_keys = {"calib_dataset", "calib_samples", "calib_seq_len"}
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {f: a for a in sub.choices["prune"]._actions for f in a.option_strings}
    for name, method in METHODS.items():
        section = SCHEMA["properties"].get(name, {}).get("properties", {})
        own = {o.name: o for o in method.options}
        assert set(section) - calib_keys == set(own), name
        if method.needs_calibration:
            assert calib_keys <= set(section), name
        for o in method.options:
            assert section[o.name]["default"] == o.default, (name, o.name)
            if o.choices:
                assert section[o.name]["enum"] == list(o.choices), (name, o.name)
            action = flags[o.flag(name)]
            assert action.default == o.default and action.dest == o.dest(name)


def test_cli_choices_equal_the_registries():
    assert _choices("prune", "--method") == METHODS.names()
    assert _choices("prune", "--which") == list(choices.WHICH)
    assert _choices("prune", "--state") == list(choices.STATES)  # without a policy: FFN rows only
    assert _choices("prune", "--calib-dataset") == list(choices.DATASETS)
    for flag, values in (
        ("--penalty", choices.PENALTIES),
        ("--state", choices.POLICY_STATES),
        ("--objective", choices.OBJECTIVES),
        ("--eq3", choices.EQ3_READINGS),
        ("--baseline", choices.BASELINES),
        ("--spectrum", choices.SPECTRA),
    ):
        assert _choices("train", flag) == list(values), flag
    assert _choices("report", "kind") == list(REPORTS)


def _defaults(command: str) -> dict:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.default for a in sub.choices[command]._actions}


def test_every_default_is_the_schemas():
    """The schema states each default once; the CLI, PruneRequest and TrainConfig are checked equal to it."""
    import dataclasses

    from prunenet.training import TrainConfig

    policy = {k: v["default"] for k, v in SCHEMA["properties"]["policy"]["properties"].items() if "default" in v}
    train, prune = _defaults("train"), _defaults("prune")
    trained = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for key in ("episodes", "gamma", "lr", "penalty", "state", "objective", "eq3", "baseline", "samples"):
        assert train[key] == trained[key] == policy[key], key
    assert train["eval_samples"] == policy["eval_samples"]
    assert (choices.DEFAULT_STATE, choices.DEFAULT_WHICH) == (policy["state"], policy["which"])
    request = PruneRequest(ratio=0.3)
    for key in ("which", "state"):
        assert prune[key] == getattr(request, key) == policy[key] == _defaults("sweep")[key], key
    assert _defaults("spectra")["state"] == policy["state"]
    calibration = SCHEMA["properties"]["slicegpt"]["properties"]  # the shared calibration keys' defaults
    for key in ("calib_dataset", "calib_samples", "calib_seq_len"):
        assert prune[key] == getattr(request, key) == calibration[key]["default"], key
    ffn_multiple = SCHEMA["properties"]["prune"]["properties"]["ffn_multiple"]["default"]
    assert prune["ffn_multiple"] == request.ffn_multiple == ffn_multiple
    for key in ("damping", "round_to"):  # SliceGPT's, given on the command line only
        assert prune[key] == getattr(request, key), key


def test_registries_import_without_torch():
    """The workflow reads the method registry while it builds the DAG: that must stay cheap."""
    code = (
        "import sys, prunenet.methods, prunenet.choices, prunenet.reporting; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_method_entries_are_consistent():
    for name, method in METHODS.items():
        assert method.name == name and method.summary
        if method.needs_policy:
            with pytest.raises(PruneNetError, match=f"method {name!r} needs a trained policy"):
                check(name, PruneRequest(ratio=0.3))
        if not method.per_layer:
            with pytest.raises(PruneNetError, match="takes a single --ratio"):
                check(name, PruneRequest(ratio="linear:0.1:0.5", policy="p"))
    with pytest.raises(PruneNetError, match="unknown method 'magic': known are prunenet, slicegpt"):
        check("magic", PruneRequest(ratio=0.3))


def test_every_format_has_the_interface_and_every_method_names_a_registered_one():
    from prunenet.checkpoints import FORMATS

    assert FORMATS.names() == ["per-layer-shapes", "slicegpt", "low-rank", "hf"]  # detection order, plain HF last
    for name, fmt in FORMATS.items():
        assert fmt.NAME == name and callable(fmt.detect) and callable(fmt.load) and callable(fmt.save)
    assert {method.checkpoint for _, method in METHODS.items()} == set(FORMATS.names())


# ---------------------------------------------------------------- architecture adapters


def test_unsupported_architecture_lists_the_supported():
    model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    with pytest.raises(
        PruneNetError, match="unsupported architecture 'gpt2': supported model_types are gemma, .*llama"
    ):
        get_adapter(model)
    assert {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma3_text", "opt", "phi"} <= set(supported_model_types())
    for model_type, cls in ARCHITECTURES.items():
        assert model_type in cls.model_types


@pytest.mark.parametrize("family", ["llama", "opt", "phi"])
def test_adapter_facts_match_the_model(tiny_model, family):
    """Every fact the adapter states is checked against the module tree and the config."""
    model = tiny_model(family)
    adapter = get_adapter(model)
    cfg = model.config
    layers = adapter.layers()
    assert len(layers) == cfg.num_hidden_layers
    up, gate, down = adapter.ffn(layers[0])
    n = getattr(cfg, adapter.size_key)
    assert up.out_features == n and down.in_features == n and (gate is None) == (family != "llama")
    att = adapter.attention(layers[1])
    assert att.q.out_features == att.num_heads * att.head_dim
    assert att.k.out_features == att.v.out_features == att.num_kv_heads * att.head_dim
    assert att.o.in_features == att.num_heads * att.head_dim and att.o.out_features == cfg.hidden_size
    assert att.num_heads % att.num_kv_heads == 0
    if family == "llama":  # the tiny LLaMA has grouped-query attention: 4 query heads share 2 KV heads
        assert (att.num_heads, att.num_kv_heads, att.group_size) == (4, 2, 2)
    linear_names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(adapter.lora_targets) <= linear_names and "lm_head" not in adapter.lora_targets
    assert adapter.embeddings()[0] is model.get_input_embeddings() and adapter.lm_head() is model.lm_head
    block = adapter.block(layers[0])
    assert len(block.norms) == (1 if family == "phi" else 2) and block.parallel == (family == "phi")
    assert adapter.mlp_out(block.mlp) is down and up in adapter.mlp_in(block.mlp)
    assert adapter.final_norm_module() is not None


def test_qwen3_adapter_gqa_and_state(tokenizer):
    cfg = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=128,
    )
    model = AutoModelForCausalLM.from_config(cfg)
    adapter = get_adapter(model)
    att = adapter.attention(adapter.layers()[0])
    assert (att.num_heads, att.num_kv_heads, att.head_dim, att.group_size) == (8, 2, 16, 4)
    assert att.q.out_features == 128 and att.k.out_features == 32
    assert adapter.state_matrix(adapter.layers()[0], "gate").shape == (96, 64)
    assert adapter.state_matrix(adapter.layers()[0], "down").shape == (96, 64)


def test_the_workflows_refusals_are_the_architectures():
    """A method's torch-free ``refuses`` (what the workflow skips) equals what the architecture code refuses."""
    from prunenet.arch import ARCHITECTURES

    refused = sorted({t for cls in {c for _, c in ARCHITECTURES.items()} for t in cls.slicegpt_refused})
    assert sorted(METHODS.get("slicegpt").refuses) == refused
    assert all(not m.refuses for name, m in METHODS.items() if name != "slicegpt")
