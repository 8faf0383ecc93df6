"""One-shot smoke test of the CUDA path on tiny random-weight LLaMA-, OPT- and Phi-shaped models (< 5 min on one GPU).

    python benchmarks/gpu_smoke.py --tokenizer DIR --data-dir DIR [--device cuda] [--out DIR] [--families llama opt phi]
    python benchmarks/gpu_smoke.py --rehearsal [--rehearsal-shape llama2-7b] [--rehearsal-layers 2 4] [--out DIR]

``--rehearsal`` runs benchmarks/scale_rehearsal.py on the device instead (every method on random-weight models of
the paper's widths, peak memory from ``torch.cuda.max_memory_allocated``; no tokenizer or data needed) and writes
``rehearsal.json`` under ``--out`` when given.

``--tokenizer`` is any directory ``AutoTokenizer.from_pretrained`` loads (e.g. a SmolLM2 checkpoint),
``--data-dir`` the benchmark data laid out like ``../shared/data`` (only ``wikitext2/`` is read). Nothing
is downloaded. Per family: build a tiny float32 model and save it as a checkpoint, then on the device

1. ``train_policy``: PruneNet policy training (``collect_states`` -> ``train_policy``, 3 episodes, ratio 0.3),
   saved with ``save_policy`` as ``prunenet train`` does;
2. ``compress/<m>``: every method registered in ``prunenet.methods.METHODS`` at run time, at ratio 0.3
   (a method that refuses the architecture with ``PruneNetError`` is SKIPped);
3. per checkpoint (dense and each compressed one): ``logits_f32/<m>`` reloads it in float32 on the device
   and on the CPU and compares the logits on two WikiText-2 test blocks of 64 tokens
   (max |device - cpu| <= 1e-3 * max(1, max |cpu logits|)); ``ppl_bf16/<m>`` reloads it in bfloat16 on the
   device, requires a finite WikiText-2 test perplexity and |NLL_bf16 - NLL_f32(cpu)| <= 0.1 nats;
4. ``rft``: LoRA recovery fine-tuning of the PruneNet checkpoint (or, without one, the first compressed one)
   in bfloat16 for 3 steps, finite losses, and the merged checkpoint reloads with its FFN widths and runs;
5. ``sweep/<m>``: ``ppl_sweep`` over ``sweep_requests`` at ratios 0.2 and 0.3 for one method.

Each step prints ``family step status seconds [detail]`` (status OK, SKIP or FAIL; a step whose package
is missing prints SKIP with ``<package> not installed``); then a summary and, last, the total seconds.
Exit status: 1 if any step FAILED (or the setup did not pass), 2 if the run could not start (no CUDA, missing
inputs), else 0.
Tracking is off (``PRUNENET_MLFLOW=0``) and progress bars are silenced (``TQDM_DISABLE=1``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = ("llama", "opt", "phi")
RATIO = 0.3
SWEEP_RATIOS = [0.2, 0.3]
EPISODES = 3
SEQ_LEN = 64  # tokens per perplexity / calibration / RFT block
PPL_BLOCKS = 2
CALIB_SAMPLES = 4
LOGIT_RTOL = 1e-3  # max |device - cpu| float32 logits, relative to max(1, max |cpu logits|)
NLL_TOL = 0.1  # nats between bfloat16 (device) and float32 (cpu) mean NLL on the same blocks
RFT_STEPS = 3
OPTIONAL = ("lm_eval", "scipy", "pandas", "matplotlib", "mlflow", "datasets", "snakemake", "peft", "accelerate")


class Skip(Exception):
    """A step that cannot run here (missing package, no upstream artifact, method refuses the architecture)."""


def missing_package(exc: ImportError) -> str | None:
    """The third-party top-level package an ImportError is about, if it is really not installed (else None)."""
    name = getattr(exc, "name", None)
    if not name:
        return None
    top = name.split(".")[0]
    if top == "prunenet":
        return None  # a broken project module is a failure, not a missing dependency
    try:
        return top if importlib.util.find_spec(top) is None else None
    except (ImportError, ValueError):
        return top


class Smoke:
    """Runs steps, prints one row each, keeps the tally."""

    def __init__(self, device: str):
        self.device = device
        self.rows: list[tuple[str, str, str, float, str]] = []

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def row(self, family: str, step: str, status: str, seconds: float, detail: str = "") -> None:
        self.rows.append((family, step, status, seconds, detail))
        print(f"{family:<6} {step:<26} {status:<4} {seconds:7.2f}  {detail}".rstrip(), flush=True)

    def skip(self, family: str, step: str, reason: str) -> None:
        self.row(family, step, "SKIP", 0.0, reason)

    def step(self, family: str, step: str, fn: Callable[[], str | None], refusal_is_skip: bool = False) -> bool:
        """Run ``fn`` (its return value is the detail); True when it passed."""
        from prunenet.errors import PruneNetError

        t0 = time.perf_counter()
        try:
            detail = fn() or ""
            self._sync()
            status = "OK"
        except Skip as exc:
            status, detail = "SKIP", str(exc)
        except ImportError as exc:
            pkg = missing_package(exc)
            if pkg is None:
                status, detail = "FAIL", self._fail(family, step, exc)
            else:
                status, detail = "SKIP", f"{pkg} not installed"
        except PruneNetError as exc:
            if refusal_is_skip:
                status, detail = "SKIP", f"refused: {exc}"
            else:
                status, detail = "FAIL", self._fail(family, step, exc)
        except Exception as exc:  # a smoke test reports every failure and goes on
            status, detail = "FAIL", self._fail(family, step, exc)
        self.row(family, step, status, time.perf_counter() - t0, detail)
        return status == "OK"

    @staticmethod
    def _fail(family: str, step: str, exc: BaseException) -> str:
        print(f"--- traceback of {family} {step} ---", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"

    def count(self, status: str) -> int:
        return sum(r[2] == status for r in self.rows)


# ------------------------------------------------------------------------------------------------ models


def tiny_config(family: str, vocab_size: int):
    """A 3-layer random config of each supported family (as tests/conftest.py::tiny_config)."""
    from transformers import LlamaConfig, OPTConfig, PhiConfig

    common = dict(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=3, num_attention_heads=4)
    common["max_position_embeddings"] = 512
    if family == "llama":
        return LlamaConfig(**common, intermediate_size=96, num_key_value_heads=2, tie_word_embeddings=True)
    if family == "opt":
        return OPTConfig(**common, ffn_dim=96, word_embed_proj_dim=64)
    if family == "phi":
        return PhiConfig(**common, intermediate_size=96, partial_rotary_factor=0.5)
    raise ValueError(family)


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


# ------------------------------------------------------------------------------------------------ one family


class Family:
    """The steps of one model family; artifacts go under ``out/<family>``."""

    def __init__(self, smoke: Smoke, family: str, args, tokenizer, texts: list[str], blocks):
        self.smoke, self.name, self.args, self.tok = smoke, family, args, tokenizer
        self.texts, self.blocks = texts, blocks  # WikiText-2 test: a prefix of the documents, its first blocks
        self.device = args.device
        self.dir = Path(args.out) / family
        self.dense = self.dir / "dense"
        self.policy: Path | None = None
        self.ckpts: dict[str, Path] = {}
        self.nll_f32: dict[str, float] = {}

    def run(self) -> None:
        s, f = self.smoke, self.name
        if not s.step(f, "build", self.build):
            return
        self.ckpts["dense"] = self.dense
        s.step(f, "train_policy", self.train_policy)
        self.compress_all()
        for name, path in list(self.ckpts.items()):
            s.step(f, f"logits_f32/{name}", lambda n=name, p=path: self.logits_f32(n, p))
            s.step(f, f"ppl_bf16/{name}", lambda n=name, p=path: self.ppl_bf16(n, p))
        s.step(f, "rft", self.rft)
        self.sweep()

    def build(self) -> str:
        import torch
        from transformers import AutoModelForCausalLM

        from prunenet.models import save_checkpoint

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(tiny_config(self.name, len(self.tok)), dtype=torch.float32).eval()
        params = sum(p.numel() for p in model.parameters())
        save_checkpoint(model, self.tok, self.dense, {"source": f"tiny-{self.name} (random)", "params": params})
        return f"{type(model).__name__}, {params:,} params (float32, cpu) -> {self.dense}"

    def train_policy(self) -> str:
        training = importlib.import_module("prunenet.training")
        from prunenet.models import load_model
        from prunenet.policy import save_policy

        cfg = training.TrainConfig(ratio=RATIO, episodes=EPISODES, seed=0)
        cfg.validate()
        model, _ = load_model(str(self.dense), device=self.device, dtype="float32")
        states = training.collect_states(model, cfg.state).to(self.device)
        del model
        result = training.train_policy(states, cfg, progress=False)
        if not all(finite(h) for h in result.history):
            raise RuntimeError(f"non-finite penalty history {result.history}")
        best = result.network().to(states.device)
        ev_policy = training.mean_penalty(states, "policy", cfg.ratio, best, 4, cfg.penalty, cfg.spectrum, 1)
        ev_random = training.mean_penalty(states, "random", cfg.ratio, None, 4, cfg.penalty, cfg.spectrum, 1)
        meta = {
            "model": str(self.dense),
            "shape": list(states.shape),
            "config": result.config,
            "history": result.history,
            "layer_penalties_last": result.layer_penalties[-1],
            "best_episode": result.best_episode,
            "seconds": result.seconds,
            "eval_penalty_policy": ev_policy,
            "eval_penalty_random": ev_random,
        }
        path = self.dir / "policy.safetensors"
        save_policy(path, self.dir / "policy.json", result.best, result.last, meta, eq3=cfg.eq3)
        self.policy = path
        return (
            f"states {tuple(states.shape)} on {states.device}; penalty {result.history[0]:.4f} -> best "
            f"{min(result.history):.4f}; eval policy {ev_policy:.4f} vs random {ev_random:.4f}"
        )

    def compress_all(self) -> None:
        s, f = self.smoke, self.name
        try:
            from prunenet.methods import METHODS
        except Exception as exc:
            s.row(f, "compress/*", "FAIL", 0.0, s._fail(f, "import prunenet.methods", exc))
            return
        if len(METHODS) == 0:
            s.skip(f, "compress/*", "no method registered")
        for name, method in METHODS.items():
            step = f"compress/{name}"
            if method.needs_policy and self.policy is None:
                s.skip(f, step, "needs a policy and train_policy did not produce one")
                continue
            s.step(f, step, lambda n=name, m=method: self.compress(n, m), refusal_is_skip=True)

    def compress(self, name: str, method) -> str:
        from prunenet.methods import PruneRequest, compress
        from prunenet.methods.pipeline import check

        request = PruneRequest(
            ratio=RATIO,
            device=self.device,
            policy=str(self.policy) if method.needs_policy else None,
            data_dir=str(self.args.data_dir),
            calib_samples=CALIB_SAMPLES,
            calib_seq_len=SEQ_LEN,
        )
        out = self.dir / name
        request = check(name, request, self.dense)  # a refusal (an unsupported family) is a skip
        meta, seconds = compress(str(self.dense), str(out), name, request, flops_seq_len=SEQ_LEN)
        self.ckpts[name] = out
        stats = meta["stats"]
        where = "cpu + offload" if method.offload else self.device
        return (
            f"{stats['params']:,} params, effective sparsity {stats['effective_sparsity']:.3f}, "
            f"method {seconds:.2f}s on {where}"
        )

    def logits_f32(self, name: str, path: Path) -> str:
        import torch
        import torch.nn.functional as F

        from prunenet.models import load_model

        ids = self.blocks
        ref_model, _ = load_model(str(path), device="cpu", dtype="float32")
        with torch.no_grad():
            ref = ref_model(input_ids=ids).logits.float()
        del ref_model
        model, _ = load_model(str(path), device=self.device, dtype="float32")
        param = next(model.parameters())
        if param.dtype != torch.float32 or param.device.type != torch.device(self.device).type:
            raise RuntimeError(f"loaded as {param.dtype} on {param.device}, asked float32 on {self.device}")
        with torch.no_grad():
            got = model(input_ids=ids.to(self.device)).logits.float().cpu()
        del model
        if not torch.isfinite(got).all():
            raise RuntimeError("non-finite logits on the device")
        scale = max(1.0, float(ref.abs().max()))
        err = float((got - ref).abs().max())
        nll = F.cross_entropy(ref[:, :-1].reshape(-1, ref.size(-1)), ids[:, 1:].reshape(-1)).item()
        self.nll_f32[name] = nll
        detail = f"max|dev-cpu| {err:.2e} (tol {LOGIT_RTOL:g} x {scale:.3g}); cpu f32 NLL {nll:.4f}"
        if err > LOGIT_RTOL * scale:
            raise RuntimeError(f"logits differ: {detail}")
        return detail

    def ppl_bf16(self, name: str, path: Path) -> str:
        import torch

        from prunenet.evaluation.ppl import perplexity
        from prunenet.models import load_model

        model, tok = load_model(str(path), device=self.device, dtype="bfloat16")
        param = next(model.parameters())
        if param.dtype != torch.bfloat16 or param.device.type != torch.device(self.device).type:
            raise RuntimeError(f"loaded as {param.dtype} on {param.device}, asked bfloat16 on {self.device}")
        r = perplexity(model, tok, self.texts, SEQ_LEN, PPL_BLOCKS, batch_size=PPL_BLOCKS, desc=f"ppl {name}")
        del model
        detail = f"ppl {r['ppl']:.1f} over {r['n_blocks']}x{r['seq_len']} tokens"
        if not finite(r["ppl"]):
            raise RuntimeError(f"non-finite perplexity: {detail}")
        if name in self.nll_f32:
            diff = abs(r["nll"] - self.nll_f32[name])
            detail += f"; |NLL bf16 - f32 cpu| {diff:.4f} (tol {NLL_TOL})"
            if diff > NLL_TOL:
                raise RuntimeError(f"bfloat16 NLL far from float32: {detail}")
        return detail

    def rft(self) -> str:
        import torch
        from transformers import AutoConfig

        from prunenet.checkpoints import per_layer_shapes
        from prunenet.models import load_model
        from prunenet.rft import finetune

        source = next((n for n in ("prunenet", *self.ckpts) if n in self.ckpts and n != "dense"), None)
        if source is None:
            raise Skip("no compressed checkpoint to fine-tune")
        src, out = self.ckpts[source], self.dir / f"{source}-rft"
        summary = finetune(
            str(src),
            str(out),
            "wikitext2",
            8,
            str(self.args.data_dir),
            seq_len=SEQ_LEN,
            batch_size=4,
            lr=1e-3,
            max_steps=RFT_STEPS,
            eval_every=RFT_STEPS + 1,
            seed=0,
            device=self.device,
            dtype="bfloat16",
            val_fraction=0.25,
            test_blocks=PPL_BLOCKS,
            micro_batch_size=2,
        )
        losses = {k: summary[k] for k in ("final_train_loss", "final_val_loss", "val_ppl_after", "test_ppl_after")}
        bad = [k for k, v in losses.items() if not finite(v)]
        if bad:
            raise RuntimeError(f"non-finite {', '.join(bad)}: {losses}")
        if summary["dtype"] != "bfloat16":
            raise RuntimeError(f"fine-tuned in {summary['dtype']}, asked bfloat16")
        model, _ = load_model(str(out), device=self.device, dtype="bfloat16")
        if per_layer_shapes.sizes(model.config) != per_layer_shapes.sizes(AutoConfig.from_pretrained(str(src))):
            raise RuntimeError("the merged checkpoint lost its per-layer FFN widths")
        with torch.no_grad():
            logits = model(input_ids=self.blocks.to(self.device)).logits
        if not torch.isfinite(logits).all():
            raise RuntimeError("the merged checkpoint gives non-finite logits")
        return (
            f"{source}: {summary['steps']} steps, train loss {summary['final_train_loss']:.3f}, val ppl "
            f"{summary['val_ppl_before']:.1f} -> {summary['val_ppl_after']:.1f}, test ppl "
            f"{summary['test_ppl_before']:.1f} -> {summary['test_ppl_after']:.1f}; merged reloads ({summary['dtype']})"
        )

    def sweep(self) -> None:
        from prunenet.methods import METHODS

        s, f = self.smoke, self.name
        names = METHODS.names()
        if self.args.sweep_method:
            name = self.args.sweep_method
        else:  # PruneNet where its policy exists, else the first method that needs no policy
            usable = [n for n in names if self.policy is not None or not METHODS.get(n).needs_policy]
            name = "prunenet" if "prunenet" in usable else (usable[0] if usable else None)
        if name is None:
            s.skip(f, "sweep", "no usable method")
            return
        if name in METHODS and METHODS.get(name).needs_policy and self.policy is None:
            s.skip(f, f"sweep/{name}", "needs a policy and train_policy did not produce one")
            return
        s.step(f, f"sweep/{name}", lambda: self.sweep_one(name), refusal_is_skip=True)

    def sweep_one(self, name: str) -> str:
        from prunenet.evaluation.sweep import ppl_sweep, sweep_requests
        from prunenet.methods import METHODS, PruneRequest
        from prunenet.methods.pipeline import check
        from prunenet.models import load_model

        method = METHODS.get(name)
        base = PruneRequest(
            ratio=SWEEP_RATIOS[0],
            device=self.device,
            policy=str(self.policy) if method.needs_policy else None,
            data_dir=str(self.args.data_dir),
            calib_samples=CALIB_SAMPLES,
            calib_seq_len=SEQ_LEN,
        )
        policies = [str(self.policy)] * len(SWEEP_RATIOS) if method.needs_policy else []
        requests = sweep_requests(base, SWEEP_RATIOS, policies)
        for request in requests:
            check(name, request)
        model, tok = load_model(str(self.dense), device=method.load_device(self.device), dtype="float32")
        points = ppl_sweep(model, tok, name, requests, self.texts, SEQ_LEN, PPL_BLOCKS, batch_size=PPL_BLOCKS)
        bad = [p["ratio"] for p in points if not finite(p["ppl"])]
        if bad or len(points) != len(SWEEP_RATIOS):
            raise RuntimeError(f"{len(points)} points, non-finite perplexity at ratios {bad}")
        return "; ".join(f"r={p['ratio']:g} ppl {p['ppl']:.1f} sparsity {p['effective_sparsity']:.3f}" for p in points)


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", help="a directory AutoTokenizer.from_pretrained loads (no download)")
    ap.add_argument("--data-dir", help="benchmark data laid out like ../shared/data (wikitext2/)")
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--out", default=None, help="scratch directory, kept (default: a temporary one, removed)")
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    ap.add_argument("--sweep-method", default=None, help="method of the ppl sweep (default prunenet, else random)")
    ap.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # development without a GPU only
    ap.add_argument("--rehearsal", action="store_true", help="run benchmarks/scale_rehearsal.py on the device instead")
    ap.add_argument("--rehearsal-shape", choices=["llama2-7b", "phi-2", "tiny"], default="llama2-7b")
    ap.add_argument("--rehearsal-layers", type=int, nargs=2, default=[2, 4], metavar="L")
    args = ap.parse_args(argv)
    if not args.rehearsal and (args.tokenizer is None or args.data_dir is None):
        ap.error("the smoke test needs --tokenizer DIR and --data-dir DIR (or pass --rehearsal)")
    return args


def rehearsal(args: argparse.Namespace) -> int:
    """The scale rehearsal on ``args.device`` (benchmarks/scale_rehearsal.py, its peak from the CUDA allocator)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale_rehearsal

    argv = ["--device", args.device, "--shape", args.rehearsal_shape, "--layers", *map(str, args.rehearsal_layers)]
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        argv += ["--out", str(Path(args.out) / "rehearsal.json")]
    return scale_rehearsal.main(argv)


def wikitext_prefix(tokenizer, data_dir: str):
    """The first WikiText-2 test documents that give PPL_BLOCKS blocks of SEQ_LEN tokens (same blocks as the
    whole split gives), and those blocks: tokenizing the whole split once per checkpoint would dominate."""
    from prunenet.data import load_texts, token_blocks

    texts = load_texts("wikitext2", "test", data_dir)
    want = 8 * SEQ_LEN * PPL_BLOCKS  # characters: ~4 per token, twice over
    n, chars = 0, 0
    while n < len(texts) and chars < want:
        chars += len(texts[n]) + 2
        n += 1
    prefix = texts[:n]
    blocks = token_blocks(tokenizer, prefix, SEQ_LEN, max_blocks=PPL_BLOCKS)
    if len(blocks) < PPL_BLOCKS or not (blocks == token_blocks(tokenizer, texts, SEQ_LEN, PPL_BLOCKS)).all():
        prefix = texts
        blocks = token_blocks(tokenizer, texts, SEQ_LEN, max_blocks=PPL_BLOCKS)
    return prefix, blocks


def header(device: str) -> None:
    import torch
    import transformers

    if device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name(torch.device(device))}, CUDA {torch.version.cuda}"
        tf32 = f", TF32 matmul {torch.backends.cuda.matmul.allow_tf32}"
    else:
        where, tf32 = f"cpu ({torch.get_num_threads()} threads)", ""
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    print(f"gpu_smoke: {versions}, device {device}: {where}{tf32}")
    present = [p for p in OPTIONAL if importlib.util.find_spec(p) is not None]
    absent = [p for p in OPTIONAL if p not in present]
    print(f"packages present: {', '.join(present) or '-'}; missing: {', '.join(absent) or '-'}")
    print(f"{'family':<6} {'step':<26} {'stat':<4} {'seconds':>7}  detail", flush=True)


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    # before torch/transformers/tqdm are imported: tracking off, no progress bars (read at import time)
    os.environ["PRUNENET_MLFLOW"] = "0"
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_smoke: torch sees no CUDA device: run on a machine with an NVIDIA GPU and a CUDA build of torch")
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_smoke: --device {args.device} but torch sees no CUDA device: pass --device cpu (development only)")
        return 2
    if args.rehearsal:
        return rehearsal(args)
    for path, what in ((Path(args.tokenizer), "--tokenizer"), (Path(args.data_dir) / "wikitext2", "--data-dir")):
        if not path.is_dir():
            print(f"gpu_smoke: {what}: {path} is not a directory")
            return 2
    scratch = args.out is None
    args.out = tempfile.mkdtemp(prefix="gpu_smoke-") if scratch else args.out
    Path(args.out).mkdir(parents=True, exist_ok=True)
    header(args.device)
    smoke = Smoke(args.device)
    setup: dict = {}

    def prepare() -> str:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.tokenizer)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        setup["tok"] = tok
        setup["texts"], setup["blocks"] = wikitext_prefix(tok, args.data_dir)
        from prunenet.methods import METHODS

        return f"vocab {len(tok)}, {len(setup['texts'])} test documents; methods: {', '.join(METHODS.names()) or '-'}"

    try:
        ready = smoke.step("-", "setup", prepare)
        if ready:
            for family in args.families:
                Family(smoke, family, args, setup["tok"], setup["texts"], setup["blocks"]).run()
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
    finally:
        if scratch:
            shutil.rmtree(args.out, ignore_errors=True)

    ok, skipped, failed = smoke.count("OK"), smoke.count("SKIP"), smoke.count("FAIL")
    print(f"summary: {ok} OK, {skipped} SKIP, {failed} FAIL")
    for family, step, status, _, detail in smoke.rows:
        if status != "OK":
            print(f"  {status} {family}/{step}: {detail}")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    bad = failed or not ready  # nothing ran without the setup: not a pass
    verdict = "FAILED" if bad else "passed"
    print(f"total {time.perf_counter() - t_start:.1f} s: smoke test {verdict} on {args.device}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
