"""Helpers for running every shipped configuration's rules on a tiny model (tests/test_shipped_configs.py).

A configuration's ``all`` is hundreds to thousands of jobs (``config/paper.yaml``: 3,961 on its eight models),
far beyond a test suite on two cores. What a configuration can break at run time is a rule's rendered command, so
the test runs, per configuration, one job of every rule: the one with the fewest upstream jobs, found in the DAG
that ``snakemake -n all`` prints, together with those upstream jobs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# The item and size limits a tiny 3-layer model needs (everything else stays as the configuration has it). The
# layer indices (laco, llm-pruner) are where a 32-layer setting cannot address 3 layers; device and data_dir are
# this machine's (paper.yaml asks for CUDA and hub data).
TINY_LIMITS = {
    "device": "cpu",
    "dtype": "auto",
    "evaluate": {"limit": 2, "batch_size": 4, "ppl_blocks": 1, "ppl_seq_len": 32},
    "mmlu": {"limit": 2},
    "policy": {"episodes": 2},
    "slicegpt": {"calib_samples": 4, "calib_seq_len": 32},
    "shortgpt": {"calib_samples": 2, "calib_seq_len": 32},
    "laco": {"calib_samples": 2, "calib_seq_len": 32, "lowest": 0, "keep_last": 0},
    "svd-llm": {"calib_samples": 2, "calib_seq_len": 32},
    "asvd": {"calib_samples": 2, "calib_seq_len": 32, "sens_samples": 1, "sens_seq_len": 16},
    "llm-pruner": {"calib_samples": 2, "calib_seq_len": 32, "first": 1, "last": 0},
    "llm-surgeon": {"calib_samples": 2, "calib_seq_len": 32, "shots": 2},
    "rft": {"sizes": [8], "table_size": 8, "seq_len": 32, "batch_size": 4, "eval_every": 1},
    "speed": {"batch_sizes": [1], "prompt_len": 8, "gen_len": 4, "warmup": 0, "repeats": 1},
    "bootstrap": 200,
}
# Rules none of whose jobs can run without most of the DAG (every table; every method's sweep or speed run; every
# RFT size): their commands take the list of their inputs, not the configuration's settings, and the default
# configuration's end-to-end test (tests/test_workflow.py) runs each of them.
AGGREGATES = {"all", "summary", "ppl_vs_ratio", "speedup", "fig3"}


@dataclass(frozen=True)
class Job:
    rule: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of a ``snakemake -n`` listing: each block names its rule, inputs and outputs."""
    jobs = []
    for block in re.split(r"\n\n(?=\[)", text):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule is None:
            continue

        jobs.append(Job(rule.group(1), _paths(block, "input"), _paths(block, "output")))
    return jobs


def _paths(block: str, name: str) -> tuple[str, ...]:
    line = re.search(rf"^    {name}: (.*)$", block, re.M)
    return tuple(x.strip() for x in line.group(1).split(", ")) if line else ()


def cheapest_per_rule(jobs: list[Job], skip: set[str] = AGGREGATES) -> dict[str, tuple[Job, frozenset[int]]]:
    """rule -> (its job with the fewest upstream jobs, that job's upstream closure as job indices)."""
    producer = {out: i for i, job in enumerate(jobs) for out in job.outputs}

    @functools.cache
    def closure(i: int) -> frozenset[int]:
        found = {i}
        for path in jobs[i].inputs:
            if path in producer:
                found |= closure(producer[path])
        return frozenset(found)

    best: dict[str, tuple[Job, frozenset[int]]] = {}
    for i, job in enumerate(jobs):
        if job.rule in skip or not job.outputs:
            continue
        if job.rule not in best or len(closure(i)) < len(best[job.rule][1]):
            best[job.rule] = (job, closure(i))
    return best
