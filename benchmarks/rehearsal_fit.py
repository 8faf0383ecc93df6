"""The scale rehearsal's arithmetic: fit cost against layers (and a linear setting), extrapolate, judge the fit.

Model: a measured cost y (CPU seconds, peak bytes) at L decoder layers and n units of a setting the method's cost
is linear in (calibration windows, policy episodes) is y = a + b·L + c·n + d·L·n, fitted exactly from 2 × 2
measurements (or y = a + b·L from two layer counts when nothing is scaled). Why bilinear: a per-layer cost that
itself grows with the calibration tokens (a layer's forward pass) is d, work done once per layer whatever the
tokens (an SVD, an eigendecomposition) is b, so scaling a setting up does not also scale the work it does not drive.

A method whose per-window work reruns the layers above each one it measures (ASVD's perplexity sensitivities: every
candidate of a linear in block i runs blocks i…L−1 and the head) is quadratic in depth on its windows:
y = a + b·L + n·(f·L + e·L(L+1)/2) (:class:`Tail`), again four unknowns fitted exactly from the 2 × 2 grid: the
window slope at each layer count separates the head's passes (f, one per block's linears) from the blocks' (e,
L(L+1)/2 of them).

Peak memory is fitted against layers alone, at the largest setting measured: windows and episodes are streamed
(a setting's units do not pile up in memory), and the bilinear term of a peak is RSS noise that 2048× extrapolation
would blow up; what a method keeps per calibration window is stated apart. On the device a whole-model method holds
every layer (fixed + per-layer × L, at L = 32), less the float64 statistics it keeps on the host whatever the model's
device (LLM-Pruner's gradient sums, LLM Surgeon's K-FAC factors: counted in a CPU measurement, where host and device
are one); a layer-by-layer method (``Method.offload``) holds one (fixed + one layer, at L = 1), the model waiting
on the host. bfloat16: the weights take half their float32 bytes; the method's own working memory is kept at its
float32 size (statistics in float32: an upper bound). The host column is what waits there: the held statistics,
or (layer by layer) the model in bfloat16.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 10**9
FIT_LIMIT = 24 * GB  # "a 24 GB GPU", read as 24·10⁹ bytes (a 24 GiB card has 7 % more)


@dataclass(frozen=True)
class Bilinear:
    """y = a + b·L + c·n + d·L·n."""

    a: float
    b: float
    c: float = 0.0
    d: float = 0.0

    def __call__(self, layers: float, n: float = 1.0) -> float:
        return self.a + self.b * layers + self.c * n + self.d * layers * n

    def per_layer(self, n: float = 1.0) -> float:
        """What one more layer costs at ``n`` units."""
        return self.b + self.d * n


def fit(points: dict[tuple[int, float], float]) -> Bilinear:
    """The exact fit through (layers, n) -> y at two layer counts and one or two values of n."""
    layers = sorted({p[0] for p in points})
    ns = sorted({p[1] for p in points})
    if len(layers) != 2 or len(ns) > 2 or len(points) != len(layers) * len(ns):
        raise ValueError(f"need a full grid of 2 layer counts x 1 or 2 values of n, got {sorted(points)}")
    (l1, l2) = layers

    def line(n: float) -> tuple[float, float]:  # (intercept, slope) in L at n
        slope = (points[(l2, n)] - points[(l1, n)]) / (l2 - l1)
        return points[(l1, n)] - slope * l1, slope

    if len(ns) == 1:
        return Bilinear(*line(ns[0]))
    (n1, n2) = ns
    (i1, s1), (i2, s2) = line(n1), line(n2)
    c, d = (i2 - i1) / (n2 - n1), (s2 - s1) / (n2 - n1)
    return Bilinear(i1 - c * n1, s1 - d * n1, c, d)


@dataclass(frozen=True)
class Tail:
    """y = a + b·L + n·(f·L + e·L(L+1)/2): per-layer work, plus per window f per layer and e per block pass."""

    a: float
    b: float
    f: float
    e: float

    def __call__(self, layers: float, n: float = 1.0) -> float:
        return self.a + self.b * layers + n * (self.f * layers + self.e * layers * (layers + 1) / 2)


def fit_tail(points: dict[tuple[int, float], float]) -> Tail:
    """The exact :class:`Tail` through a full grid of two layer counts × two values of n."""
    layers, ns = sorted({p[0] for p in points}), sorted({p[1] for p in points})
    if len(layers) != 2 or len(ns) != 2 or len(points) != 4:
        raise ValueError(f"need a full grid of 2 layer counts x 2 values of n, got {sorted(points)}")
    (l1, l2), (n1, n2) = layers, ns
    # per-window slope at each layer count: s(L) = f·L + e·L(L+1)/2, two equations in f and e
    s1, s2 = ((points[(k, n2)] - points[(k, n1)]) / (n2 - n1) for k in (l1, l2))
    t1, t2 = l1 * (l1 + 1) / 2, l2 * (l2 + 1) / 2
    e = (s2 * l1 - s1 * l2) / (t2 * l1 - t1 * l2)
    f = (s1 - e * t1) / l1
    # what is left at n1 is a + b·L, a line through the two layer counts
    r1, r2 = (points[(k, n1)] - n1 * (f * k + e * k * (k + 1) / 2) for k in (l1, l2))
    b = (r2 - r1) / (l2 - l1)
    return Tail(r1 - b * l1, b, f, e)


@dataclass(frozen=True)
class Apart:
    """``model`` fitted on the cost less one stage of per-layer work whose seconds vary between cases by more than
    the setting moves them, and that stage added back as ``g`` seconds per layer (its mean over the cases): y =
    model(L, n) + g·L. Why: ASVD factors one SVD per projection its rank search truncates, and which projections
    it lands on differs from case to case (2 or 3 at one layer: 186 s against 143), enough to move a window slope
    measured between two cases by a tenth; fitted apart, that spread stays in a per-layer term."""

    model: Bilinear | Tail
    g: float

    def __call__(self, layers: float, n: float = 1.0) -> float:
        return self.model(layers, n) + self.g * layers


def fit_apart(points: dict[tuple[int, float], float], stage: dict[tuple[int, float], float], tail: bool) -> Apart:
    """:class:`Apart`: ``fit`` (or ``fit_tail``) through ``points`` less ``stage`` (the stage's seconds per case),
    the stage's mean seconds per layer added back."""
    model = (fit_tail if tail else fit)({k: y - stage[k] for k, y in points.items()})
    return Apart(model, sum(stage[k] / k[0] for k in points) / len(points))


def mean_per_layer(model: Bilinear | Tail | Apart, layers: int, n: float) -> float:
    """What a layer costs on average in a ``layers``-layer model at ``n`` units (Bilinear: b + d·n at any depth)."""
    return (model(layers, n) - model(0, n)) / layers


@dataclass(frozen=True)
class Prediction:
    """One method's extrapolation to the target model (``layers`` decoder layers, ``n`` units of its setting)."""

    seconds: float  # CPU seconds of the method's work, times its multiplier (e.g. LLM Surgeon's shots)
    peak_fp32: float  # bytes on the device with float32 weights
    peak_bf16: float  # bytes with bfloat16 weights (working memory kept at float32 size)
    host_bf16: float = 0.0  # bytes waiting on the host beside it (bfloat16 weights)

    @property
    def fits(self) -> bool:
        return self.peak_bf16 <= FIT_LIMIT


def predict(
    seconds: Bilinear | Tail | Apart,
    memory: Bilinear,
    weights: Bilinear,
    layers: int,
    n: float,
    layer_by_layer: bool,
    multiplier: float = 1.0,
    host_per_layer: float = 0.0,
) -> Prediction:
    """Extrapolate to ``layers`` layers and ``n`` units. ``memory``: peak bytes above the process's footprint
    before the model (weights included), a line in layers; ``weights``: float32 weight bytes against layers;
    ``host_per_layer``: bytes of statistics per layer a whole-model method keeps on the host."""
    held = 1 if layer_by_layer else layers
    fp32 = memory(held) - host_per_layer * held
    host = weights(layers) / 2 if layer_by_layer else host_per_layer * layers
    return Prediction(multiplier * seconds(layers, n), fp32, fp32 - weights(held) / 2, host)


def headline(predictions: dict[str, Prediction], shape_label: str) -> str:
    """The last printed line: how many measured methods are predicted to fit a 24 GB GPU in bfloat16."""
    fit_ = sum(p.fits for p in predictions.values())
    return f"methods predicted to fit 24 GB at {shape_label} bf16: {fit_} of {len(predictions)}"
