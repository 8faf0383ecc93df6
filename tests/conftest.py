"""Shared fixtures: the embedded SmolLM2 (materialized once per run) and tiny random models.

Tiny models use the SmolLM2 tokenizer so that lm-eval, perplexity and RFT code paths run
with a real tokenizer; no test touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, LlamaConfig, OPTConfig, PhiConfig

from prunenet.models import load_model, materialize

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PRUNENET_DATA_DIR", ROOT.parent / "shared" / "data"))
CACHE = Path(os.environ.get("PRUNENET_TEST_CACHE", Path.home() / ".cache" / "prunenet-tests"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (pyproject's ``-n auto``) each worker gets its share of the cores: two workers with two
    OpenMP threads each on a 2-core machine spin against each other (~10x slower than one thread each)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory) -> Path:
    """Commands called in-process log to this session's own MLflow store, not to the checkout's
    results/mlflow.db: parallel workers never share one sqlite file and the suite leaves the tree clean.
    (Snakemake runs drop the variable and use their workdir's store.)"""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    yield db
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"benchmark data not found at {DATA_DIR}: set PRUNENET_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2-135M as a local safetensors checkpoint (dequantized once, then cached)."""
    path = CACHE / "smollm2-135m"
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):  # pytest-xdist workers share the cache: one dequantizes, the others wait
        if not (path / "config.json").is_file():
            materialize("smollm2-135m", path)
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    return load_model(str(smollm2_dir), dtype="float32")


@pytest.fixture(scope="session")
def tokenizer(smollm2):
    return smollm2[1]


def tiny_config(family: str, vocab_size: int):
    """A 2-4 layer random config of each supported family (no download)."""
    if family == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
        )
    if family == "opt":
        return OPTConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            ffn_dim=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            word_embed_proj_dim=64,
            max_position_embeddings=512,
        )
    if family == "phi":
        return PhiConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=512,
            partial_rotary_factor=0.5,
        )
    raise ValueError(family)


@pytest.fixture
def tiny_model(tokenizer):
    """Factory: ``tiny_model("llama"|"opt"|"phi", seed=0)`` -> a small random CausalLM in float32, eval mode."""

    def make(family: str, seed: int = 0):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer)), dtype=torch.float32)
        return model.eval()

    return make


def planted_states(L: int = 6, n: int = 128, d: int = 32, seed: int = 0) -> torch.Tensor:
    """Layers where some rows are clearly better for the KS penalty: rows 0…n/2−1 are large and lie on
    the positive side of a direction u, the others small on its negative side, in every layer. Keeping
    the large rows preserves the spectrum. The coded reading finds them by their content
    (W_interᵀW_projᵀ ∝ u), the printed one by their position (W_inter[j] · W_proj W_up ∝ ±1)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(d, generator=gen), dim=0)
    sign = torch.where(torch.arange(n) < n // 2, 1.0, -1.0)
    layers = []
    for _ in range(L):
        w = torch.randn(n, d, generator=gen)
        w = w - (w @ u)[:, None] * u
        layers.append(w * torch.where(sign > 0, 1.0, 0.3)[:, None] + sign[:, None] * u)
    return torch.stack(layers)


@pytest.fixture(scope="module")
def one_thread():
    """Shared 2-core machines: 2 spinning OpenMP threads under contention are ~10x slower than 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
