"""Weight sharing: per-layer 1-D k-means codebooks (Deep Compression, Han et al. 2016, Sec. 3).

Centroids start linearly spaced between the layer's min and max weight, the
initialisation the paper found best (Sec. 3.2: it keeps the rare large weights
represented). The clustering is exact Lloyd iteration in 1-D: with sorted
centroids the nearest one is found by bisection on the midpoints, so a layer of
a million weights clusters in milliseconds; the result equals scikit-learn's
``KMeans(init=<linear>, n_init=1, algorithm="lloyd")`` (checked by the tests).
Codebook fine-tuning is the paper's shared-gradient update (Sec. 3.3): each
centroid moves by the sum of the gradients of the weights that share it.
:func:`least_squares_codebook` is its data-aware, label-free counterpart: with the
assignments held, a layer's output is linear in its centroids, so the centroids
that minimise the output error on calibration activations solve a K x K system.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SqueezelabError


def linear_init(values: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` centroids linearly spaced over [min, max] of ``values`` (float64)."""
    values = values.double()
    return torch.linspace(float(values.min()), float(values.max()), k, dtype=torch.float64)


def assign(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted ``centroids`` for every value (ties go to the lower one)."""
    mids = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(values.double(), mids, right=False)


def kmeans_1d(values: torch.Tensor, k: int, init: torch.Tensor | None = None,
              max_iter: int = 1000, relocate_empty: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor; returns (sorted float64 centroids, int64 labels).

    In 1-D every cluster is a contiguous run of the sorted values, so one Lloyd
    step is a bisection of the midpoints plus prefix sums: O(k log n), not O(n k).
    Lloyd stops when no label changes. With ``relocate_empty`` an empty cluster
    (linear init leaves many in the sparse tails) is then moved into the cluster
    with the largest squared error, which is split, and Lloyd runs again; without
    it empty clusters keep their centroid, which is what scikit-learn does not do
    (it relocates to far points), so compare with scikit-learn on data without empties.
    """
    values = values.detach().flatten().double()
    xs = np.sort(values.numpy())
    prefix = np.concatenate([[0.0], np.cumsum(xs)])
    init = linear_init(values, k) if init is None else init.double()
    centroids = np.sort(init.numpy())

    def bounds(c: np.ndarray) -> np.ndarray:
        return np.concatenate([[0], np.searchsorted(xs, (c[1:] + c[:-1]) / 2, side="right"), [xs.size]])

    prefix2 = np.concatenate([[0.0], np.cumsum(xs * xs)])

    def lloyd(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        edges = bounds(c)
        for _ in range(max_iter):
            counts = edges[1:] - edges[:-1]
            sums = prefix[edges[1:]] - prefix[edges[:-1]]
            c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
            new_edges = bounds(c)
            if np.array_equal(new_edges, edges):
                break
            edges = new_edges
        return c, edges

    centroids, edges = lloyd(centroids)
    if relocate_empty:
        for _ in range(k):
            counts = edges[1:] - edges[:-1]
            distinct = np.unique(xs).size
            if counts.min() > 0 or np.count_nonzero(counts) >= distinct:
                break
            sse = (prefix2[edges[1:]] - prefix2[edges[:-1]]) - (prefix[edges[1:]] - prefix[edges[:-1]]) ** 2 / np.maximum(counts, 1)
            worst = int(np.argmax(sse))
            lo, hi = xs[edges[worst]], xs[edges[worst + 1] - 1]
            empty = int(np.flatnonzero(counts == 0)[0])
            centroids[empty] = lo + (hi - lo) * 0.25
            centroids[worst] = lo + (hi - lo) * 0.75
            centroids, edges = lloyd(np.sort(centroids))
    centroids = torch.from_numpy(centroids)
    return centroids, assign(values, centroids)


def _segment_argmin(values: np.ndarray, starts: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mins = np.minimum.reduceat(values, starts)
    hits = np.flatnonzero(values == mins[owner])
    first = hits[np.unique(owner[hits], return_index=True)[1]]
    return mins, first


def optimal_kmeans_1d(values: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Globally optimal weighted 1-D k-means of sorted distinct ``values`` (float64 centroids).

    Dynamic programming over the sorted values (Wang & Song 2011, "Ckmeans.1d.dp"), with
    divide-and-conquer on the monotone split points, vectorised level by level:
    O(k n log n) for n values.
    """
    n = values.size
    shift = float(np.average(values, weights=weights))
    x = values - shift
    P = np.concatenate([[0.0], np.cumsum(weights)])
    S = np.concatenate([[0.0], np.cumsum(weights * x)])
    Q = np.concatenate([[0.0], np.cumsum(weights * x * x)])

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # one cluster of points a..b-1
        return np.maximum((Q[b] - Q[a]) - (S[b] - S[a]) ** 2 / (P[b] - P[a]), 0.0)

    prev = np.full(n + 1, np.inf)
    prev[1:] = cost(np.zeros(n, dtype=np.int64), np.arange(1, n + 1))
    splits = np.zeros((k + 1, n + 1), dtype=np.int64)
    for j in range(2, k + 1):
        cur = np.full(n + 1, np.inf)
        lo, hi = np.array([j]), np.array([n])
        opt_lo, opt_hi = np.array([j - 1]), np.array([n - 1])
        while lo.size:
            mid = (lo + hi) // 2
            counts = np.minimum(opt_hi, mid - 1) - opt_lo + 1
            starts = np.cumsum(counts) - counts
            owner = np.repeat(np.arange(mid.size), counts)
            cand = np.repeat(opt_lo, counts) + np.arange(int(counts.sum())) - np.repeat(starts, counts)
            mins, first = _segment_argmin(prev[cand] + cost(cand, mid[owner]), starts, owner)
            best = cand[first]
            cur[mid], splits[j, mid] = mins, best
            left, right = mid - 1 >= lo, mid + 1 <= hi
            lo, hi = np.concatenate([lo[left], mid[right] + 1]), np.concatenate([mid[left] - 1, hi[right]])
            opt_lo, opt_hi = np.concatenate([opt_lo[left], best[right]]), np.concatenate([best[left], opt_hi[right]])
        prev = cur
    centroids, end = np.zeros(k), n
    for j in range(k, 0, -1):
        start = splits[j, end] if j > 1 else 0
        centroids[j - 1] = (S[end] - S[start]) / (P[end] - P[start]) + shift
        end = start
    return centroids


def optimal_codebook(values: torch.Tensor, k: int, max_points: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Near-optimal 1-D k-means: exact DP on the distinct values (or on ``max_points`` equal-width
    histogram bins, each at its mean, when there are more), then Lloyd on the raw values."""
    values = values.detach().flatten().double()
    distinct, counts = torch.unique(values, return_counts=True)
    if distinct.numel() > max_points:
        lo, hi = float(values.min()), float(values.max())
        bins = ((values - lo) / (hi - lo) * max_points).long().clamp(max=max_points - 1)
        counts = torch.bincount(bins, minlength=max_points)
        sums = torch.bincount(bins, weights=values, minlength=max_points)
        keep = counts > 0
        distinct, counts = sums[keep] / counts[keep], counts[keep]
    init = optimal_kmeans_1d(distinct.numpy(), counts.double().numpy(), k)
    return kmeans_1d(values, k, init=torch.from_numpy(init), relocate_empty=False)


def share_weights(weight: torch.Tensor, mask: torch.Tensor, bits: int, reserve_zero: bool,
                  method: str = "optimal") -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the kept weights of one layer into a ``2**bits`` codebook.

    Args:
        weight: the layer's weight tensor.
        mask: bool, True where the weight is kept (pruned weights are not clustered).
        bits: code width; the codebook has ``2**bits`` float32 entries.
        reserve_zero: make entry 0 exactly 0.0 (sparse layers need it for the
            filler entries of the relative index, as in the original Deep Compression file).
        method: "linear" (the paper: linear init + Lloyd, empty clusters relocated) or
            "optimal" (exact 1-D k-means by dynamic programming, polished by Lloyd).

    A layer with at most ``k`` distinct kept values gets exactly those values as its
    codebook, so re-encoding an already shared model at the same width is lossless.

    Returns:
        (codebook float32 of length 2**bits, codes int64 of the kept weights in C order).
    """
    kept = weight.detach().flatten()[mask.flatten()].double()
    size = 1 << bits
    k = size - 1 if reserve_zero else size
    if kept.numel() == 0:
        return torch.zeros(size, dtype=torch.float32), torch.zeros(0, dtype=torch.int64)
    distinct = torch.unique(kept)
    if distinct.numel() <= k:  # already shared (e.g. re-encoding the Deep Compression file): exact
        centroids = torch.cat([distinct, distinct[-1:].expand(k - distinct.numel())])
    elif method == "linear":
        centroids, _ = kmeans_1d(kept, k)
    elif method == "optimal":
        centroids, _ = optimal_codebook(kept, k)
    else:
        raise SqueezelabError(f"unknown codebook method {method!r}; use 'optimal' or 'linear'")
    codebook32 = centroids.float()
    codes = assign(kept, codebook32.double())
    if reserve_zero:
        codebook32 = torch.cat([torch.zeros(1), codebook32])
        codes = codes + 1
    return codebook32, codes


def shared_gradient(codes: torch.Tensor, grad: torch.Tensor, size: int) -> torch.Tensor:
    """Gradient of each centroid: the sum of the gradients of the weights using it (Sec. 3.3, Fig. 3)."""
    return torch.bincount(codes.flatten(), weights=grad.detach().flatten().double(), minlength=size).float()


def finetune_codebook(codebook: torch.Tensor, codes: torch.Tensor, grad: torch.Tensor, lr: float,
                      frozen: tuple[int, ...] = ()) -> torch.Tensor:
    """One SGD step of the codebook with the shared gradient; entries in ``frozen`` (e.g. the 0.0) stay put."""
    step = lr * shared_gradient(codes, grad, codebook.numel())
    if frozen:
        step[list(frozen)] = 0.0
    return codebook - step


def least_squares_codebook(code_map: torch.Tensor, cov: torch.Tensor, cross: torch.Tensor, init: torch.Tensor,
                           frozen: tuple[int, ...] = (), ridge: float = 1e-6, chunk: int = 32) -> torch.Tensor:
    """Centroids minimising a layer's mean squared output error, assignments held (data-aware Sec. 3.3).

    With ``W[o, j] = c[code_map[o, j]]`` and centred inputs ``x`` (J features: in-channels x kernel taps),
    output ``o`` is ``sum_k c_k sum_{j: a(o,j)=k} x_j``, linear in ``c``. The error
    ``E sum_o (W[o] . x - t_o)^2`` is minimised by ``G c = r`` with
    ``G[k, l] = sum_o sum_{a(o,j)=k, a(o,j')=l} cov[j, j']`` and ``r[k] = sum_o sum_{a(o,j)=k} cross[j, o]``.

    Args:
        code_map: (O, J) int64 codebook index of every weight (pruned weights point at a frozen 0.0 entry).
        cov: (J, J) covariance of the layer's inputs.
        cross: (J, O) covariance of the inputs with the target outputs (e.g. the uncompressed layer's).
        init: the k-means codebook; entries no weight uses, and the ridge, pull towards it.
        frozen: entries that keep their value (the reserved 0.0 of a sparse layer).
        ridge: Tikhonov weight relative to the mean diagonal of ``G``.
    """
    size = init.numel()
    cov, cross = cov.double(), cross.double()
    gram = torch.zeros(size, size, dtype=torch.float64)
    for start in range(0, code_map.shape[0], chunk):
        onehot = torch.nn.functional.one_hot(code_map[start:start + chunk], size).double()  # (o, J, K)
        gram += torch.einsum("ojk,ojl->kl", onehot, torch.matmul(cov, onehot))
    rhs = torch.bincount(code_map.flatten(), weights=cross.t().flatten(), minlength=size)
    free = torch.ones(size, dtype=torch.bool)
    free[list(frozen)] = False
    c0 = init.double()
    g = gram[free][:, free]
    r = rhs[free] - gram[free][:, ~free] @ c0[~free]
    lam = ridge * float(g.diagonal().mean()) + 1e-12
    out = c0.clone()
    out[free] = torch.linalg.solve(g + lam * torch.eye(int(free.sum()), dtype=torch.float64), r + lam * c0[free])
    return out.float()
