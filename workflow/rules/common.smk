import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

validate(config, "../../config/schema.yaml")

PY = config.get("python", sys.executable)  # the interpreter that runs snakemake has prunenet installed
DATA_DIR = config.get("data_dir")
if DATA_DIR and not Path(DATA_DIR).is_dir():
    raise WorkflowError(f"data_dir {DATA_DIR!r} does not exist: point it at the benchmark data (e.g. ../shared/data) or set it to null to use the hub")
DATA_ARG = f"--data-dir {shlex.quote(str(Path(DATA_DIR).resolve()))}" if DATA_DIR else ""


def fmt(r):
    """Ratios in paths: 0.25 -> '0.25', 0.3 -> '0.3'."""
    return f"{float(r):g}"


MODELS = list(config["models"])
RATIOS = [fmt(r) for r in config["prune"]["ratios"]]


def schedule_tag(spec):
    """'linear:0.1:0.5' -> 'lin0.1-0.5' (path-friendly ratio wildcard)."""
    _, start, end = spec.split(":")
    return f"lin{fmt(start)}-{fmt(end)}"


def ratio_arg(tag):
    """Ratio wildcard -> the CLI's --ratio value ('lin0.1-0.5' -> 'linear:0.1:0.5')."""
    m = re.fullmatch(r"lin([0-9.]+)-([0-9.]+)", tag)
    return f"linear:{m.group(1)}:{m.group(2)}" if m else tag


SCHEDULES = [schedule_tag(s) for s in config["prune"].get("schedules", [])]
METHODS = config["prune"]["methods"]
POL = config["policy"]
ESTIMATOR = "" if (POL["baseline"], POL["samples"]) == ("none", 1) else f"-{POL['baseline']}{POL['samples']}"
POLICY_ID = f"{POL['penalty']}-{POL['state']}-{POL['objective']}{ESTIMATOR}-t{fmt(POL['train_ratio'])}-s{config['seed']}"
POLICY_RE = re.compile(
    r"(?P<penalty>ks|ad)-(?P<state>up|down|gate)-(?P<objective>paper|official)"
    r"(?:-(?P<baseline>none|running|loo)(?P<samples>[0-9]+))?-t(?P<ratio>[0-9.]+)-s(?P<seed>[0-9]+)"
)


def policy_args(policy_id):
    """Policy wildcard -> the train command's settings (no estimator tag = the paper's: no baseline, 1 draw)."""
    args = POLICY_RE.fullmatch(policy_id).groupdict()
    return args | {"baseline": args["baseline"] or "none", "samples": args["samples"] or "1"}


EV = config["evaluate"]
RFT = config.get("rft", {})

wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    method=r"dense|prunenet|deterministic|random|slicegpt",
    ratio=r"[0-9]+(\.[0-9]+)?|lin[0-9.]+-[0-9.]+",
    policy=re.sub(r"\(\?P<\w+>", "(?:", POLICY_RE.pattern),
    dataset=r"wikitext2|ptb|alpaca",
    samples=r"[0-9]+",


def model_dir(model, method, ratio):
    """Checkpoint of one (model, method, ratio); ratio 0 / method dense is the downloaded model."""
    if method == "dense":
        return f"resources/models/{model}"
    return f"results/models/{model}/{method}/r{ratio}"


def policy_file(model):
    return f"results/policies/{model}/{POLICY_ID}.safetensors"


def variants(model):
    """(method, ratio) pairs of Table 2 for one model: dense first; schedules only for row selectors."""
    pairs = [("dense", "0")] + [(m, r) for m in METHODS for r in RATIOS]
    return pairs + [(m, t) for m in METHODS if m != "slicegpt" for t in SCHEDULES]


def eval_file(model, method, ratio):
    return f"results/eval/{model}/{method}/r{ratio}.json"
