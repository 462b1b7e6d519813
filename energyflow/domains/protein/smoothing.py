"""GGS's graph-based smoothing of the guidance predictor (Kirjner et al., ICLR 2024).

A predictor trained on a few thousand sequences is rugged: a single substitution can move
its score far, and gradient guidance finds those cliffs. GGS smooths it on a graph of
sequences around the task file and retrains it on the smoothed scores:

1. **Nodes**: the task file's sequences, then single substitutions of them (a random
   position and residue, round-robin over the file's sequences; repeats discarded) until
   ``nodes`` distinct sequences (GGS: 250,000; here 50,000 by default, for the CPU).
2. **Scores**: the plain predictor's (:func:`~energyflow.domains.protein.models.train_predictor`)
   on every node, the file's own sequences included, as GGS does.
3. **Graph**: each node's ``k`` nearest nodes by Hamming distance (default
   ``floor(sqrt(nodes)) + 1``, GGS's rule), made symmetric (the union); GGS's code weights
   an edge by its distance, and so does this one.
4. **Smoothing**: Tikhonov on the symmetric normalised Laplacian ``L``: the smoothed
   scores solve ``(I + gamma L) y = s`` (``gamma = 1``, GGS's ``tik-gamma-1``), by SciPy's
   conjugate gradients (``I + gamma L`` is symmetric positive definite, eigenvalues in
   ``[1, 1 + 2 gamma]``).
5. **Retraining**: a fresh :class:`~energyflow.domains.protein.models.FitnessCNN` on
   ``(nodes, y)``.

The result is cached like the other models (the key hashes both recipes and the data
files). :data:`PREDICTORS` names the kinds the design takes: ``"plain"``, ``"smoothed"``
and ``"blend"`` (the mean of the two).

Example:
    >>> import numpy as np
    >>> from scipy.sparse import csr_matrix
    >>> w = csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=float))  # a path a - b - c
    >>> s = np.array([0.0, 3.0, 0.0])
    >>> y = tikhonov_smooth(w, s, gamma=1.0)
    >>> bool(y[1] < 3.0 and y[0] > 0.0), round(float(y[0]), 6) == round(float(y[2]), 6)
    (True, True)
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from energyflow.domains.protein import models as _models
from energyflow.domains.protein.data import ALPHABET, TASKS, load_task
from energyflow.errors import InvalidValueError
from energyflow.registry import Registry
from energyflow.validation import to_int

__all__ = ["SMOOTHING_RECIPE", "PREDICTORS", "PredictorMean", "single_mutants", "knn_graph", "tikhonov_smooth",
           "train_smoothed_predictor"]

#: The smoothing recipe (GGS: 250,000 nodes, ``tik-gamma-1``); ``k`` None is ``floor(sqrt(nodes)) + 1``.
#: ``steps``/``batch_size``/``lr``/``weight_decay``/``seed`` are the retrained predictor's.
SMOOTHING_RECIPE: dict[str, Any] = {"nodes": 50_000, "gamma": 1.0, "k": None, "steps": 2000, "batch_size": 256,
                                    "lr": 1e-3, "weight_decay": 1e-4, "seed": 0}


def single_mutants(tokens: Tensor, nodes: int, generator: torch.Generator) -> Tensor:
    """``tokens`` ``(N, L)`` (distinct) followed by distinct single substitutions of them, ``nodes`` rows in all.

    Round-robin over the ``N`` sequences: each round gives every one of them one random
    (position, residue) substitution; substitutions that repeat a sequence already present
    (or the same residue) are discarded, as GGS's ``ham1`` exploration does. Where the
    one-substitution neighbourhood has fewer than ``nodes`` sequences, the rounds stop once
    200 in a row found nothing new (fewer rows come back).

    Returns:
        Tensor: ``(M, L)`` int64 tokens, ``M <= nodes``, the given ones first.
    """
    tokens = tokens.long()
    n, length = tokens.shape
    nodes = min(int(nodes), n + n * length * (len(ALPHABET) - 1))
    seen = {bytes(row) for row in tokens.to(torch.uint8).numpy()}
    if len(seen) != n:
        raise InvalidValueError(f"the {n} sequences repeat ({len(seen)} distinct): deduplicate them first")
    out = [tokens]
    have, idle = n, 0
    while have < nodes and idle < 200:
        pos = torch.randint(length, (n,), generator=generator)
        aa = torch.randint(len(ALPHABET), (n,), generator=generator)
        cand = tokens.clone()
        cand[torch.arange(n), pos] = aa
        keep = []
        for i, row in enumerate(cand.to(torch.uint8).numpy()):
            key = bytes(row)
            if key not in seen:
                seen.add(key)
                keep.append(i)
                if have + len(keep) == nodes:
                    break
        if keep:
            out.append(cand[keep])
            have += len(keep)
        idle = 0 if keep else idle + 1
    return torch.cat(out)


def knn_graph(tokens: Tensor, k: int, chunk: int = 1024) -> Any:
    """The symmetric ``k``-nearest-neighbour graph of sequences under the Hamming distance.

    Args:
        tokens (Tensor): ``(N, L)`` distinct integer tokens.
        k (int): neighbours per node (itself excluded), ``1 <= k < N``.
        chunk (int): rows per distance block (memory ``chunk * N`` floats).

    Returns:
        scipy.sparse.csr_matrix: ``(N, N)`` weights, ``w_ij`` the Hamming distance where
        ``j`` is among ``i``'s ``k`` nearest or ``i`` among ``j``'s (GGS's weighting), else 0.
    """
    from scipy.sparse import csr_matrix

    n, length = tokens.shape
    if not 1 <= k < n:
        raise InvalidValueError(f"k must lie in [1, {n - 1}] for {n} sequences, got {k}")
    onehot = torch.nn.functional.one_hot(tokens.long(), len(ALPHABET)).reshape(n, -1).float()
    rows, cols, dist = [], [], []
    for start in range(0, n, chunk):
        block = onehot[start:start + chunk]
        same = block @ onehot.T  # positions that agree, (chunk, N)
        idx = torch.arange(start, start + len(block))
        same[torch.arange(len(block)), idx] = -1.0  # never one's own neighbour
        agree, nb = same.topk(k, dim=1)
        rows.append(idx.repeat_interleave(k))
        cols.append(nb.reshape(-1))
        dist.append((length - agree).reshape(-1))
    r, c = torch.cat(rows).numpy(), torch.cat(cols).numpy()
    d = torch.cat(dist).double().numpy()
    w = csr_matrix((d, (r, c)), shape=(n, n))
    return w.maximum(w.T).tocsr()


def tikhonov_smooth(weights: Any, scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Solves ``(I + gamma L) y = scores`` with ``L`` the symmetric normalised Laplacian of ``weights``.

    Args:
        weights: ``(N, N)`` symmetric non-negative sparse weights (no self loops).
        scores (np.ndarray): ``(N,)``.
        gamma (float): the smoothing strength (> 0).

    Returns:
        np.ndarray: ``(N,)`` float64 smoothed scores.
    """
    from scipy.sparse import identity
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import cg

    if not 0 < gamma < math.inf:
        raise InvalidValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    s = np.asarray(scores, dtype=np.float64)
    lap = laplacian(weights.astype(np.float64), normed=True)
    a = identity(len(s), format="csr") + gamma * lap
    y, info = cg(a, s, rtol=1e-8, maxiter=1000)
    if info != 0:  # the spectrum lies in [1, 1 + 2 gamma]: CG converges in a few dozen steps
        raise RuntimeError(f"conjugate gradients did not converge (info={info})")
    return y


def train_smoothed_predictor(task: str, *, cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
                             retrain: bool = False, base_options: dict[str, Any] | None = None,
                             **options: Any) -> _models.FitnessCNN:
    """The task's guidance predictor smoothed on a sequence graph and retrained (cached).

    Args:
        task: ``"medium"`` or ``"hard"``.
        base_options: recipe overrides of the plain predictor (:func:`train_predictor`).
        options: overrides of :data:`SMOOTHING_RECIPE`.

    ``model.metrics`` holds the plain predictor's metrics under ``"plain"`` and the same
    measures of the smoothed one (``spearman_outside``, ``mae_outside``, ``spearman_top``),
    plus the graph's size.
    """
    data = load_task(task)
    base_recipe = _models._recipe(_models.PREDICTOR_RECIPE, base_options or {})
    r = _models._recipe(SMOOTHING_RECIPE, options)
    nodes = to_int(r["nodes"], "nodes")
    if nodes <= len(data):
        raise InvalidValueError(f"nodes must exceed the task's {len(data)} sequences, got {nodes}")
    if not 0 < float(r["gamma"]) < math.inf:
        raise InvalidValueError(f"gamma must be a finite number > 0, got {r['gamma']!r}")
    base = _models.train_predictor(task, cache=cache, cache_dir=cache_dir, **(base_options or {}))
    key = _models._key("smoothed", {"base": base_recipe, "smoothing": r},
                       _models._file_hash(TASKS[task], "aav_ground_truth.csv"))

    def train() -> _models.FitnessCNN:
        gen = torch.Generator().manual_seed(int(r["seed"]))
        tokens = single_mutants(data.tokens(), nodes, gen)
        k = int(r["k"]) if r["k"] is not None else int(math.floor(math.sqrt(len(tokens)))) + 1
        scores = _models.predict(base, tokens)
        weights = knn_graph(tokens, k)
        smoothed = tikhonov_smooth(weights, scores, float(r["gamma"]))
        model = _models._fit_cnn(tokens, smoothed, r).eval()
        model.metrics = {**_models.outside_metrics(model, data), "nodes": int(len(tokens)), "k": k,
                         "edges": int(weights.nnz // 2), "plain": base.metrics}
        return model

    return _models._cached(_models._path(cache, cache_dir, f"aav-smoothed-{task}-{key}.pt"), key,
                           lambda c: _models.FitnessCNN(**c), train, f"the smoothed AAV {task} predictor", retrain)


class PredictorMean(nn.Module):
    """The mean of several fitness predictors' raw scores (tokens or probabilities in, ``(B,)`` out).

    Args:
        members (list[nn.Module]): the predictors (e.g. the plain and the smoothed one).
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise InvalidValueError("a predictor mean needs at least one member")
        self.members = nn.ModuleList(members)
        self.metrics: dict[str, Any] = {}

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def _blend(task: str, plain: dict[str, Any] | None = None, smoothing: dict[str, Any] | None = None,
           **kw: Any) -> PredictorMean:
    data = load_task(task)
    base = _models.train_predictor(task, **kw, **(plain or {}))
    smooth = train_smoothed_predictor(task, base_options=plain, **kw, **(smoothing or {}))
    model = PredictorMean([base, smooth]).eval().requires_grad_(False)
    model.metrics = {**_models.outside_metrics(model, data), "plain": base.metrics,
                     "smoothed": {k: v for k, v in smooth.metrics.items() if k != "plain"}}
    return model


def _plain(task: str, plain: dict[str, Any] | None = None, smoothing: dict[str, Any] | None = None,
           **kw: Any) -> _models.FitnessCNN:
    return _models.train_predictor(task, **kw, **(plain or {}))


def _smoothed(task: str, plain: dict[str, Any] | None = None, smoothing: dict[str, Any] | None = None,
              **kw: Any) -> _models.FitnessCNN:
    return train_smoothed_predictor(task, base_options=plain, **kw, **(smoothing or {}))


#: Predictors by name: ``name -> (task, plain=None, smoothing=None, **cache options) -> nn.Module``
#: (``"blend"``: the mean of the plain and the smoothed predictors' scores, a :class:`PredictorMean`);
#: ``plain`` overrides :data:`~energyflow.domains.protein.models.PREDICTOR_RECIPE` (for the
#: smoothed one too: its starting point), ``smoothing`` overrides :data:`SMOOTHING_RECIPE`.
PREDICTORS: Registry = Registry("predictor")
PREDICTORS.register("plain", _plain)
PREDICTORS.register("smoothed", _smoothed)
PREDICTORS.register("blend", _blend)
