"""LLM Surgeon (structured): the Kronecker-factored OBS cost and update against the explicit optimal-brain-surgeon
solution and least squares; K-FAC factors against a direct computation; the method end to end."""

from __future__ import annotations

import copy

import pytest
import torch

from prunenet.arch import get_adapter
from prunenet.budget import ffn_rows_budget
from prunenet.errors import PruneNetError
from prunenet.methods import METHODS, PruneRequest
from prunenet.methods.pipeline import apply
from prunenet.models import load_model, save_checkpoint
from prunenet.stats import count_params
from prunenet.structured.surgeon import column_blocks_cost, estimate, remove_columns, single_column_cost


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _spd(n: int, seed: int) -> torch.Tensor:
    m = torch.randn(n, 2 * n, generator=_gen(seed), dtype=torch.float64)
    return m @ m.T / (2 * n) + 0.1 * torch.eye(n, dtype=torch.float64)


def _obs(h: torch.Tensor, theta: torch.Tensor, q: list[int]) -> tuple[float, torch.Tensor]:
    """Optimal brain surgeon on an explicit Hessian: cost ½θ_Qᵀ[(H⁻¹)_QQ]⁻¹θ_Q, update −H⁻¹E_Q[(H⁻¹)_QQ]⁻¹θ_Q."""
    hinv = torch.linalg.inv(h)
    sub = torch.linalg.inv(hinv[q][:, q])
    cost = 0.5 * theta[q] @ sub @ theta[q]
    return float(cost), -hinv[:, q] @ sub @ theta[q]


def test_kronecker_cost_and_update_equal_explicit_obs():
    """F = G ⊗ A exactly (row-major vec(W)): the factored formulas equal OBS on the 48 × 48 Hessian."""
    out, inp = 6, 8
    w = torch.randn(out, inp, generator=_gen(1), dtype=torch.float64)
    a, g = _spd(inp, 2), _spd(out, 3)
    h = torch.kron(g, a)
    a_inv = torch.linalg.inv(a)
    blocks = torch.tensor([[0, 3], [5, 6], [7, 1]])
    costs = column_blocks_cost(w, a_inv, g, blocks)
    for b, cost in zip(blocks, costs):
        q = [i * inp + j for i in range(out) for j in b.tolist()]
        want_cost, delta = _obs(h, w.flatten(), q)
        assert float(cost) == pytest.approx(want_cost, rel=1e-9)
        torch.testing.assert_close(remove_columns(w, a_inv, b), w + delta.view(out, inp))
    singles = single_column_cost(w, a_inv, g)
    blocks1 = column_blocks_cost(w, a_inv, g, torch.arange(inp)[:, None])
    torch.testing.assert_close(singles, blocks1)


def test_on_linear_regression_the_update_is_the_least_squares_refit():
    """Loss ½‖(W' − W)X‖²: Hessian I ⊗ XXᵀ. Removing columns B with the update gives the least-squares W' with
    W'[:, B] = 0, and the cost is exactly the loss it leaves."""
    out, inp, n = 5, 7, 40
    w = torch.randn(out, inp, generator=_gen(4), dtype=torch.float64)
    x = torch.randn(inp, n, generator=_gen(5), dtype=torch.float64)
    a = x @ x.T
    b = torch.tensor([2, 4])
    new = remove_columns(w, torch.linalg.inv(a), b)
    keep = torch.tensor([0, 1, 3, 5, 6])
    xk = x[keep]
    lsq = (w @ x) @ xk.T @ torch.linalg.inv(xk @ xk.T)
    torch.testing.assert_close(new[:, keep], lsq)
    assert torch.all(new[:, b] == 0)
    cost = column_blocks_cost(w, torch.linalg.inv(a), torch.eye(out, dtype=torch.float64), b[None])[0]
    assert float(cost) == pytest.approx(0.5 * float(((new - w) @ x).pow(2).sum()), rel=1e-9)
    torch.testing.assert_close(remove_columns(w, torch.linalg.inv(a), torch.tensor([], dtype=torch.long)), w)


def test_kfac_with_activations_on_the_host_is_the_same(tiny_model, monkeypatch):
    """activations: host packs every tensor the backward keeps through save_on_cpu, and A and G do not move."""
    model = tiny_model("llama").double()
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=_gen(6))
    down = get_adapter(model).ffn(get_adapter(model).layers()[1])[2]
    (ref,) = estimate(model, [down], ids)
    packed = []
    real = torch.autograd.graph.save_on_cpu

    class Spy(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pack = self.pack_hook
            self.pack_hook = lambda t: packed.append(t.shape) or pack(t)

    monkeypatch.setattr(torch.autograd.graph, "save_on_cpu", Spy)
    (st,) = estimate(model, [down], ids, activations_on_host=True)
    assert len(packed) > 10  # every layer's saved tensors went through the host
    assert torch.equal(st.a, ref.a) and torch.equal(st.g, ref.g) and (st.na, st.ng) == (ref.na, ref.ng)
    packed.clear()
    estimate(model, [down], ids)
    assert not packed  # the default keeps them where they are made


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_kfac_factors_equal_a_direct_computation(tiny_model, family):
    """A from the inputs, G from autograd's gradient of the summed token loss w.r.t. the outputs (retain_grad)."""
    model = tiny_model(family).double()
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=_gen(6))
    down = get_adapter(model).ffn(get_adapter(model).layers()[1])[2]
    (st,) = estimate(model, [down], ids)
    a_sum = torch.zeros(down.in_features, down.in_features, dtype=torch.float64)
    g_sum = torch.zeros(down.out_features, down.out_features, dtype=torch.float64)
    seen = {}

    def hook(mod, args, out):
        out.retain_grad()
        seen["x"], seen["y"] = args[0], out

    for window in ids:
        h = down.register_forward_hook(hook)
        logits = model(window[None]).logits
        h.remove()
        torch.nn.functional.cross_entropy(logits[0, :-1], window[1:], reduction="sum").backward()
        # OPT runs its FFN on [tokens, d]; LLaMA on [1, tokens, d]
        x = seen["x"].detach().reshape(-1, down.in_features)
        gy = seen["y"].grad.reshape(-1, down.out_features)
        a_sum += x.T @ x
        g_sum += gy.T @ gy
        model.zero_grad()
    a, g = st.factors(damping=0.0)
    torch.testing.assert_close(a, a_sum / (2 * 9))
    torch.testing.assert_close(g, g_sum / (2 * 9))
    assert all(p.requires_grad for p in model.parameters())  # restored


def _request(data_dir, ratio, **options) -> PruneRequest:
    return PruneRequest(ratio=ratio, data_dir=str(data_dir), calib_samples=3, calib_seq_len=16, options=options)


@pytest.mark.parametrize("family", ["llama", "opt", "phi"])
@pytest.mark.parametrize("structures", ["ffn+attention", "ffn"])
def test_method_meets_the_budget_and_reloads(tiny_model, tokenizer, data_dir, tmp_path, family, structures):
    model = tiny_model(family)
    dense = count_params(model)
    pruned, meta = apply(
        METHODS.get("llm-surgeon"),
        copy.deepcopy(model),
        tokenizer,
        _request(data_dir, 0.5, shots=3, structures=structures),
    )
    assert len(meta["shots"]) == 3 and [s["target"] for s in meta["shots"]] == sorted(
        s["target"] for s in meta["shots"]
    )
    assert meta["params_removed"] == dense - count_params(pruned) == meta["shots"][-1]["removed"]
    assert meta["param_budget"] == ffn_rows_budget(model, 0.5)
    assert abs(meta["params_removed"] - meta["param_budget"]) <= 0.01 * dense
    if structures == "ffn":
        assert meta["kv_heads"] == [get_adapter(model).attention(get_adapter(model).layers()[0]).num_kv_heads] * 3
    save_checkpoint(pruned, tokenizer, tmp_path / "m", meta)
    reloaded, _ = load_model(str(tmp_path / "m"), dtype="float32")
    ids = torch.randint(0, model.config.vocab_size, (2, 10), generator=_gen(7))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, pruned(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_nominal_ratio_is_the_releases_sparsity(tiny_model, tokenizer, data_dir, family):
    """budget=ratio: the target is the release's structured one, int(r · Σ weights and biases of every linear in a
    decoder layer) (threshold.py); structures go until it is met, overshooting by less than one KV group."""
    model = tiny_model(family)
    adapter = get_adapter(model)
    inside = {id(m) for layer in adapter.layers() for m in layer.modules()}
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and id(m) in inside]
    target = int(0.3 * sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for m in linears))
    a = adapter.attention(adapter.layers()[0])
    unit = a.group_size * a.head_dim
    rows = lambda lin, k: k * (lin.in_features + (lin.bias is not None))  # noqa: E731
    group = rows(a.q, unit) + rows(a.k, a.head_dim) + rows(a.v, a.head_dim) + unit * a.o.out_features
    request = _request(data_dir, 0.3, shots=2, budget="ratio")
    pruned, meta = apply(METHODS.get("llm-surgeon"), copy.deepcopy(model), tokenizer, request)
    assert meta["param_target"] == target and meta["budget"] == "ratio" and meta["param_budget"] is None
    assert meta["params_removed"] == count_params(model) - count_params(pruned)
    assert target <= meta["params_removed"] < target + group


def test_nothing_removed_is_the_identity(tiny_model, tokenizer, data_dir):
    model = tiny_model("llama")
    pruned, meta = apply(METHODS.get("llm-surgeon"), copy.deepcopy(model), tokenizer, _request(data_dir, 0.0001))
    assert meta["params_removed"] == 0
    ids = torch.randint(0, model.config.vocab_size, (2, 10), generator=_gen(8))
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids).logits, model(ids).logits, atol=0, rtol=0)


def test_options_are_checked_before_loading(data_dir):
    for bad, what in [({"shots": 0}, "shots"), ({"damping": 0.0}, "damping")]:
        with pytest.raises(PruneNetError, match=what):
            METHODS.get("llm-surgeon").check(_request(data_dir, 0.2, **bad))


def test_one_shot_takes_the_cheapest_structures_globally_and_updates_the_rest(tiny_model, tokenizer, data_dir):
    """One shot by hand on the method's own steps: no structure left in place is cheaper than one taken (in a layer
    that could still give one: the global threshold in increasing cost), and every down projection is the OBS
    update of its original with the taken columns removed (not the original merely sliced)."""
    from prunenet.methods import llm_surgeon as surgeon

    model = tiny_model("llama")
    adapter = get_adapter(model)
    layers = adapter.layers()
    original = [adapter.ffn(layer)[2].weight.detach().clone() for layer in layers]
    blocks = _request(data_dir, 0.3).calibration(tokenizer)
    stats = dict(
        zip([("ffn", i) for i in range(len(layers))], estimate(model, [adapter.ffn(x)[2] for x in layers], blocks))
    )
    ranked, inverses = surgeon._candidates(model, stats, False, 0.01)
    assert not stats  # each layer's factors dropped once inverted: the host never holds factors and inverses of all
    chosen, _ = surgeon._choose(model, ranked, False, 0, ffn_rows_budget(model, 0.3))
    cost = {(i, j): c for c, i, _, j in ranked}
    taken = {(i, j) for (_, i), js in chosen.items() for j in js}
    width = adapter.ffn(layers[0])[0].out_features
    exhausted = {i for (_, i), js in chosen.items() if len(js) == width - 1}
    threshold = max(cost[k] for k in taken)
    assert not [k for k, c in cost.items() if k not in taken and k[0] not in exhausted and c < threshold]
    assert len({i for i, _ in taken}) > 1  # global: more than one layer gives channels
    surgeon._operate(model, chosen, inverses)
    updated = 0
    for i, layer in enumerate(layers):
        drop = sorted(chosen.get(("ffn", i), []))
        keep = [j for j in range(width) if j not in drop]
        expected = (
            remove_columns(original[i], inverses[("ffn", i)], torch.tensor(drop))[:, keep] if drop else original[i]
        )
        torch.testing.assert_close(adapter.ffn(layer)[2].weight.detach(), expected, atol=1e-6, rtol=1e-5)
        updated += bool(drop) and (expected - original[i][:, keep]).abs().max().item() > 1e-4
    assert updated > 0  # the update moved the kept weights somewhere


def test_shots_benchmark_runs_as_the_configs_sections_say(tmp_path):
    """benchmarks/llm_surgeon_shots.py reads the config as --configfile does (an overlay merged on config.yaml) and
    renders its evaluate and llm-surgeon sections as the workflow does: a null ppl_blocks renders no --ppl-blocks
    (the whole split), its --limit replaces the config's items, and only the shots differ from the prune rule's."""
    import importlib.util
    from pathlib import Path

    import yaml

    from prunenet.config import load

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("llm_surgeon_shots", root / "benchmarks/llm_surgeon_shots.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = load(root / "config")
    ev = cfg["evaluate"]
    flags = bench.evaluation(cfg, 60)
    assert flags == ["--tasks", *ev["tasks"], "--batch-size", str(ev["batch_size"]), "--num-fewshot", "0"] + [
        "--ppl-datasets",
        *ev["ppl_datasets"],
        "--ppl-seq-len",
        str(ev["ppl_seq_len"]),
        "--ppl-blocks",
        "8",
    ] + ["--limit", "60"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"evaluate": {"ppl_blocks": None, "batch_size": 4}}))
    over = load(root / "config", tmp_path / "c.yaml")  # an overlay sets only what it changes
    flags = bench.evaluation(over, 0)
    assert "--ppl-blocks" not in flags and "--limit" not in flags and flags[flags.index("--batch-size") + 1] == "4"
    assert flags[: flags.index("--batch-size")] == ["--tasks", *ev["tasks"]]  # the rest is config.yaml's
    paper = load(root / "config", root / "config/paper.yaml")
    prune = bench.settings(paper, 40)
    assert prune[prune.index("--llm-surgeon-shots") + 1] == "40"
    want = {**paper["llm-surgeon"], "shots": 40}
    assert len(prune) == 2 * len(want)
    for key, value in want.items():  # config key -> the prune parser's flag, as the workflow's prune rule renders
        flag = f"--{key.replace('_', '-')}" if key.startswith("calib_") else f"--llm-surgeon-{key.replace('_', '-')}"
        assert prune[prune.index(flag) + 1] == str(value)
