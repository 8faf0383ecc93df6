"""The settings table (``results/tables/settings.md``): per method and setting, the release's value, this
configuration's and ``config/paper.yaml``'s, and why they differ.

Why generated: the release values and the reasons live once, in each method's registration
(:attr:`prunenet.methods.base.Method.release`), and the two other columns are read from the configurations the
workflow runs, so the table cannot drift from either and the docs link to it instead of restating values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..errors import PruneNetError
from ..methods import METHODS, Method
from ..methods.base import NOT_CHECKED
from .render import write_table

COLUMNS = ["method", "setting", "release", "here", "paper.yaml", "why they differ", "release source"]
NO_SECTION = "(no section of its own)"
# The line under a table whose rows include a method with a declared deviation (the workflow passes it as a note).
NOTE = "Baseline settings (release, this run, paper.yaml, and why they differ): [settings.md](settings.md)."


def _merged(base: Mapping, overlay: Mapping) -> dict:
    """``overlay`` merged onto ``base`` key by key, as Snakemake merges a ``--configfile`` onto the defaults."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        out[key] = (
            _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
        )
    return out


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


def deviates(method: Method) -> bool:
    """Whether any of the method's settings is declared to differ from its release (a reason is given)."""
    return any(r.why for r in method.release)


def method_rows(method: Method, here: Mapping, paper: Mapping) -> list[dict]:
    """One row per setting of ``method``: its config keys (here, then paper.yaml's) and its declared release keys."""
    here_sec, paper_sec = here.get(method.name) or {}, paper.get(method.name) or {}
    release = {r.setting: r for r in method.release}
    defaults = {o.name: o.default for o in method.options}
    keys = list(dict.fromkeys([*here_sec, *paper_sec, *release, *defaults]))
    if not keys:
        return [dict.fromkeys(COLUMNS, "") | {"method": method.name, "setting": NO_SECTION, "release": NOT_CHECKED}]
    rows = []
    for key in keys:
        rel = release.get(key)
        rows.append(
            {
                "method": method.name,
                "setting": key,
                "release": rel.value if rel else NOT_CHECKED,
                "here": _text(here_sec.get(key, defaults.get(key))),
                "paper.yaml": _text(paper_sec.get(key, defaults.get(key))),
                "why they differ": rel.why if rel else "",
                "release source": rel.where if rel else "",
            }
        )
    return rows


def settings_frame(here: Mapping, paper: Mapping) -> pd.DataFrame:
    """Every registered method, in registration order, with its settings (``here``/``paper``: whole configs)."""
    rows = [row for _, method in METHODS.items() for row in method_rows(method, here, paper)]
    return pd.DataFrame(rows, columns=COLUMNS)


def settings(inputs: list[str], out: str, out_md: str, here: dict | None = None) -> list[Path]:
    """``prunenet report settings --inputs config/config.yaml config/paper.yaml``: the defaults, then the paper
    overlay (merged onto the defaults, as the workflow does). ``here``: the running workflow's method sections
    (its config after overlays and ``--config``); absent, the defaults file's."""
    if len(inputs) != 2 or not all(Path(p).is_file() for p in inputs):
        raise PruneNetError("report settings: --inputs takes two files, the defaults then the paper overlay")
    defaults, overlay = (yaml.safe_load(Path(p).read_text()) or {} for p in inputs)
    paper = _merged(defaults, overlay)
    df = settings_frame(here if here is not None else defaults, paper)
    title = (
        "Each method's settings: its public release's value (read there; 'not checked' where not), this run's "
        f"configuration ('here') and {Path(inputs[1]).name} merged onto {Path(inputs[0]).name}.\n\n"
    )
    return write_table(df, out, out_md, title + df.to_markdown(index=False) + "\n")
