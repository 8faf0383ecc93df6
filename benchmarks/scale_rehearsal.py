"""Rehearse every registered method at the paper's widths: cost per layer, extrapolated to LLaMA-2-7B's 32 layers.

    python benchmarks/scale_rehearsal.py [--shape llama2-7b|phi-2|tiny] [--layers 2 4] [--methods ...] [--out F]
    python benchmarks/scale_rehearsal.py --merge A.json B.json ...   # runs made apart, one table
    python benchmarks/scale_rehearsal.py ... --window-tokens 2048    # plus one case with full-length windows

Per method and layer count, a random-weight model of the shape (transformers' ``LlamaConfig`` / ``PhiConfig``)
is pruned at ratio 0.3 with ``config/paper.yaml``'s settings (merged onto config.yaml and read through
:func:`prunenet.config.resolve`, as the workflow reads them) in its own process (benchmarks/rehearsal_case.py),
calibrating on random token ids. A setting the cost is linear in (calibration windows, policy episodes) runs at
two values and is extrapolated to the configured value (:mod:`rehearsal_fit`); the table says which. Time is
CPU seconds of the method's work (``getrusage``; the machine may be shared), memory the case's peak RSS above its
footprint before the model (``torch.cuda.max_memory_allocated`` with ``--device cuda``). The last line is the
headline: how many methods are predicted to fit a 24 GB GPU at LLaMA-2-7B in bfloat16.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rehearsal_fit import GB, fit, fit_apart, fit_tail, headline, mean_per_layer, predict  # noqa: E402

RATIO = 0.3
TARGET_LAYERS = 32  # LLaMA-2-7B (Phi-2 also has 32)
SEQ = 128  # calibration tokens per window while measuring; the configured windows are counted in these units
SEQ_FLAGS = ("--calib-seq-len", "--asvd-sens-seq-len")  # the window lengths a plan sets to SEQ
# The two values a linear setting is measured at: calibration windows far enough apart that their cost stands out
# of the CPU-time noise of a shared machine (1 and 2 windows of 128 tokens did not), policy episodes at 1 and 2.
CALIB_UNITS, EPISODE_UNITS = (1, 8), (1, 2)
# Where a layer's fixed work (LLM Surgeon's K-FAC inversions, SVD-LLM's SVDs) varies by more than 7 windows' cost
# (a forward+backward; a forward and a Gram), 1 and 64 windows
WIDE_UNITS = (1, 64)
LABELS = {"llama2-7b": "LLaMA-2-7B", "phi-2": "Phi-2", "tiny": "tiny"}
# Paper Table 9(a) (A100-40GB, seconds, 30 %): PruneNet's compression time; SliceGPT's from the text beside it.
PAPER_T9A = {
    "llama2-7b": {"prunenet": "916 ± 15 (T9a)", "slicegpt": "~1740 (§5 text: 29 min)"},
    "phi-2": {"prunenet": "342 ± 8 (T9a)"},
}


@dataclass
class Plan:
    """How one method is measured: its prune/train flags, the setting varied (flag, paper value in units of the
    measured one) and a multiplier run at 1 (LLM Surgeon's shots), plus what was reduced and not scaled; ``depth``:
    how its time grows with layers (``linear``, or ``tail``: quadratic on its windows, :class:`rehearsal_fit.Tail`);
    ``apart``: a recorded stage (``stage_seconds``) of per-layer work fitted apart (:class:`rehearsal_fit.Apart`)."""

    method: str
    prune: dict[str, str]
    train: dict[str, str] = field(default_factory=dict)
    knob: str | None = None
    units: tuple[int, int] = CALIB_UNITS
    target: float = 1.0
    multiplier: tuple[str, float] | None = None
    reduced: list[str] = field(default_factory=list)
    depth: str = "linear"
    apart: str | None = None

    def argv(self, units: int, shape: str, device: str) -> tuple[list[str], list[str]]:
        prune, train = dict(self.prune), dict(self.train)
        if self.knob:
            (train if self.knob == "--episodes" else prune)[self.knob] = str(units)
        head = ["prune", "--model", shape, "--out", "unused", "--method", self.method, "--ratio", str(RATIO)]
        tail = ["--data-dir", "random-token-ids", "--seed", "0", "--device", device]
        flat = [x for kv in prune.items() for x in kv]
        train_argv = [x for kv in train.items() for x in kv] + ["--seed", "0", "--device", device]
        return head + flat + tail, train_argv


def paper_config(overlay: Path = ROOT / "config/paper.yaml") -> dict:
    """config.yaml with paper.yaml merged on, as the workflow resolves it (:func:`prunenet.config.load`)."""
    from prunenet.config import load

    return load(ROOT / "config", overlay)


def plan(name: str, cfg: dict) -> Plan:
    """The flags ``prunenet prune`` gets from the config for ``name`` (workflow/rules/common.smk method_args), then
    the rehearsal's reductions."""
    from prunenet.methods import METHODS
    from prunenet.policy_spec import PolicySpec

    spec = METHODS.get(name)
    section = cfg.get(name, {})
    p = Plan(name, dict(zip(*[iter(spec.section_flags(section))] * 2)))
    if spec.needs_policy:
        pol = cfg["policy"]
        dims = spec.fixed_policy()  # as the workflow trains it (common.smk setting): e.g. an attention state's update
        p.train = dict(zip(*[iter(shlex.split(PolicySpec.from_config(pol, RATIO, **dims).train_args))] * 2))
        p.train |= {"--gamma": str(pol["gamma"]), "--lr": str(pol["lr"]), "--eval-samples": str(pol["eval_samples"])}
        p.prune["--which"] = pol["which"]
        p.knob, p.target, p.units = "--episodes", float(pol["episodes"]), EPISODE_UNITS
    if name == "asvd":  # the sensitivity search dominates: scale its windows, shorten the statistics pass
        s = section
        p.knob, p.target, p.units = "--asvd-sens-samples", s["sens_samples"] * s["sens_seq_len"] / SEQ, CALIB_UNITS
        p.apart = "factoring"  # its SVDs: as many as the search truncates, whatever the windows
        p.reduced.append("its factoring stage's seconds fitted apart, as their mean per layer")
        p.prune |= {"--asvd-sens-seq-len": str(SEQ), "--calib-samples": str(p.units[-1]), "--calib-seq-len": str(SEQ)}
        stats = f"{s['calib_samples']}x{s['calib_seq_len']}"
        p.reduced.append(f"statistics {stats} -> {p.units[-1]}x{SEQ} tokens, not scaled")
        if s["sensitivity"] == "ppl":  # each candidate of a linear in block i runs blocks i..L-1 and the head
            p.depth = "tail"
            p.reduced.append("time quadratic in layers on its windows (blocks above each linear rerun)")
    elif name == "llm-pruner":  # 10 x 64 tokens run as configured; with 2-4 layers none would be in first..L-last
        p.prune |= {"--llm-pruner-first": "0", "--llm-pruner-last": "0"}
        p.reduced.append(f"all layers pruned (paper: {section['first']}..L-{section['last']}): an upper bound")
    elif spec.needs_calibration:
        p.knob, p.target = "--calib-samples", section["calib_samples"] * section["calib_seq_len"] / SEQ
        p.prune["--calib-seq-len"] = str(SEQ)
    if name in ("llm-surgeon", "svd-llm"):
        p.units = WIDE_UNITS
    if name == "llm-surgeon":
        p.multiplier = ("--llm-surgeon-shots", float(section["shots"]))
        p.prune["--llm-surgeon-shots"] = "1"
    return p


def layer_counts(name: str, cfg: dict, wanted: list[int]) -> list[int]:
    """The two layer counts ``name`` is measured at: ``wanted``, but for LaCo the fewest from ``min(wanted)`` up at
    which its walk (the config's C, lowest, keep_last, interval) can merge away ⌊0.3·L⌋ ≥ 1 layers in merges of C
    layers, and the next
    (paper.yaml's needs 7: 2 and 4 layers hold no 4-layer merge above layer 2 below the top one)."""
    if name != "laco":
        return wanted
    from prunenet.depth import nominal_layers
    from prunenet.errors import PruneNetError
    from prunenet.layer_collapse import check_collapse
    from prunenet.methods.laco import walk_for

    opt = cfg["laco"]

    def fits(n: int) -> bool:
        remove, walk = nominal_layers(RATIO, n), walk_for(n, opt)
        try:
            check_collapse(n, remove, walk, opt["threshold_step"])
        except PruneNetError:
            return False
        return remove >= 1 and walk.merge == opt["merge"]  # a shallower model would merge fewer than C

    low = min(wanted)
    if fits(low) and fits(max(wanted)):
        return wanted
    while not (fits(low) and fits(low + 1)):
        low += 1
    return [low, low + 1]


def run_case(case: dict, rss_cap: float, timeout: float) -> dict:
    """Run one case in a fresh process (nice 19, one thread); its own rusage comes from ``os.wait4``. A case
    over ``rss_cap`` bytes or ``timeout`` seconds is killed and reported so."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PRUNENET_MLFLOW": "0", "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "case.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps(case))
        cmd = [sys.executable, str(ROOT / "benchmarks/rehearsal_case.py"), str(spec), str(out)]
        proc = subprocess.Popen(cmd, env=env, preexec_fn=lambda: os.nice(19))
        t0, killed = time.perf_counter(), ""
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _rss(proc.pid)
            if rss > rss_cap or time.perf_counter() - t0 > timeout:
                killed = f"killed at {rss / GB:.1f} GB RSS" if rss > rss_cap else f"killed after {timeout:.0f} s"
                proc.kill()
            time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(status)
        row = {"child_cpu_s": usage.ru_utime + usage.ru_stime, "child_wall_s": time.perf_counter() - t0}
        if proc.returncode == 0 and out.exists():
            return row | json.loads(out.read_text())
        return row | {"error": killed or f"exit {proc.returncode}"}


def _rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def measure(p: Plan, shape: str, layers: list[int], device: str, rss_cap: float, timeout: float) -> dict:
    """Every (layers, units) case of one method; stops at the first failure."""
    cases = {}
    for n_layers in layers:
        for units in p.units if p.knob else (1,):
            row = _case(p, shape, n_layers, device, p.argv(units, shape, device), (rss_cap, timeout), f"n={units}")
            cases[f"L{n_layers}-n{units}"] = row | {"units": units}
            if "error" in row:
                return cases
    return cases


def window_case(p: Plan, shape: str, layers: int, device: str, tokens: int, rss_cap: float, timeout: float):
    """One case at ``layers`` and one unit with windows of ``tokens`` tokens where the plan measures SEQ: the peak
    memory a window of the configured length adds (activations, logits, attention scores grow with it; the fits at
    SEQ do not see them). Not in any fit. None for a method without such windows (or run at its configured ones)."""
    prune_argv, train_argv = p.argv(1, shape, device)
    at = [i + 1 for i, a in enumerate(prune_argv[:-1]) if a in SEQ_FLAGS and prune_argv[i + 1] == str(SEQ)]
    if not at:
        return None
    for i in at:
        prune_argv[i] = str(tokens)
    label = f"n=1, windows of {tokens} tokens"
    row = _case(p, shape, layers, device, (prune_argv, train_argv), (rss_cap, timeout), label)
    return row | {"units": 1, "window_tokens": tokens}


def _case(p: Plan, shape: str, layers: int, device: str, argv: tuple[list[str], list[str]], cap, label: str) -> dict:
    """One case in its own process (:func:`run_case`), its brief printed as it ends; the row carries its layers."""
    case = {"shape": shape, "layers": layers, "method": p.method, "device": device}
    row = run_case(case | {"prune_argv": argv[0], "train_argv": argv[1]}, *cap)
    print(f"  {p.method} L={layers} {label}: " + _brief(row), file=sys.stderr, flush=True)
    return row | {"layers": layers}


def slope_lines(results: dict) -> list[str]:
    """A method whose CPU seconds do not grow from its fewer to its more units at some layer count: the setting's
    cost is inside the run-to-run spread there, so its scaled time is noise, not a prediction (measure it further
    apart)."""
    lines = []
    for name, r in results.items():
        grid = {(c["layers"], c["units"]): c["cpu_s"] for c in r["cases"].values() if _in_grid(c) and "error" not in c}
        units = sorted({k[1] for k in grid})
        for layers in sorted({k[0] for k in grid}) if len(units) == 2 else []:
            lo, hi = grid.get((layers, units[0])), grid.get((layers, units[1]))
            if lo is not None and hi is not None and hi <= lo:
                lines.append(
                    f"{name} L{layers}: {hi:.1f} CPU-s at {units[1]} units against {lo:.1f} at {units[0]}: the "
                    "setting's cost is inside the spread, so its scaled time is not a prediction"
                )
    return lines


def _in_grid(case: dict) -> bool:
    """A case of the fitted (layers, units) grid, not a --window-tokens case (printed beside it, in no fit)."""
    return "window_tokens" not in case


def window_lines(results: dict) -> list[str]:
    """Per window case, its peak beside the same case's at SEQ tokens."""
    lines = []
    for name, r in results.items():
        for c in (c for c in r["cases"].values() if "window_tokens" in c):
            head = f"{name} L{c['layers']} n1, windows of {c['window_tokens']} tokens"
            base = r["cases"].get(f"L{c['layers']}-n1", {})
            if "error" in c or "peak_rss" not in base:
                lines.append(f"{head}: {c.get('error', f'no {SEQ}-token case to compare')}")
                continue
            lines.append(
                f"{head}: peak {_peak(c) / GB:.2f} GB against {_peak(base) / GB:.2f} GB at {SEQ} tokens "
                f"({(_peak(c) - _peak(base)) / GB:+.2f} GB, in the case's dtype; not in the predictions above)"
            )
    return lines


def _brief(row: dict) -> str:
    if "error" in row:
        return row["error"]
    return f"{row['cpu_s']:.1f} CPU-s ({row['wall_s']:.1f} s wall), peak RSS {row['peak_rss'] / GB:.2f} GB"


def host_state_per_layer(name: str, shape: str, section: dict) -> float:
    """Bytes per decoder layer of the float64 statistics a whole-model method keeps on the host whatever the
    model's device: LLM-Pruner's gradient sums (every scored weight; twice with element2's Fisher diagonal;
    commit e183dac), LLM Surgeon's K-FAC factors (A and G of down and, with attention structures, of o). A CPU
    measurement counts them (host and device are one); a GPU's peak does not."""
    from rehearsal_case import SHAPES

    cls, dims = SHAPES[shape]
    h, f, heads = dims["hidden_size"], dims["intermediate_size"], dims["num_attention_heads"]
    kv = h * dims.get("num_key_value_heads", heads) // heads
    if name == "llm-pruner":
        weights = 2 * h * h + 2 * h * kv + (3 if cls == "LlamaConfig" else 2) * h * f
        return 8.0 * weights * (2 if section.get("importance") == "element2" else 1)
    if name == "llm-surgeon":
        return 8.0 * (f * f + h * h + (2 * h * h if section.get("structures") == "ffn+attention" else 0))
    return 0.0


def summarize(p: Plan, cases: dict, offload: bool, host_per_layer: float = 0.0) -> dict:
    """The fits of one method's cases and its prediction at TARGET_LAYERS layers and the configured setting."""
    cases = {k: c for k, c in cases.items() if _in_grid(c)}
    ok = [c for c in cases.values() if "error" not in c]
    if not cases or len(ok) < len(cases) or len({c["layers"] for c in ok}) < 2:
        return {"error": next((c["error"] for c in cases.values() if "error" in c), "fewer than two layer counts")}
    grid = {(c["layers"], c["units"]): c for c in ok}
    if p.apart and any(p.apart not in c.get("stage_seconds", {}) for c in ok):
        return {"error": f"a case records no {p.apart} seconds (measured before they were): rerun it"}
    cpu = {k: c["cpu_s"] for k, c in grid.items()}
    if p.apart:  # stage seconds are wall seconds: one thread, so about its CPU seconds
        seconds = fit_apart(cpu, {k: c["stage_seconds"][p.apart] for k, c in grid.items()}, p.depth == "tail")
    else:
        seconds = (fit_tail if p.depth == "tail" else fit)(cpu)
    top = max(k[1] for k in grid)  # peak memory: a line in layers at the largest setting measured (rehearsal_fit)
    memory = fit({(k[0], 1): _peak(c) for k, c in grid.items() if k[1] == top})
    weights = fit({(k[0], 1): c["weight_bytes_fp32"] for k, c in grid.items()})
    mult = p.multiplier[1] if p.multiplier else 1.0
    target = p.target if p.knob else 1
    pred = predict(seconds, memory, weights, TARGET_LAYERS, target, offload, mult, host_per_layer)
    return {
        "seconds_per_layer": mean_per_layer(seconds, TARGET_LAYERS, target) * mult,
        "bytes_per_layer": memory.per_layer(),  # at the largest setting measured
        "params_target": (weights(TARGET_LAYERS)) / 4,
        "holds": "one layer" if offload else "whole model" + ("; statistics on the host" if host_per_layer else ""),
        "pred_cpu_s": pred.seconds,
        "pred_peak_fp32": pred.peak_fp32,
        "pred_peak_bf16": pred.peak_bf16,
        "pred_host_bf16": pred.host_bf16,
        "fits_24gb_bf16": pred.fits,
        "scaled": _scaled(p),
    }


def _scaled(p: Plan) -> str:
    parts = [f"{p.knob} {p.units[0]},{p.units[1]} -> {p.target:g}"] if p.knob else ["as configured"]
    if p.knob and p.knob != "--episodes":
        parts[0] += f" (windows of {SEQ} tokens)"
    if p.multiplier:
        parts.append(f"{p.multiplier[0]} 1 -> x{p.multiplier[1]:g}")
    return "; ".join(parts + p.reduced)


def table(results: dict, shape: str) -> str:
    """The Markdown table: measured, per layer, predicted at TARGET_LAYERS, beside the paper's Table 9(a)."""
    head = (
        "| method | scaled (measured -> configured) | CPU-s per layer count (measured) | CPU-s per layer (scaled) | "
        f"pred. CPU-s {TARGET_LAYERS} layers | peak GB per layer count (measured) | GB per layer (measured) | holds | "
        "pred. device peak fp32 GB | pred. device peak bf16 GB | pred. host GB (bf16) | fits 24 GB (bf16) | "
        "paper T9(a) s, A100 |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    paper = PAPER_T9A.get(shape, {})
    for name, r in results.items():
        s = r["summary"]
        if "error" in s:
            lines.append(f"| {name} | not measured: {s['error']} |" + " |" * 11)
            continue
        grid = [c for c in r["cases"].values() if _in_grid(c)]
        units = max(c["units"] for c in grid)
        top = [c for _, c in sorted((c["layers"], c) for c in grid if c["units"] == units)]
        cpu = ", ".join(f"L{c['layers']}: {c['cpu_s']:.1f}" for c in top)
        mem = ", ".join(f"L{c['layers']}: {_peak(c) / GB:.2f}" for c in top)
        lines.append(
            f"| {name} | {s['scaled']} | {cpu} | {s['seconds_per_layer']:.1f} | {s['pred_cpu_s']:.0f} | {mem} | "
            f"{s['bytes_per_layer'] / GB:.2f} | {s['holds']} | {s['pred_peak_fp32'] / GB:.1f} | "
            f"{s['pred_peak_bf16'] / GB:.1f} | {s.get('pred_host_bf16', 0.0) / GB:.1f} | "
            f"{'yes' if s['fits_24gb_bf16'] else 'no'} | {paper.get(name, '—')} |"
        )
    return "\n".join(lines)


def _peak(case: dict) -> float:
    """A case's peak: on the device, or the RSS above the process's footprint before the model."""
    return case["peak_cuda"] if "peak_cuda" in case else case["peak_rss"] - case["base_rss"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from prunenet.methods import METHODS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=["llama2-7b", "phi-2", "tiny"], default="llama2-7b")
    ap.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[2, 4],
        help="two decoder-layer counts (default 2 4); one count measures part of a run, to --merge with the other",
    )
    ap.add_argument("--methods", nargs="+", choices=METHODS.names(), default=METHODS.names())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, help="write every case and the predictions as JSON")
    ap.add_argument("--rss-cap-gb", type=float, default=9.0, help="kill a case whose RSS passes this (default 9)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per case before it is killed")
    ap.add_argument("--resume", action="store_true", help="keep the methods --out already holds measured")
    ap.add_argument(
        "--window-tokens",
        type=int,
        metavar="N",
        help=f"also run each method once at the fewer layers and one unit with windows of N tokens instead of {SEQ} "
        "(the configured length, e.g. 2048): the peak memory a full window adds, which is not in the fits",
    )
    ap.add_argument(
        "--window-only",
        action="store_true",
        help="run only the --window-tokens case (to --merge with a run that measured the same layers at 128 tokens)",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="print the table of these runs' --out files "
        "together, their summaries recomputed (no measuring; shape and device from the files)",
    )
    args = ap.parse_args(argv)
    if len(set(args.layers)) != len(args.layers) or len(args.layers) > 2 or min(args.layers) < 1:
        ap.error(f"--layers needs one or two different positive counts, e.g. --layers 2 4 (got {args.layers})")
    if args.window_only and not args.window_tokens:
        ap.error("--window-only runs the --window-tokens case: give --window-tokens N too")
    if args.window_tokens is not None and args.window_tokens < 1:
        ap.error(f"--window-tokens needs a positive token count, e.g. --window-tokens 2048 (got {args.window_tokens})")
    return args


def summarized(name: str, cases: dict, shape: str, device: str, cfg: dict) -> dict:
    """One method's record: its plan, its cases and their summary, computed by this code. Cases at a setting the plan
    does not measure (an older plan's, merged in from an earlier run) are left out."""
    from prunenet.methods import METHODS

    p = plan(name, cfg)
    cases = {k: c for k, c in cases.items() if c["units"] in (p.units if p.knob else (1,))}
    # a CUDA peak already leaves out what waits on the host
    host = host_state_per_layer(name, shape, cfg.get(name, {})) if device == "cpu" else 0.0
    return {"plan": p.__dict__, "cases": cases, "summary": summarize(p, cases, METHODS.get(name).offload, host)}


def merged(files: list[Path]) -> tuple[str, str, dict]:
    """(shape, device, cases per method) of several runs' JSON: a method's cases joined across files (one layer count
    measured in each, say), a later file's case replacing an earlier one's of the same layers and units."""
    runs = [json.loads(f.read_text()) for f in files]
    kinds = {(r["shape"], r["device"]) for r in runs}
    if len(kinds) != 1:
        print(
            f"--merge takes runs of one shape and device, got {sorted(kinds)}: merge each kind apart", file=sys.stderr
        )
        raise SystemExit(2)
    (shape, device), methods = kinds.pop(), {}
    for r in runs:
        for name, m in r["methods"].items():
            methods.setdefault(name, {}).update(m["cases"])
    return shape, device, methods


def stage_lines(results: dict) -> list[str]:
    """Per case, the stages' wall seconds and the matrices factored, where the method records them (ASVD: its
    window-dependent sensitivity search apart from its factoring, whose count of SVDs depends on where the search
    lands)."""
    lines = []
    for name, r in results.items():
        for key, c in sorted(r["cases"].items()):
            if "stage_seconds" not in c:
                continue
            stages = ", ".join(f"{k} {v:.1f}" for k, v in c["stage_seconds"].items())
            factored = f"; {c['factored']} factored" if "factored" in c else ""
            lines.append(f"{name} {key} stages (wall s): {stages}{factored}")
    return lines


def report(results: dict, shape: str) -> str:
    """What a run prints: the table, the methods not measured, how to read it, the headline (last line)."""
    from rehearsal_fit import Prediction

    lines = [table(results, shape)]
    unmeasured = [n for n, r in results.items() if "error" in r["summary"]]
    if unmeasured:
        lines.append(f"not measured: {', '.join(unmeasured)}")
    missed = [f"{n} {k}" for n, r in results.items() for k, c in r["cases"].items() if c.get("budget_missed")]
    if missed:
        lines.append(f"budget missed on random weights, cost measured all the same: {', '.join(missed)}")
    lines += slope_lines(results) + stage_lines(results) + window_lines(results)
    lines.append(
        f"CPU seconds of the method's work (getrusage); {TARGET_LAYERS}-layer predictions fitted on each row's "
        f"two layer counts; device peak = fixed + per-layer x {TARGET_LAYERS} less the statistics held on the host "
        "(whole model) or fixed + one layer (layer by layer), at the largest setting measured; bf16 halves the "
        "weights only"
    )
    preds = {
        n: Prediction(r["summary"]["pred_cpu_s"], r["summary"]["pred_peak_fp32"], r["summary"]["pred_peak_bf16"])
        for n, r in results.items()
        if "error" not in r["summary"]
    }
    lines.append(headline(preds, LABELS[shape]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = paper_config()
    if args.merge:  # runs made apart (other machines, other days) printed as one table
        shape, device, measured = merged(args.merge)
        results = {n: summarized(n, cases, shape, device, cfg) for n, cases in measured.items()}
        if args.out:
            args.out.write_text(json.dumps({"shape": shape, "device": device, "methods": results}, indent=1))
        print(report(results, shape))
        return 0
    results = {}
    if args.resume and args.out and args.out.exists():  # a long run continued: its measured methods kept
        done = json.loads(args.out.read_text())["methods"]
        results = {n: r for n, r in done.items() if "error" not in r["summary"]}
    for name in args.methods:
        if name in results:  # measured before: its summary recomputed by this code
            cases = results[name]["cases"]
        else:
            p, layers = plan(name, cfg), layer_counts(name, cfg, sorted(args.layers))
            cap = (args.rss_cap_gb * GB, args.timeout)
            cases = {} if args.window_only else measure(p, args.shape, layers, args.device, *cap)
            if args.window_tokens:
                w = window_case(p, args.shape, layers[0], args.device, args.window_tokens, *cap)
                cases |= {f"L{layers[0]}-n1-w{args.window_tokens}": w} if w else {}
        results[name] = summarized(name, cases, args.shape, args.device, cfg)
        if args.out:  # after every method: a long run that stops still leaves what it measured
            args.out.write_text(json.dumps({"shape": args.shape, "device": args.device, "methods": results}, indent=1))
    print(report(results, args.shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
