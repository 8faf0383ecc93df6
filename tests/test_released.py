"""The ``official`` preset against an independent step-by-step transcription of the authors' released code.

The transcription below is written from the description of LCS2-IIITD/PruneNet (``prunenet/prunenet.py``'s
``_training``, ``prunenet_utils.py``, ``SparsityPredictor.py``), not from ``prunenet.released``: it builds the policy
as the released ``SparsityPredictor`` (an ``nn.Linear(d, n)`` with its default init, then ``torch.rand(n, 1)``),
scores rows by ``sigmoid(proj_intermediate(W) @ row_sparsities)`` (the n×n product, not the factored one), perturbs
with Eq. 4 unclamped, draws ``int((1 - r) * n)`` rows by ``torch.multinomial``, rewards ``1 / ks_2samp`` (scipy) on
``torch.svd`` spectra of the gate, discounts by γ^i, and steps AdamW after every layer on a fresh draw. Both consume
one seeded generator in the released order, so their parameters must agree after every step.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml
from scipy import stats
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig, OPTConfig

from prunenet.arch import get_adapter
from prunenet.choices import PRESETS
from prunenet.errors import PruneNetError
from prunenet.policy_spec import PolicySpec
from prunenet.policy_training import check_train_config, policy_task, train_and_score
from prunenet.training import TrainConfig

RATIO, EPISODES, SEED = 0.3, 2, 3


def tiny_llama() -> nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=24,  # int(0.7 * 24) = 16 rows drawn, where n − round(0.3 · 24) would keep 17
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    return AutoModelForCausalLM.from_config(cfg).eval()


def transcription(model: nn.Module, lr: float, gamma: float = 0.99) -> dict:
    """The released loop, step by step; returns the parameters after every AdamW step, the best and last ones."""
    gen = torch.Generator().manual_seed(SEED)
    gates = [layer.mlp.gate_proj.weight.detach().float().clone() for layer in model.model.layers]
    n, d = gates[0].shape
    proj_intermediate = nn.Linear(d, n, bias=True)  # SparsityPredictor.__init__, its default init from `gen`
    nn.init.kaiming_uniform_(proj_intermediate.weight, a=math.sqrt(5), generator=gen)
    nn.init.uniform_(proj_intermediate.bias, -1 / math.sqrt(d), 1 / math.sqrt(d), generator=gen)
    row_sparsities = nn.Parameter(torch.rand(n, 1, generator=gen))
    params = [proj_intermediate.weight, proj_intermediate.bias, row_sparsities]
    optimizer = torch.optim.AdamW(params, lr=lr)

    def action_model(w: torch.Tensor) -> torch.Tensor:  # SparsityPredictor.forward
        alpha = torch.sigmoid(proj_intermediate(w) @ row_sparsities)[:, 0]
        eps = torch.rand(n, generator=gen)
        return torch.sigmoid(torch.log(eps) - torch.log(1 - eps) + torch.log(alpha) - torch.log(1 - alpha))

    def snapshot() -> dict:
        return {k: p.detach().clone() for k, p in zip(("W_inter", "b_inter", "row_sparsities"), params)}

    dense = [torch.svd(w)[1] for w in gates]
    steps, best, best_score, penalties = [snapshot()], None, 0.0, []
    for _ in range(EPISODES):
        actions, rewards = [], []
        for i, w in enumerate(gates):
            o = action_model(w)
            actions.append(torch.multinomial(o, int((1 - RATIO) * n), replacement=False, generator=gen).sort().values)
            dist = stats.ks_2samp(dense[i].numpy(), torch.svd(w[actions[-1]])[1].numpy()).statistic
            rewards.append(99999 if dist == 0 else 1 / dist)
            penalties.append(dist)
        discounted = [gamma**i * r for i, r in enumerate(rewards)]
        for i, w in enumerate(gates):
            loss = -1 * torch.gather(torch.log(action_model(w)), 0, actions[i]).sum() * discounted[i]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            steps.append(snapshot())
        if sum(rewards) > best_score:
            best_score, best = sum(rewards), snapshot()
    return {"steps": steps, "best": best, "last": steps[-1], "penalties": penalties}


def as_released(policy: dict) -> dict:
    """This package's tensors under the released names and shapes (W_proj (1, n) is row_sparsities (n, 1))."""
    return {"W_inter": policy["W_inter"], "b_inter": policy["b_inter"], "row_sparsities": policy["W_proj"].T}


def assert_close(ours: dict, theirs: dict, what: str) -> None:
    for name, value in theirs.items():
        diff = (ours[name] - value).abs().max().item()
        assert diff <= 1e-6, f"{what}: {name} differs by {diff:.2e}"


def official_config(**changes) -> TrainConfig:
    preset = PRESETS["official"] | {"episodes": EPISODES} | changes
    return TrainConfig(ratio=RATIO, seed=SEED, **preset)


def test_official_preset_equals_the_released_loop_step_by_step(monkeypatch):
    """Same parameters after every AdamW step (init included), same best and last checkpoints, to 1e-6."""
    model = tiny_llama()
    reference = transcription(copy.deepcopy(model), lr=1e-3)  # the released --learning_rate_action
    recorded = []

    class Recording(torch.optim.AdamW):
        def step(self, closure=None):
            out = super().step(closure)
            names = ("W_inter", "b_inter", "W_proj")  # PolicyNetwork's registration order under init official
            recorded.append(as_released({k: p.detach().clone() for k, p in zip(names, self.param_groups[0]["params"])}))
            return out

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    cfg = official_config()
    check_train_config(cfg)
    task = policy_task(model, cfg)
    trained = train_and_score(task, cfg, "tiny", eval_samples=1, progress=False)
    result = trained.result

    assert len(recorded) == len(reference["steps"]) - 1 == EPISODES * 3  # one step per layer and episode
    assert_close(as_released(_initial(cfg, task)), reference["steps"][0], "initialisation")
    for step, (ours, theirs) in enumerate(zip(recorded, reference["steps"][1:]), start=1):
        assert_close(ours, theirs, f"after step {step}")
    assert_close(as_released(result.last), reference["last"], "last checkpoint")
    assert_close(as_released(result.best), reference["best"], "best checkpoint")
    penalties = torch.tensor(reference["penalties"]).reshape(EPISODES, -1)
    assert result.history == pytest.approx(penalties.mean(1).tolist(), abs=1e-6)


def _initial(cfg: TrainConfig, task) -> dict:
    """The policy this package starts from under ``cfg`` (the generator seeded as the loop seeds it)."""
    from prunenet.training import make_policy

    policy = make_policy(cfg, *task.shape, generator=torch.Generator().manual_seed(cfg.seed))
    return {k: v.detach() for k, v in policy.state_dict().items()}


def test_the_first_state_is_the_gate_or_fc1():
    """``state: first`` reads the gate of a gated FFN (LLaMA family) and fc1 where there is none (OPT)."""
    llama = tiny_llama()
    layer = get_adapter(llama).layers()[0]
    assert get_adapter(llama).state_matrix(layer, "first") is layer.mlp.gate_proj.weight
    opt = AutoModelForCausalLM.from_config(
        OPTConfig(vocab_size=32, hidden_size=16, ffn_dim=24, num_hidden_layers=1, num_attention_heads=2)
    )
    layer = get_adapter(opt).layers()[0]
    assert get_adapter(opt).state_matrix(layer, "first") is layer.fc1.weight


def test_the_preset_is_one_switch_everywhere_and_names_its_policies(monkeypatch):
    """The default config and `prunenet train --preset official` set exactly PRESETS["official"] (the default's other
    keys are the paper's too); config/paper_preset.yaml sets exactly PRESETS["paper"]; the official policy id names
    every switch; the paper's id is unchanged."""
    from prunenet import commands
    from prunenet.cli import build_parser

    config = Path(__file__).resolve().parents[1] / "config"
    default = yaml.safe_load((config / "config.yaml").read_text())["policy"]
    assert {k: default[k] for k in PRESETS["official"]} == PRESETS["official"]
    assert yaml.safe_load((config / "paper_preset.yaml").read_text())["policy"] == PRESETS["paper"]
    paper = yaml.safe_load((config / "paper.yaml").read_text())["policy"]  # the GPU overlay runs the default's preset
    assert {k: paper[k] for k in PRESETS["official"]} == PRESETS["official"]
    seen = {}
    monkeypatch.setattr(commands, "cmd_train", lambda a: seen.update(vars(a)))
    flags = ["--model", "x", "--out", "p", "--meta-out", "m", "--lr", "0.002", "--preset", "official"]
    args = build_parser().parse_args(["train", *flags])
    args.func(args)
    assert seen["lr"] == 0.002  # an explicit flag wins, wherever it stands
    seen["lr"] = PRESETS["official"]["lr"]
    assert {k: seen[k] for k in PRESETS["official"]} == PRESETS["official"]
    spec = PolicySpec.from_config(PRESETS["official"], 0.3)
    assert spec.id == "ks-first-official-init-official-update-official-lr0.001-t0.3"
    assert PolicySpec.parse(spec.id) == spec
    assert PolicySpec.from_config(PRESETS["paper"], 0.3).id == "ks-up-paper-t0.3"


def test_the_released_loop_refuses_what_it_does_not_do():
    with pytest.raises(PruneNetError, match="--samples 1 --baseline none"):
        check_train_config(official_config(samples=2, baseline="loo"))
    with pytest.raises(PruneNetError, match="FFN rows only"):
        check_train_config(official_config(state="qkv"))
