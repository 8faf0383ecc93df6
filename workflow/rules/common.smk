import hashlib
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.common.configfile import load_configfile
from snakemake.utils import min_version, validate

min_version("9.0")

# The registries of the prunenet package beside this workflow (torch-free imports): method names,
# what each method needs, the policy's option values. The schema's enums are tested equal to them.
ROOT = Path(workflow.current_basedir).parents[1]  # the repository: workflow/rules/ is two levels down
sys.path.insert(0, str(ROOT))
from prunenet import options as OPTIONS  # noqa: E402
from prunenet.config import ConfigError, resolve  # noqa: E402
from prunenet.methods import METHODS  # noqa: E402
from prunenet.reporting import TABLES  # noqa: E402
from prunenet.reporting.tables import PAPER_TASKS  # noqa: E402

SCHEMA = ROOT / "config" / "schema.yaml"
try:  # typed --config values, models replaced by an override, overrides that change nothing refused
    _effective = resolve(
        config, workflow.config_settings.overwrite_config, workflow.config_settings.configfiles, load_configfile(SCHEMA)
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_effective)
validate(config, str(SCHEMA))
# Every job records which configuration produced it (prunenet.provenance); an environment variable, not a rule
# param, so changing one section does not rerun the jobs it does not touch.
os.environ["PRUNENET_CONFIG_HASH"] = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


envvars:
    "PRUNENET_CONFIG_HASH",  # passed on to jobs of distributed executors too


PY = config["python"] or sys.executable  # the interpreter running snakemake has prunenet installed
DATA_DIR = config["data_dir"]
if DATA_DIR and not Path(DATA_DIR).is_dir():
    raise WorkflowError(
        f"data_dir {DATA_DIR!r} does not exist: point it at the benchmark data (e.g. ../shared/data) "
        "or set it to null to use the hub"
    )
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
SEEDS = [int(s) for s in config["seeds"]]
THREADS = config["threads"]  # per compute job; Snakemake exports it as OMP_NUM_THREADS, torch follows
PRUNE = config["prune"]
RATIOS = [fmt(r) for r in PRUNE["ratios"]]
SCHEDULES = [schedule_tag(s) for s in PRUNE["schedules"]]
POL = config["policy"]
EV = config["evaluate"]
RFT_ENABLED = "rft" in config  # no rft section (or rft: null): no RFT targets
RFT = config["rft"] if RFT_ENABLED else {}
TRANSFER = config["transfer"]
SWEEP = config["sweep"]
COMPARE = config["compare"]
NO_SETTING = "default"  # the setting wildcard of methods without a policy
GPUS = 1 if config["device"].startswith("cuda") else 0  # compute rules ask an executor for one GPU on CUDA
JOB = config["resources"]  # mem_mb and runtime (minutes) of a compute job, for cluster executors


def compute_resources(gpu=True):
    """``resources:`` of a compute job: the configured memory and time limit, one GPU if it runs on the device."""
    return {"mem_mb": JOB["mem_mb"], "runtime": JOB["runtime"], "gpu": GPUS if gpu else 0}


def kept(path):
    """A checkpoint output: removed by Snakemake once every job reading it is done (``temp``), unless
    ``keep_checkpoints``; asking for its path as a target rebuilds and keeps it (same seed, same weights)."""
    return path if config["keep_checkpoints"] else temp(path)


ESTIMATOR = "" if (POL["baseline"], POL["samples"]) == ("none", 1) else f"-{POL['baseline']}{POL['samples']}"
EQ3 = "" if POL["eq3"] == OPTIONS.EQ3_READINGS[0] else f"-{POL['eq3']}"
POLICY_RE = re.compile(
    rf"(?P<penalty>{alternatives(OPTIONS.PENALTIES)})-(?P<state>{alternatives(OPTIONS.STATES)})"
    rf"-(?P<objective>{alternatives(OPTIONS.OBJECTIVES)})(?:-(?P<eq3>{alternatives(OPTIONS.EQ3_READINGS[1:])}))?"
    rf"(?:-(?P<baseline>{alternatives(OPTIONS.BASELINES)})(?P<samples>[0-9]+))?-t(?P<ratio>[0-9.]+)"
)


POLICY_PATTERN = re.sub(r"\(\?P<\w+>", "(?:", POLICY_RE.pattern)  # the same, without named groups


def policy_id(train_ratio):
    """The configured policy trained at ``train_ratio`` (seed apart): e.g. 'ks-up-paper-t0.3'."""
    return f"{POL['penalty']}-{POL['state']}-{POL['objective']}{EQ3}{ESTIMATOR}-t{fmt(train_ratio)}"


def policy_args(policy):
    """Policy wildcard -> the train command's settings (absent tags = the paper's: coded Eq. 3, no baseline, 1 draw)."""
    args = POLICY_RE.fullmatch(policy).groupdict()
    return args | {
        "eq3": args["eq3"] or OPTIONS.EQ3_READINGS[0],
        "baseline": args["baseline"] or "none",
        "samples": args["samples"] or "1",
    }


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    method=alternatives(["dense"] + METHODS.names()),
    ratio=r"[0-9]+(\.[0-9]+)?|lin[0-9.]+-[0-9.]+",
    policy=POLICY_PATTERN,
    setting=f"{POLICY_PATTERN}|{NO_SETTING}",
    seed=r"[0-9]+",
    dataset=alternatives(OPTIONS.DATASETS),
    samples=r"[0-9]+",


def mean_ratio(ratio):
    """A ratio wildcard's mean ratio: '0.2' -> 0.2, 'lin0.1-0.5' -> 0.3 (what a schedule's policy trains at)."""
    m = re.fullmatch(r"lin([0-9.]+)-([0-9.]+)", ratio)
    return (float(m.group(1)) + float(m.group(2))) / 2 if m else float(ratio)


def setting(method, ratio, train_ratio=None):
    """What besides (method, ratio, seed) names a pruned model: its policy, or 'default' without one.

    The policy is trained at ``train_ratio``; by default (policy.train_ratio: same, the paper's
    Tables 1/2) at the pruning ratio itself, else at the one configured ratio.
    """
    if method == "dense" or not METHODS.get(method).needs_policy:
        return NO_SETTING
    if train_ratio is None:
        train_ratio = mean_ratio(ratio) if POL["train_ratio"] == "same" else POL["train_ratio"]
    return policy_id(train_ratio)


def method_seeds(method):
    """Seeds a method runs with: every seed, except dense (deterministic) and methods whose only
    randomness is their calibration sample (SliceGPT) unless calibration_seeds is 'all'."""
    if method == "dense":
        return SEEDS[:1]
    if METHODS.get(method).stochastic or config["calibration_seeds"] == "all":
        return SEEDS
    return SEEDS[:1]


def model_dir(model, method, ratio, setting_=NO_SETTING, seed=None):
    """Checkpoint of one (model, method, setting, ratio, seed); method dense is the downloaded model."""
    if method == "dense":
        return rules.download_model.output[0].format(model=model)
    return rules.prune.output[0].format(model=model, method=method, setting=setting_, ratio=ratio, seed=seed)


def policy_file(model, policy, seed):
    return rules.train_policy.output.policy.format(model=model, policy=policy, seed=seed)


PREPARED_METHODS = [name for name, m in METHODS.items() if m.prepare is not None]


def prepared_file(model, method, seed):
    """The method's ratio-independent state from ``rule prepare`` (nothing for a method without one)."""
    if method not in PREPARED_METHODS:
        return []
    return expand(rules.prepare.output[0], model=model, method=method, seed=seed)


def method_args(method, policy=None, prepared=None):
    """The prune command's flags for what a method needs: its policy, its prepared state, calibration, options.

    A method's options live under the config key of its name (e.g. ``slicegpt:``), one CLI flag each:
    the shared calibration keys as ``--calib-samples``, its own (``Method.options``) as ``--<method>-<key>``.
    """
    spec = METHODS.get(method)
    args = []
    if spec.needs_policy:
        args += (["--policy", policy] if policy else []) + ["--which", POL["which"]]
    for path in [prepared] if isinstance(prepared, str) else list(prepared or []):
        args += ["--prepared", path]
    if spec.needs_calibration and DATA_DIR:
        args += ["--data-dir", str(Path(DATA_DIR).resolve())]
    if PRUNE["ffn_multiple"] != 1:  # PruneNet's kept FFN widths rounded: every method's budget follows
        args += ["--ffn-multiple", str(PRUNE["ffn_multiple"])]
    own = {o.name: o.flag(method) for o in spec.options}  # method options: --<method>-<key>
    for key, value in (config[method] if method in config else {}).items():
        args += [own.get(key, f"--{key.replace('_', '-')}"), str(value)]
    return " ".join(shlex.quote(a) for a in args)


def rft_args():
    """The rft command's training flags from the rft section (the same for every RFT job)."""
    keys = ("seq_len", "batch_size", "lr", "epochs", "lora_r", "lora_alpha", "lora_dropout", "eval_every")
    return " ".join(f"--{k.replace('_', '-')} {RFT[k]}" for k in keys) + f" --dtype {config['dtype']}"


def variants(model, methods=None):
    """(method, setting, ratio, seed) of Table 2 for one model: dense first; schedules only for methods that take them.

    ``methods``: a baseline comparison's methods at the configured ratios instead (uniform ratios only).
    """
    ratios = [(m, r) for m in (methods or PRUNE["methods"]) for r in RATIOS]
    if methods is None:
        ratios += [(m, t) for m in PRUNE["methods"] if METHODS.get(m).per_layer for t in SCHEDULES]
    out = [("dense", NO_SETTING, "0", SEEDS[0])]
    return out + [(m, setting(m, r), r, s) for m, r in ratios for s in method_seeds(m)]


def eval_file(model, method, setting_, ratio, seed):
    return rules.evaluate.output[0].format(model=model, method=method, setting=setting_, ratio=ratio, seed=seed)


def all_evals(methods=None):
    return [eval_file(m, *v) for m in MODELS for v in variants(m, methods)]


COMPARE_TABLES = ("table4", "table5", "baselines")  # every method on PruneNet's parameter budget


def compare_methods(table):
    """The methods a baseline table compares (config ``compare``; baselines: null = every registered method)."""
    return COMPARE[table] or METHODS.names()


def table_tasks(table):
    """The task columns of a table: the paper's for Tables 4/5 (those evaluated), else every evaluated task."""
    if table not in PAPER_TASKS:
        return EV["tasks"]
    return [t for t in PAPER_TASKS[table] if t in EV["tasks"]]


for _table in PAPER_TASKS:
    if not table_tasks(_table):
        raise WorkflowError(
            f"{_table} reports {', '.join(PAPER_TASKS[_table])} but evaluate.tasks has none of them: add them"
        )


def transfer_evals():
    """Table 6: each transfer policy applied at its target ratios, and the same-ratio policy at those ratios."""
    out = []
    for m in MODELS:
        for item in TRANSFER:
            for r in map(fmt, item["to"]):
                for s in SEEDS:
                    out.append(eval_file(m, "prunenet", setting("prunenet", r, item["from"]), r, s))
                    out.append(eval_file(m, "prunenet", setting("prunenet", r, float(r)), r, s))
    return [eval_file(m, "dense", NO_SETTING, "0", SEEDS[0]) for m in MODELS] + list(dict.fromkeys(out))


SP = config["speed"]


def speed_threads():
    """Every core of a local run, so the measuring job runs alone; on an executor without a core total (a
    cluster: each job gets its own node share), the compute jobs' ``threads``."""
    try:
        cores = workflow.cores
    except WorkflowError:
        return THREADS
    return cores if isinstance(cores, int) and 0 < cores < 4096 else THREADS


SPEED_ARGS = (
    f"--batch-sizes {' '.join(map(str, SP['batch_sizes']))} --prompt-len {SP['prompt_len']} "
    f"--gen-len {SP['gen_len']} --warmup {SP['warmup']} --repeats {SP['repeats']} --dtype {config['dtype']}"
)


def speed_methods():
    """Table 9's methods: configured, else those of Table 2 and the baseline comparisons (as the sweep)."""
    return config["speed"]["methods"] or sweep_methods()


def speed_file(model, method, setting_, ratio, seed):
    return rules.speed.output[0].format(model=model, method=method, setting=setting_, ratio=ratio, seed=seed)


def speed_files(model):
    """Dense and every Table 9 method at the speed ratios, first seed (speed depends on shapes, not draws)."""
    runs = [("dense", NO_SETTING, "0")]
    runs += [(m, setting(m, fmt(r)), fmt(r)) for m in speed_methods() for r in config["speed"]["ratios"]]
    return [speed_file(model, m, st, r, SEEDS[0]) for m, st, r in runs]


def rft_ratios():
    return [fmt(r) for r in (RFT["ratios"] or PRUNE["ratios"])]


def rft_runs():
    """(model, method, setting, ratio, seed) fine-tuned: the first seed of each configured method and ratio."""
    return [(m, meth, setting(meth, r), r, SEEDS[0]) for m in MODELS for meth in RFT["methods"] for r in rft_ratios()]


def rft_evals(datasets, sizes):
    return [
        rules.evaluate_rft.output[0].format(model=m, method=meth, setting=st, ratio=r, seed=s, dataset=d, samples=n)
        for m, meth, st, r, s in rft_runs()
        for d in datasets
        for n in sizes
    ]


def no_rft_evals():
    """Dense and the pruned models RFT starts from: the 'without RFT' rows of Tables 3 and 8."""
    return [eval_file(m, "dense", NO_SETTING, "0", SEEDS[0]) for m in MODELS] + [eval_file(*run) for run in rft_runs()]


RFT_TABLES = {"table3": "first", "table8": "all"}  # RFT dataset(s) each RFT table compares


def table_inputs(table):
    """Evaluation JSONs of each table: Table 2's runs, the transfer runs (Table 6), or the RFT runs."""
    if table == "table6":
        return transfer_evals()
    if table == "table9":
        return [f for m in MODELS for f in speed_files(m)]
    if table in COMPARE_TABLES:
        return all_evals(compare_methods(table))
    if table not in RFT_TABLES:
        return all_evals()
    datasets = RFT["datasets"][:1] if RFT_TABLES[table] == "first" else RFT["datasets"]
    return no_rft_evals() + rft_evals(datasets, [RFT["table_size"]])


def sweep_methods():
    """The figure's methods: configured, else every method of Table 2 and of the baseline tables."""
    if SWEEP["methods"]:
        return SWEEP["methods"]
    return list(dict.fromkeys(PRUNE["methods"] + [m for t in COMPARE_TABLES for m in compare_methods(t)]))


def sweep_policies(model, method, seed):
    """The per-ratio policies a policy method's sweep needs (none for other methods)."""
    if not METHODS.get(method).needs_policy:
        return []
    return [policy_file(model, setting(method, fmt(r)), seed) for r in SWEEP["ratios"]]


def sweep_files(model):
    return [
        rules.sweep.output[0].format(model=model, method=m, seed=s) for m in sweep_methods() for s in method_seeds(m)
    ]


def get_final_output():
    """What `all` builds: Tables 1/2/4/5/6/9, the baselines table, Figure 1, the perplexity sweep and the
    speed-up figure per model;
    with RFT, Tables 3/8, Figures 3/4."""
    tables = ["table2", "pairs", "table1", *COMPARE_TABLES, "table9"] + (["table6"] if TRANSFER else [])
    tables += list(RFT_TABLES) if RFT_ENABLED else []
    out = expand(rules.table.output.csv, table=tables) + expand(rules.fig1.output, model=MODELS)
    out += expand(rules.ppl_vs_ratio.output, model=MODELS) + expand(rules.speedup.output, model=MODELS)
    if RFT_ENABLED:
        out += rules.fig3.output + rules.fig4.output
    return out
