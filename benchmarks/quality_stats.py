"""The paired statistics of the quality benchmark (issue 21) and the compact per-node record.

A *paired difference* compares two models on the same seed (and, per node, on the same test
nodes): ``d_s = acc_A(s) - acc_B(s)`` for each of the ``n`` seeds both have. Formulas:

- **t interval over seeds** (:func:`t_interval`): ``mean(d) ± t_{0.975, n-1} · sd(d) / √n``,
  ``sd`` the sample standard deviation (ddof=1); none for ``n < 2``.
- **Welch interval** (:func:`welch_interval`), unpaired, where seeds cannot pair (their records
  ran on different kinds of CPU, whose bf16 kernels round differently): ``mean(a) - mean(b) ±
  t_{0.975, ν} · sqrt(s_a²/n_a + s_b²/n_b)`` over each row's seeds, ``ν`` the Welch-Satterthwaite
  degrees of freedom (``scipy.stats.ttest_ind(equal_var=False)``); none below 2 seeds a side.
- **Minimum detectable difference over seeds** (:func:`mdd_seeds`), a paired two-sided t test
  at α = 0.05 with power 0.8, using the observed ``sd(d)``:
  ``MDD = (t_{1-α/2, n-1} + t_{power, n-1}) · sd(d) / √n`` (the usual normal-approximation
  sample-size formula with t quantiles in place of z; none for ``n < 2``).
- **Minimum detectable difference of a test set** (:func:`mdd_nodes`), what ``N`` test nodes
  alone allow for one seed: two accuracies ``p`` measured on ``N`` nodes each, as if independent
  (the two-proportion z test): ``MDD = (z_{1-α/2} + z_{power}) · sqrt(2 p (1 - p) / N)``. Two
  models on the *same* nodes disagree on fewer nodes than independent ones would, so a paired
  test can do better than this; it is a reference for the size of the test set, not a bound.
- **Paired bootstrap over test nodes** (:func:`paired_bootstrap`): node ``i`` of seed ``s``
  gives ``c_A(s, i) - c_B(s, i)`` (``c``: 1 if the prediction is right); a resample draws ``N``
  nodes with replacement, the *same* nodes for both models and every seed, and its statistic is
  the mean over seeds of the per-seed accuracy differences on those nodes -- i.e. the mean over
  the drawn nodes of ``D(i) = mean_s (c_A(s, i) - c_B(s, i))``. The interval is the percentile
  interval (2.5 %, 97.5 %) of 2000 resamples from a fixed seed (``scipy.stats.bootstrap``,
  ``method="percentile"``). It holds the models fixed: it measures test-set noise, not seed
  noise.

A record keeps a stage's per-node test correctness as :func:`pack_correct`'s
``{"n", "order", "bits"}``: ``n`` nodes, ``order`` the first 16 hex digits of the SHA-1 of the
node ids (int64 little-endian, ascending), ``bits`` ``base64(np.packbits(correct))``. Two vectors
pair only when ``n`` and ``order`` agree (:func:`aligned`).
"""
from __future__ import annotations

import base64
import hashlib
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA, POWER = 0.05, 0.8
N_RESAMPLES, BOOT_SEED = 2000, 0


def t_interval(diffs: Sequence[float], level: float = LEVEL) -> Dict[str, float]:
    """Mean and ``level`` t interval of paired differences ``diffs`` (one per seed):
    ``mean ± t_{(1+level)/2, n-1} · sd / √n`` with the sample ``sd`` (ddof=1).

    Returns ``{"n", "mean", "sd", "lo", "hi"}``; ``sd``, ``lo``, ``hi`` are NaN for ``n < 2``
    (``mean`` too for ``n = 0``)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "sd": math.nan, "lo": math.nan, "hi": math.nan}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half}


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL
                   ) -> Dict[str, float]:
    """Unpaired ``mean(a) - mean(b)`` with its Welch ``level`` t interval (``a``, ``b``: one
    accuracy per seed of each row, any seeds). Returns ``{"n_a", "n_b", "mean", "df", "lo",
    "hi"}``; ``df``, ``lo``, ``hi`` are NaN when a side has fewer than 2 values (``mean`` too
    when one is empty)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = {"n_a": len(x), "n_b": len(y), "mean": math.nan, "df": math.nan, "lo": math.nan,
           "hi": math.nan}
    if len(x) and len(y):
        out["mean"] = float(x.mean() - y.mean())
    if len(x) >= 2 and len(y) >= 2:
        res = stats.ttest_ind(x, y, equal_var=False)
        ci = res.confidence_interval(level)
        out.update(df=float(res.df), lo=float(ci.low), hi=float(ci.high))
    return out


def mdd_seeds(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable paired difference over ``n`` seeds whose differences have sample
    standard deviation ``sd``: ``(t_{1-alpha/2, n-1} + t_{power, n-1}) · sd / √n``; NaN for
    ``n < 2`` or a NaN ``sd``."""
    if n < 2 or math.isnan(sd):
        return math.nan
    q = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(q * sd / math.sqrt(n))


def mdd_nodes(p: float, n_nodes: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable difference of two accuracies ``p`` on ``n_nodes`` test nodes each
    (two-proportion z test): ``(z_{1-alpha/2} + z_{power}) · sqrt(2 p (1-p) / N)``; NaN when
    ``n_nodes`` is 0 or ``p`` NaN."""
    if not n_nodes or math.isnan(p):
        return math.nan
    q = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(q * math.sqrt(2 * p * (1 - p) / n_nodes))


def order_hash(node_id: np.ndarray) -> str:
    """First 16 hex digits of the SHA-1 of ``node_id`` as int64 little-endian bytes."""
    return hashlib.sha1(np.ascontiguousarray(node_id, dtype="<i8").tobytes()).hexdigest()[:16]


def pack_correct(node_id: np.ndarray, correct: np.ndarray) -> Dict[str, object]:
    """The record entry of one stage's per-node test correctness: ``{"n": N, "order":
    order_hash(node_id), "bits": base64(packbits(correct))}``. Shapes: ``node_id`` int64
    ``[N]`` (ascending), ``correct`` bool ``[N]``; ValueError if they differ in length."""
    node_id, correct = np.asarray(node_id), np.asarray(correct, dtype=bool)
    if node_id.shape != correct.shape or node_id.ndim != 1:
        raise ValueError(f"node_id {node_id.shape} and correct {correct.shape} must be [N]")
    return {"n": int(len(correct)), "order": order_hash(node_id),
            "bits": base64.b64encode(np.packbits(correct)).decode("ascii")}


def unpack_correct(entry: Dict[str, object]) -> np.ndarray:
    """Bool ``[n]`` of a :func:`pack_correct` entry."""
    raw = np.frombuffer(base64.b64decode(entry["bits"]), dtype=np.uint8)
    return np.unpackbits(raw, count=int(entry["n"])).astype(bool)


def aligned(entries: Sequence[Dict[str, object]]) -> List[np.ndarray]:
    """The correctness vectors of ``entries`` (several stages, runs or seeds of one test set),
    unpacked. Raises ValueError naming the node counts and order hashes when they do not all
    agree: vectors of different node orders must never be paired."""
    keys = sorted({(int(e["n"]), str(e["order"])) for e in entries})
    if len(keys) > 1:
        raise ValueError("node orders differ: " + ", ".join(f"{n} nodes order {h}"
                                                            for n, h in keys))
    return [unpack_correct(e) for e in entries]


def paired_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray],
                     n_resamples: int = N_RESAMPLES, seed: int = BOOT_SEED,
                     level: float = LEVEL) -> Tuple[float, float, float]:
    """Paired bootstrap over test nodes of the accuracy difference A - B, pooled over seeds
    (module docstring). ``a[s]``, ``b[s]``: bool ``[N]`` correctness of seed ``s``'s two models
    on the same nodes in the same order (:func:`aligned`). Returns ``(observed difference,
    lo, hi)``: the observed mean over seeds of ``acc_A - acc_B`` and the percentile interval.
    Raises ValueError when there is no seed or the vectors differ in length."""
    if not a or len(a) != len(b):
        raise ValueError(f"need one (A, B) pair per seed, got {len(a)} and {len(b)}")
    if len({len(v) for v in (*a, *b)}) != 1:
        raise ValueError("correctness vectors differ in length: " +
                         ", ".join(str(len(v)) for v in (*a, *b)))
    per_node = np.mean([np.asarray(x, float) - np.asarray(y, float) for x, y in zip(a, b)],
                       axis=0)
    res = stats.bootstrap((per_node,), np.mean, n_resamples=n_resamples, confidence_level=level,
                          method="percentile", vectorized=True,
                          random_state=np.random.default_rng(seed))
    ci = res.confidence_interval
    return float(per_node.mean()), float(ci.low), float(ci.high)
