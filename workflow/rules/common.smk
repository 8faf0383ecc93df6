import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

# The registries of the prunenet package beside this workflow (torch-free imports): method names,
# what each method needs, the policy's option values. The schema's enums are tested equal to them.
sys.path.insert(0, str(Path(workflow.basedir).parent))
from prunenet import options as OPTIONS  # noqa: E402
from prunenet.methods import METHODS  # noqa: E402
from prunenet.reporting import TABLES  # noqa: E402

validate(config, "../../config/schema.yaml")

PY = config["python"] or sys.executable  # the interpreter running snakemake has prunenet installed
DATA_DIR = config["data_dir"]
if DATA_DIR and not Path(DATA_DIR).is_dir():
    raise WorkflowError(
        f"data_dir {DATA_DIR!r} does not exist: point it at the benchmark data (e.g. ../shared/data) "
        "or set it to null to use the hub"
    )
RUN_ARGS = f"--seed {config['seed']} --device {config['device']}"
CONDA_ENV = "../../envs/prunenet.yaml"  # used with --use-conda (then also --config python=python)
DATA_ARG = f"--data-dir {shlex.quote(str(Path(DATA_DIR).resolve()))}" if DATA_DIR else ""


def fmt(r):
    """Ratios in paths: 0.25 -> '0.25', 0.3 -> '0.3'."""
    return f"{float(r):g}"


def schedule_tag(spec):
    """'linear:0.1:0.5' -> 'lin0.1-0.5' (path-friendly ratio wildcard)."""
    _, start, end = spec.split(":")
    return f"lin{fmt(start)}-{fmt(end)}"


def ratio_arg(tag):
    """Ratio wildcard -> the CLI's --ratio value ('lin0.1-0.5' -> 'linear:0.1:0.5')."""
    m = re.fullmatch(r"lin([0-9.]+)-([0-9.]+)", tag)
    return f"linear:{m.group(1)}:{m.group(2)}" if m else tag


def alternatives(names):
    return "|".join(re.escape(n) for n in names)


MODELS = list(config["models"])
PRUNE = config["prune"]
RATIOS = [fmt(r) for r in PRUNE["ratios"]]
SCHEDULES = [schedule_tag(s) for s in PRUNE["schedules"]]
POL = config["policy"]
EV = config["evaluate"]
RFT_ENABLED = "rft" in config  # no rft section: no RFT targets
RFT = config["rft"] if RFT_ENABLED else {}

ESTIMATOR = "" if (POL["baseline"], POL["samples"]) == ("none", 1) else f"-{POL['baseline']}{POL['samples']}"
POLICY_ID = (
    f"{POL['penalty']}-{POL['state']}-{POL['objective']}{ESTIMATOR}-t{fmt(POL['train_ratio'])}-s{config['seed']}"
)
POLICY_RE = re.compile(
    rf"(?P<penalty>{alternatives(OPTIONS.PENALTIES)})-(?P<state>{alternatives(OPTIONS.STATES)})"
    rf"-(?P<objective>{alternatives(OPTIONS.OBJECTIVES)})"
    rf"(?:-(?P<baseline>{alternatives(OPTIONS.BASELINES)})(?P<samples>[0-9]+))?-t(?P<ratio>[0-9.]+)-s(?P<seed>[0-9]+)"
)


def policy_args(policy_id):
    """Policy wildcard -> the train command's settings (no estimator tag = the paper's: no baseline, 1 draw)."""
    args = POLICY_RE.fullmatch(policy_id).groupdict()
    return args | {"baseline": args["baseline"] or "none", "samples": args["samples"] or "1"}


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    method=alternatives(["dense"] + METHODS.names()),
    ratio=r"[0-9]+(\.[0-9]+)?|lin[0-9.]+-[0-9.]+",
    policy=re.sub(r"\(\?P<\w+>", "(?:", POLICY_RE.pattern),
    dataset=alternatives(OPTIONS.DATASETS),
    samples=r"[0-9]+",


def model_dir(model, method, ratio):
    """Checkpoint of one (model, method, ratio); method dense is the downloaded model."""
    if method == "dense":
        return rules.download_model.output[0].format(model=model)
    return rules.prune.output[0].format(model=model, method=method, ratio=ratio)


def policy_file(model):
    return rules.train_policy.output.policy.format(model=model, policy=POLICY_ID)


def method_args(method, policy):
    """The prune command's flags for what a method needs: its policy, its calibration data and options.

    A method's options live under the config key of its name (e.g. ``slicegpt:``), one CLI flag each.
    """
    spec = METHODS.get(method)
    args = []
    if spec.needs_policy:
        args += ["--policy", policy, "--which", POL["which"]]
    if spec.needs_calibration and DATA_DIR:
        args += ["--data-dir", str(Path(DATA_DIR).resolve())]
    for key, value in (config[method] if method in config else {}).items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return " ".join(shlex.quote(a) for a in args)


def rft_args():
    """The rft command's training flags from the rft section (the same for every RFT job)."""
    keys = ("seq_len", "batch_size", "lr", "epochs", "lora_r", "lora_alpha", "lora_dropout", "eval_every")
    return " ".join(f"--{k.replace('_', '-')} {RFT[k]}" for k in keys) + f" --dtype {config['dtype']}"


def variants(model):
    """(method, ratio) pairs of Table 2 for one model: dense first; schedules only for methods that take them."""
    pairs = [("dense", "0")] + [(m, r) for m in PRUNE["methods"] for r in RATIOS]
    return pairs + [(m, t) for m in PRUNE["methods"] if METHODS.get(m).per_layer for t in SCHEDULES]


def eval_file(model, method, ratio):
    return rules.evaluate.output[0].format(model=model, method=method, ratio=ratio)


def all_evals():
    return [eval_file(m, meth, r) for m in MODELS for meth, r in variants(m)]


def rft_ratios():
    return [fmt(r) for r in (RFT["ratios"] or PRUNE["ratios"])]


def rft_evals(datasets, sizes):
    return [
        rules.evaluate_rft.output[0].format(model=m, method=meth, ratio=r, dataset=d, samples=n)
        for m in MODELS
        for meth in RFT["methods"]
        for r in rft_ratios()
        for d in datasets
        for n in sizes
    ]


def no_rft_evals():
    """Dense and the pruned models RFT starts from: the 'without RFT' rows of Tables 3 and 8."""
    return [eval_file(m, "dense", "0") for m in MODELS] + [
        eval_file(m, meth, r) for m in MODELS for meth in RFT["methods"] for r in rft_ratios()
    ]


RFT_TABLES = {"table3": "first", "table8": "all"}  # RFT dataset(s) each RFT table compares


def table_inputs(table):
    """Evaluation JSONs of each table: every (method, ratio) of Table 2, or the RFT runs for RFT tables."""
    if table not in RFT_TABLES:
        return all_evals()
    datasets = RFT["datasets"][:1] if RFT_TABLES[table] == "first" else RFT["datasets"]
    return no_rft_evals() + rft_evals(datasets, [RFT["table_size"]])


def get_final_output():
    """What `all` builds: Tables 1/2 and Figure 1 per model; with RFT configured, Tables 3/8 and Figures 3/4."""
    tables = ["table2", "table1"] + (list(RFT_TABLES) if RFT_ENABLED else [])
    out = expand(rules.table.output.csv, table=tables) + expand(rules.fig1.output, model=MODELS)
    if RFT_ENABLED:
        out += rules.fig3.output + rules.fig4.output
    return out
