"""Stock-``transformers`` loading of pruned checkpoints: the code a checkpoint carries, and the writer.

A checkpoint whose shapes no stock class expresses (per-layer FFN widths or KV heads, low-rank factors, SliceGPT's
sliced stream) gets :data:`FILES` copied beside its weights and an ``auto_map`` in ``config.json``, so that
``AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`` loads it where ``prunenet`` is not
installed (lm-eval's ``hf`` model, peft, vLLM's transformers backend). Why remote code rather than a registered
class: the checkpoint then loads with nothing but ``transformers``. The files import only ``torch`` and
``transformers``; this package imports nothing from ``prunenet``, so every checkpoint format can call
:func:`attach`. Uniform checkpoints stay plain (no code, no ``auto_map``); families outside the LLaMA module
layout (OPT, Phi-2) get no code and load through ``prunenet.models.load_model`` as before.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .configuration_prunenet import FORMAT_KEYS

__all__ = ["FILES", "attach", "auto_map"]

HERE = Path(__file__).parent
FILES = ("configuration_prunenet.py", "modeling_prunenet.py")


def auto_map(model_type: str) -> dict[str, str] | None:
    """The ``auto_map`` entry for a family (None where the code does not cover it)."""
    from .modeling_prunenet import MODELS

    cls = next((m for m in MODELS if m.config_class.model_type == model_type), None)
    if cls is None:
        return None
    return {
        "AutoConfig": f"configuration_prunenet.{cls.config_class.__name__}",
        "AutoModelForCausalLM": f"modeling_prunenet.{cls.__name__}",
    }


def attach(directory: str | Path) -> bool:
    """Make the checkpoint in ``directory`` (its ``config.json`` already written) loadable by stock transformers.

    Returns whether code was attached: only when a ``prunenet_*`` shape key is present and the family is covered.
    A leftover ``auto_map`` of ours (a model loaded from such a checkpoint, then saved plain) is removed.
    """
    directory = Path(directory)
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    mapping = auto_map(config.get("model_type", "")) if any(config.get(k) for k in FORMAT_KEYS) else None
    modules = {str(ref).split(".")[0] for ref in config.get("auto_map", {}).values()}
    if mapping is None and not (modules and modules <= {Path(f).stem for f in FILES}):
        return False  # plain checkpoint (or another project's code): config.json stays byte-identical
    if mapping is None:
        del config["auto_map"]
    else:
        config["auto_map"] = mapping
        for name in FILES:
            shutil.copyfile(HERE / name, directory / name)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")  # transformers' own layout
    return mapping is not None
