"""The workflow's configuration as Snakemake hands it over, made what the user meant (torch-free).

Why: the usual way to change one value must work without copying the whole config. Snakemake merges a
``--configfile`` overlay and ``--config`` values onto ``config/config.yaml`` key by key (the Snakefile always loads
the defaults), but it parses nested ``--config`` values with YAML's base loader, so ``evaluate='{limit: 5}'``
arrives as ``{'limit': '5'}`` and the schema refuses the string. :func:`coerce` re-reads such strings by what the
schema expects there. Two merges would silently do the wrong thing and are fixed or refused here:

- ``models`` is a name -> spec map: an override *replaces* it (a paper config's hub models must not run beside the
  embedded default), and an empty one is an error (the schema's ``minProperties``);
- an overlay file that sets nothing, or an empty ``--config key='{}'``, changes nothing: refused (unknown keys
  are the schema's to refuse: every object in it has ``additionalProperties: false``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPLACED = ("models",)  # keys an override replaces instead of merging into
OPTIONAL_SECTIONS = ("rft",)  # sections whose absence means "none of these targets"; null removes them


class ConfigError(ValueError):
    """A configuration the user must fix; the message names the fix."""


def _resolve_ref(node: Mapping, root: Mapping) -> Mapping:
    """Follow a local ``$ref`` such as ``#/$defs/method``."""
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _takes_string(node: Mapping, value: str, root: Mapping) -> bool:
    """Whether the schema node can hold ``value`` as a string (then it stays one)."""
    node = _resolve_ref(node, root)
    if "enum" in node:
        return value in node["enum"]
    if "const" in node:
        return value == node["const"]
    for key in ("oneOf", "anyOf"):
        if key in node:
            return any(_takes_string(branch, value, root) for branch in node[key])
    types = node.get("type")
    if types is None:
        return True
    types = [types] if isinstance(types, str) else types
    if value in ("null", "~") and "null" in types:  # data_dir=null means the hub, not a folder named null
        return False
    return "string" in types


def coerce(value: Any, node: Mapping, root: Mapping) -> Any:
    """``value`` with every string the schema does not take as a string re-read as YAML ('5' -> 5, '[0.2]' -> [0.2],
    'null' -> None), recursively through objects and arrays; anything else is returned as it is for
    validation to judge."""
    node = _resolve_ref(node, root)
    if isinstance(value, str) and not _takes_string(node, value, root):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return value if isinstance(parsed, str) else coerce(parsed, node, root)
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            out[key] = coerce(item, sub, root) if sub is not None else item
        return out
    if isinstance(value, list) and isinstance(node.get("items"), Mapping):
        return [coerce(item, node["items"], root) for item in value]
    return value


def resolve(
    config: Mapping,
    overrides: Mapping,
    overlays: Iterable[str | Path],
    schema: Mapping,
    cli: Mapping | None = None,
) -> dict:
    """The effective configuration: Snakemake's merge of defaults + overlays + ``--config`` values (``config``),
    with typed values and each REPLACED key taken whole from the last override naming it: ``--config`` (``cli``),
    else the last overlay file (Snakemake merges overlays into each other too, so ``--configfile paper.yaml
    mine.yaml`` would otherwise run both files' models). Raises :class:`ConfigError`."""
    files = []
    for path in overlays:
        doc = yaml.safe_load(Path(path).read_text())
        if not doc:
            raise ConfigError(
                f"--configfile {path} sets nothing: give it the keys to change (e.g. evaluate: {{limit: 3}})"
            )
        files.append(doc)
    out = copy.deepcopy(dict(config))
    for key in REPLACED:
        named = [doc[key] for doc in [*files, cli or {}] if isinstance(doc, Mapping) and key in doc]
        if named or key in overrides:
            out[key] = copy.deepcopy(named[-1] if named else overrides[key])
    for key, value in overrides.items():
        if isinstance(value, dict) and not value:
            fix = "name at least one model" if key in REPLACED else "give the keys to change"
            raise ConfigError(f"{key}: {{}} would {'leave no model' if key in REPLACED else 'change nothing'}: {fix}")
    out = coerce(out, schema, schema)
    for key in OPTIONAL_SECTIONS:
        if key in out and out[key] is None:  # `rft: null` (an overlay cannot delete a default key) = no section
            del out[key]
    return out


def load(config_dir: Path, overlay: Path | None = None) -> dict:
    """``config_dir``'s config.yaml with ``overlay`` merged on and resolved as ``snakemake --configfile overlay``
    resolves it (Snakemake's own merge, then :func:`resolve`): what a benchmark that runs a method "with a config's
    settings" must read, since an overlay such as paper.yaml sets only what it changes."""
    from snakemake.utils import update_config

    merged = yaml.safe_load((config_dir / "config.yaml").read_text())
    schema = yaml.safe_load((config_dir / "schema.yaml").read_text())
    if overlay is None or Path(overlay).resolve() == (config_dir / "config.yaml").resolve():
        return resolve(merged, {}, [], schema)
    over = yaml.safe_load(Path(overlay).read_text())
    update_config(merged, copy.deepcopy(over))
    return resolve(merged, over, [overlay], schema)


def evaluate_flags(ev: Mapping[str, Any]) -> dict[str, list[str]]:
    """``prunenet evaluate`` flags for a config's ``evaluate`` section, by group, written once for the workflow's
    rules (evaluate, sweep, GGUF perplexity: each takes the groups it needs, in its own order) and the benchmarks
    that evaluate "as the workflow does". A null ``limit`` or ``ppl_blocks`` renders no flag (every item, the whole
    test split: the CLI's defaults), never ``None``."""
    return {
        "tasks": ["--tasks", *ev["tasks"], "--batch-size", str(ev["batch_size"])]
        + ["--num-fewshot", str(ev["num_fewshot"])],
        "limit": ["--limit", str(ev["limit"])] if ev["limit"] else [],
        "ppl_datasets": ["--ppl-datasets", *ev["ppl_datasets"]],
        "ppl_seq_len": ["--ppl-seq-len", str(ev["ppl_seq_len"])],
        "ppl_blocks": ["--ppl-blocks", str(ev["ppl_blocks"])] if ev["ppl_blocks"] else [],
    }
