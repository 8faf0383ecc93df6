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
from prunenet import choices as CHOICES  # noqa: E402
from prunenet.config import ConfigError, evaluate_flags, resolve  # noqa: E402
from prunenet.embedded import EMBEDDED  # noqa: E402
from prunenet.methods import METHODS  # noqa: E402
from prunenet.policy_spec import PATTERN as POLICY_PATTERN, PolicySpec  # noqa: E402
from prunenet.ratios import TAG_PATTERN, RatioSpec  # noqa: E402
from prunenet.reporting import FIGURES, TABLES  # noqa: E402
from prunenet.reporting.settings import NOTE as SETTINGS_NOTE, deviates, settings as SETTINGS_REPORT  # noqa: E402
from prunenet.reporting.specs import EACH_CALIB  # noqa: E402
from prunenet.reporting.summary import doc_text  # noqa: E402
from prunenet.reporting.targets import TABLE_SPECS  # noqa: E402

SCHEMA = ROOT / "config" / "schema.yaml"
try:  # typed --config values, models replaced by an override, overrides that change nothing refused
    _effective = resolve(
        config,
        workflow.config_settings.overwrite_config,
        workflow.config_settings.configfiles,
        load_configfile(SCHEMA),
        workflow.config_settings.config,
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
# The weights' dtype of train/prepare/prune/sweep (evaluate and rft always pass theirs): rendered only away from the
# CLI's own default, auto, so a default run's commands read as before
DTYPE_ARG = "" if config["dtype"] == "auto" else f"--dtype {config['dtype']}"
DATA_ARG = f"--data-dir {shlex.quote(str(Path(DATA_DIR).resolve()))}" if DATA_DIR else ""


CAPTION = "../report/caption.rst"  # the report's caption of a table or figure: its rule's params.caption


def caption(report):
    """A table's or figure's caption in Snakemake's report: its docstring (what it shows), one paragraph, Sphinx
    roles (``:func:`x```, which plain reStructuredText does not know) as literals."""
    return doc_text(report, "``{}``")


def ratio_tag(value):
    """A configured ratio's path wildcard: 0.3 -> '0.3', 'linear:0.1:0.5' -> 'lin0.1-0.5' (:mod:`prunenet.ratios`
    parses it; a job's wildcard goes back with ``RatioSpec.from_tag``)."""
    return RatioSpec.of(value).tag


def alternatives(names):
    return "|".join(re.escape(n) for n in names)


MODELS = list(config["models"])
SEEDS = [int(s) for s in config["seeds"]]
THREADS = config["threads"]  # per compute job; Snakemake exports it as OMP_NUM_THREADS, torch follows
PRUNE = config["prune"]
RATIOS = [ratio_tag(r) for r in PRUNE["ratios"]]
SCHEDULES = [ratio_tag(s) for s in PRUNE["schedules"]]
POL = config["policy"]
EV = config["evaluate"]
EV_FLAGS = {group: " ".join(flags) for group, flags in evaluate_flags(EV).items()}  # each group: "" when unset
PPL_BLOCKS_ARG = EV_FLAGS["ppl_blocks"]  # blocks per perplexity dataset; null = the whole test split
RFT_ENABLED = "rft" in config  # no rft section (or rft: null): no RFT targets
RFT = config["rft"] if RFT_ENABLED else {}
if config.get("large_model") and config["large_model"] not in config["models"]:
    raise WorkflowError(
        f"large_model {config['large_model']!r} is not a key of models ({', '.join(config['models'])}): name one of "
        "them (paper Tables 14/15)"
    )
TRANSFER = config["transfer"]
SWEEP = config["sweep"]
COMPARE = config["compare"]
NO_SETTING = "default"  # the setting wildcard of methods with neither a policy nor calibration data
GPUS = 1 if config["device"].startswith("cuda") else 0  # compute rules ask an executor for one GPU on CUDA
JOB = config["resources"]  # mem_mb and runtime (minutes) of a compute job, for cluster executors


def model_type(model):
    """The HF model type of a configured model where it is known before download (embedded models, local
    checkpoints); None for hub ids and .gguf files."""
    spec = config["models"][model]
    if spec in EMBEDDED:
        return EMBEDDED[spec].model_type
    cfg = Path(spec) / "config.json"
    return json.loads(cfg.read_text()).get("model_type") if cfg.is_file() else None


def supported(model, method):
    """Whether a method runs on a model: the method does not refuse its architecture (SliceGPT: Gemma 2/3)."""
    return method == "dense" or model_type(model) not in METHODS.get(method).refuses


def refusal_notes(methods, models=None):
    """One line per (model, method) the workflow skips because the method refuses the model's architecture
    (``models``: a table's models, default every configured one)."""
    return [
        f"Not run: {meth} on {m} — {meth} refuses {model_type(m)} models (see docs/methods.md, SliceGPT)."
        for m in models or MODELS
        for meth in dict.fromkeys(methods)
        if not supported(m, meth)
    ]


def compute_resources(gpu=True):
    """``resources:`` of a compute job: the configured memory and time limit, one GPU if it runs on the device."""
    return {"mem_mb": JOB["mem_mb"], "runtime": JOB["runtime"], "gpu": GPUS if gpu else 0}


def kept(path):
    """A checkpoint output: removed by Snakemake once every job reading it is done (``temp``), unless
    ``keep_checkpoints``; asking for its path as a target rebuilds and keeps it (same seed, same weights)."""
    return path if config["keep_checkpoints"] else temp(path)


def policy_id(train_ratio, **dims):
    """The configured policy trained at ``train_ratio`` (seed apart), e.g. 'ks-up-paper-t0.3'; ``dims``: any
    policy dimension that differs from the configured one (an ablation's, e.g. ``penalty="ad"``)."""
    return PolicySpec.from_config(POL, train_ratio, **dims).id


wildcard_constraints:
    model=r"[A-Za-z0-9._-]+",
    method=alternatives(["dense"] + METHODS.names()),
    ratio=TAG_PATTERN,
    policy=POLICY_PATTERN,
    setting=f"{POLICY_PATTERN}|{alternatives(CHOICES.DATASETS)}|{NO_SETTING}",
    seed=r"[0-9]+",
    dataset=alternatives(CHOICES.DATASETS),
    samples=r"[0-9]+",


def calibration(method):
    """The calibration corpus a method reads by default (its config section's ``calib_dataset``)."""
    return config[method]["calib_dataset"]


def setting(method, ratio, train_ratio=None, calib=None, **policy):
    """What besides (method, ratio, seed) names a pruned model: its policy, its calibration corpus (``calib``,
    default: the configured one), or 'default' for methods with neither.

    The policy is trained at ``train_ratio``; by default (policy.train_ratio: same, the paper's
    Tables 1/2) at the pruning ratio itself, else at the one configured ratio. A calibrated method's corpus is
    part of its path, so SliceGPT calibrated on WikiText-2 and on Alpaca (paper Table 10) live side by side.
    ``policy``: the policy's dimensions where they differ from the configured ones (:func:`policy_id`).
    """
    if method == "dense":
        return NO_SETTING
    spec = METHODS.get(method)
    if spec.needs_calibration:
        return calib or calibration(method)
    if not spec.needs_policy:
        return NO_SETTING
    if train_ratio is None:
        train_ratio = RatioSpec.from_tag(ratio).mean if POL["train_ratio"] == "same" else POL["train_ratio"]
    policy = spec.fixed_policy() | policy  # e.g. prunenet-attention's: state qkv, the paper's update
    return policy_id(train_ratio, **policy)


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


def prepared_file(model, method, setting_, seed):
    """The method's ratio-independent state from ``rule prepare`` (nothing for a method without one)."""
    if method not in PREPARED_METHODS:
        return []
    return expand(rules.prepare.output[0], model=model, method=method, setting=setting_, seed=seed)


def method_args(method, policy=None, prepared=None, calib=None):
    """The prune command's flags for what a method needs: its policy, its prepared state, calibration, options.

    A method's options live under the config key of its name (e.g. ``slicegpt:``), one CLI flag each:
    the shared calibration keys as ``--calib-samples``, its own (``Method.options``) as ``--<method>-<key>``.
    ``calib``: the calibration corpus named by the job's setting wildcard instead of the configured one.
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
    args += DTYPE_ARG.split()
    section = dict(config[method] if method in config else {})
    if calib and "calib_dataset" in section:
        section["calib_dataset"] = calib
    args += spec.section_flags(section)
    return " ".join(shlex.quote(a) for a in args)


def rft_args():
    """The rft command's training flags from the rft section (the same for every RFT job)."""
    keys = ("seq_len", "batch_size", "lr", "epochs", "lora_r", "lora_alpha", "lora_dropout", "eval_every")
    return " ".join(f"--{k.replace('_', '-')} {RFT[k]}" for k in keys) + f" --dtype {config['dtype']}"


def variants(model, methods=None):
    """(method, setting, ratio, seed) of Table 2 for one model: dense first; schedules only for methods that take them.

    ``methods``: a baseline comparison's methods at the configured ratios instead (uniform ratios only).
    """
    ratios = [(m, r) for m in (methods or PRUNE["methods"]) if supported(model, m) for r in RATIOS]
    if methods is None:
        ratios += [(m, t) for m in PRUNE["methods"] if METHODS.get(m).per_layer for t in SCHEDULES]
    out = [("dense", NO_SETTING, "0", SEEDS[0])]
    return out + [(m, setting(m, r), r, s) for m, r in ratios for s in method_seeds(m)]


def eval_file(model, method, setting_, ratio, seed):
    return rules.evaluate.output[0].format(model=model, method=method, setting=setting_, ratio=ratio, seed=seed)


def all_evals(methods=None):
    return [eval_file(m, *v) for m in MODELS for v in variants(m, methods)]
