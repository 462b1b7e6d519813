"""AAV inverse design with the DSL: ``V + observe(fitness high | predictor(soft decode(z))) + repulsion``.

The paper's conditional sampler (Algorithm 3) on the latent: Langevin with eps(t)
(``tau* = 0.9``, ``eps_max = 0.1``, ``dt = 0.01``) from noise at ``t = 0`` to ``tau_s``
(1.7 medium, 1.3 hard), Euler-Maruyama, on

- the learned potential ``V`` (an energy: density ``exp(-V / eps)``),
- :class:`FitnessObservation`: ``-log N(target; f(z), zeta^2)`` where ``f(z)`` is the
  guidance predictor's normalised fitness of the VAE decoder's residue probabilities
  ``softmax(decode(z))`` (the soft decoding); tempered by eps(t), so the drift carries
  ``eps(t) / zeta^2`` as the reference's does; target 1 (the top of the normalised
  range), ``zeta`` 0.01 medium, 0.009 hard;
- optionally a repulsion among the batch (tempered): ``"quadratic"``, the paper's
  ``W = -strength * sum_{i<j} ||z_i - z_j||^2`` (a push from the batch centroid whose force
  grows with the batch; the paper bounds it by clamping the latents to ``[-1, 1]`` after
  every step, ``clamp=1``), or ``"rbf"``, ``W = strength / (B - 1) * sum_{i<j}
  exp(-||z_i - z_j||^2 / (2 h^2))``, whose force stays bounded as the batch grows.

Selection and scoring follow GGS: decode (argmax) -> deduplicate -> the top ``top`` by the
predictor (on the hard sequences) -> the oracle's normalised fitness, diversity and
novelty (:func:`~energyflow.domains.protein.metrics.design_metrics`). With
``min_distance`` > 1 the top ``top`` are taken greedily with at least that Levenshtein
distance between any two (:func:`select_top`); with ``min_diversity`` the predictor's
score is traded for distance (greedy maximal marginal relevance) with the least weight
that brings the set's mean pairwise distance to the target (:func:`select_diverse`); the
default is GGS's plain top-k.

Example:
    >>> cfg = DesignConfig(task="hard")
    >>> cfg.zeta, cfg.t_end, cfg.n, cfg.top
    (0.009, 1.3, 512, 128)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import attrs
import numpy as np
import torch
from torch import Tensor, nn

from energyflow.domains.protein import data as _data
from energyflow.domains.protein.domain import ProteinDomain, write_sequences
from energyflow.domains.protein.metrics import design_metrics, levenshtein_matrix, mean_pairwise, novelty
from energyflow.domains.protein.models import FitnessCNN, predict, train_oracle
from energyflow.domains.protein.smoothing import PREDICTORS
from energyflow.energies.base import Energy
from energyflow.energies.interaction import RBFInteraction, Repulsion
from energyflow.energies.observe import observe
from energyflow.errors import InvalidTypeError, InvalidValueError
from energyflow.registry import Registry
from energyflow.spaces import Euclidean
from energyflow.validation import integer, real

__all__ = ["PUBLISHED", "REPULSIONS", "ClampedEuclidean", "DesignConfig", "DesignResult", "FitnessObservation", "PAPER",
           "design", "design_run", "parse_repulsion", "plot_tradeoff", "select_diverse", "select_top", "summarise"]

#: The paper's per-task sampling settings: (zeta, tau_s).
PAPER = {"medium": {"zeta": 0.01, "t_end": 1.7}, "hard": {"zeta": 0.009, "t_end": 1.3}}


class ClampedEuclidean(Euclidean):
    """R^d whose states are clamped to ``[-bound, bound]`` after every step (the paper's latent clamp).

    The clamp is the Euclidean projection onto the box; the source noise is left as it
    is (the paper starts from unclamped Gaussian noise).
    """

    def __init__(self, event_shape: tuple[int, ...] | int, bound: float = 1.0) -> None:
        super().__init__(event_shape)
        if not (isinstance(bound, (int, float)) and 0 < float(bound) < math.inf):
            raise InvalidValueError(f"clamp bound must be a finite number > 0, got {bound!r}")
        self.bound = float(bound)

    def project(self, x: Tensor) -> Tensor:
        return x.clamp(-self.bound, self.bound)

    def __repr__(self) -> str:
        return f"ClampedEuclidean(event_shape={self.event_shape}, bound={self.bound:g})"


class FitnessObservation(Energy):
    """``-log N(target; f(z), zeta^2)`` per latent, ``f(z)`` = normalised predicted fitness of ``softmax(decode(z))``.

    Args:
        predictor (nn.Module): residue probabilities ``(B, L, 20)`` -> raw scores ``(B,)``
            (a :class:`~energyflow.domains.protein.models.FitnessCNN`; frozen).
        vae (nn.Module): with ``decode(z) -> logits (B, L, 20)`` (frozen).
        target (float): the wanted normalised fitness (1: the ground truth's best).
        zeta (float): the likelihood's standard deviation in normalised units.

    Shapes:
        z: ``(B, latent_dim)`` -> ``(B,)``.
    """

    coupling = "tempered"

    def __init__(self, predictor: nn.Module, vae: nn.Module, target: float = 1.0, zeta: float = 0.01) -> None:
        super().__init__()
        for what, m in (("predictor", predictor), ("vae", vae)):
            if not isinstance(m, nn.Module):
                raise InvalidTypeError(f"{what} must be an nn.Module, got {type(m).__name__}")
        if isinstance(zeta, bool) or not isinstance(zeta, (int, float)) or not 0 < float(zeta) < math.inf:
            raise InvalidValueError(f"zeta (the likelihood's scale) must be a finite number > 0, got {zeta!r}")
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(float(target)):
            raise InvalidValueError(f"target must be a finite number, got {target!r}")
        self.predictor, self.vae = predictor.requires_grad_(False), vae.requires_grad_(False)
        self.target, self.zeta = float(target), float(zeta)
        self.likelihood = observe(torch.tensor([self.target]), forward=lambda p: p, noise=self.zeta,
                                  name=f"observe(fitness={self.target:g})")
        self._label = f"FitnessObservation(target={self.target:g}, zeta={self.zeta:g})"

    def fitness(self, z: Tensor) -> Tensor:
        """The normalised predicted fitness ``(B,)`` of the soft decoding of ``z``."""
        probs = torch.softmax(self.vae.decode(z), dim=-1)
        return (self.predictor(probs) - _data.FITNESS_MIN) / (_data.FITNESS_MAX - _data.FITNESS_MIN)

    def forward(self, z: Tensor) -> Tensor:
        return self.likelihood(self.fitness(z).unsqueeze(-1))


def _quadratic(strength: float, batch: int, bandwidth: float | None) -> Energy:
    return Repulsion(sigma=1.0 / math.sqrt(strength))


def _rbf(strength: float, batch: int, bandwidth: float | None) -> Energy:
    if bandwidth is None:
        raise InvalidValueError("rbf repulsion needs a bandwidth")
    return RBFInteraction(bandwidth=bandwidth, strength=strength / max(batch - 1, 1))


#: Repulsion kinds: ``name -> (strength, batch size, bandwidth) -> Energy``.
REPULSIONS = Registry("repulsion")
REPULSIONS.register("quadratic", _quadratic)
REPULSIONS.register("rbf", _rbf)


def _task_default(name: str) -> Callable[[Any], float]:
    return lambda self: PAPER[self.task][name]


@attrs.frozen
class DesignConfig:
    """One design run's settings (defaults: the paper's, per task).

    Attributes:
        task (str): ``"medium"`` or ``"hard"``.
        n (int): latents sampled (512).
        top (int): designs kept by the predictor after deduplication (128).
        target (float): the observed normalised fitness (1.0).
        zeta (float): the likelihood's scale (0.01 medium, 0.009 hard).
        t_end (float): tau_s (1.7 medium, 1.3 hard).
        step_size, tau_star, eps_max: the sampler (0.01, 0.9, 0.1).
        clamp (float | None): clamp latents to ``[-clamp, clamp]`` after every step
            (the paper: 1.0); None leaves them free.
        repulsion (str | None): a key of :data:`REPULSIONS` or None.
        strength (float): the repulsion's strength (see the module docstring).
        bandwidth (float | None): the RBF's h (default: the median pairwise distance of
            the task's latents).
        guided (bool): let the observation guide the transport through its predicted
            endpoint (:class:`~energyflow.samplers.guided.GuidedLangevin`, weight eps_max)
            instead of acting from tau* on only (the paper's sampler, the default).
        predictor (str): the guidance predictor, a key of
            :data:`~energyflow.domains.protein.smoothing.PREDICTORS`: ``"plain"`` (trained on
            the task file, the default), ``"smoothed"`` (GGS's graph-smoothed one) or
            ``"blend"`` (the mean of the two).
        select_by (str | None): the predictor that ranks the decoded designs for the top
            ``top`` (a key of the same registry); None: the guidance predictor, as GGS does.
        min_distance (int): keep the top ``top`` at least this many edits apart where the
            candidates allow (:func:`select_top`); 0 (default): GGS's plain top-k.
        min_diversity (float | None): trade the selecting predictor's score for distance
            until the top ``top``'s mean pairwise Levenshtein distance reaches this
            (:func:`select_diverse`; the weight used is the metric ``selection_weight``);
            None (default): no trade.
    """

    task: str = attrs.field(default="medium", validator=attrs.validators.in_(tuple(_data.TASKS)))
    n: int = attrs.field(default=512, converter=integer())
    top: int = attrs.field(default=128, converter=integer())
    target: float = attrs.field(default=1.0, converter=real())
    zeta: float = attrs.field(default=attrs.Factory(_task_default("zeta"), takes_self=True), converter=real())
    t_end: float = attrs.field(default=attrs.Factory(_task_default("t_end"), takes_self=True), converter=real())
    step_size: float = attrs.field(default=0.01, converter=real())
    tau_star: float = attrs.field(default=0.9, converter=real())
    eps_max: float = attrs.field(default=0.1, converter=real())
    clamp: float | None = attrs.field(default=1.0, converter=real(optional=True))
    repulsion: str | None = attrs.field(default=None)
    strength: float = attrs.field(default=0.0, converter=real())
    bandwidth: float | None = attrs.field(default=None, converter=real(optional=True))
    guided: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    predictor: str = attrs.field(default="plain")
    select_by: str | None = attrs.field(default=None)
    min_distance: int = attrs.field(default=0, converter=integer())
    min_diversity: float | None = attrs.field(default=None, converter=real(optional=True))

    def __attrs_post_init__(self) -> None:
        if self.n < 2 or self.top < 1:
            raise InvalidValueError(f"need n >= 2 and top >= 1, got n={self.n}, top={self.top}")
        for name in ("zeta", "t_end", "step_size", "eps_max"):
            if not 0 < getattr(self, name) < math.inf:
                raise InvalidValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if not 0 <= self.tau_star <= 1:
            raise InvalidValueError(f"tau_star must lie in [0, 1], got {self.tau_star!r}")
        if self.clamp is not None and not 0 < self.clamp < math.inf:
            raise InvalidValueError(f"clamp must be a finite number > 0 or None, got {self.clamp!r}")
        if self.repulsion is not None:
            if self.repulsion not in REPULSIONS:
                raise InvalidValueError(f"unknown repulsion {self.repulsion!r}; choose one of "
                                        f"{', '.join(REPULSIONS.names())} (or none)")
            if not 0 < self.strength < math.inf:
                raise InvalidValueError(f"repulsion strength must be a finite number > 0, got {self.strength!r}")
        for name in (self.predictor, self.select_by):
            if name is not None and name not in PREDICTORS:
                raise InvalidValueError(f"unknown predictor {name!r}; choose one of {', '.join(PREDICTORS.names())}")
        if self.min_distance < 0:
            raise InvalidValueError(f"min_distance must be an integer >= 0, got {self.min_distance!r}")
        if self.min_diversity is not None and not 0 <= self.min_diversity < math.inf:
            raise InvalidValueError(f"min_diversity must be a finite number >= 0 or None, got {self.min_diversity!r}")
        if self.bandwidth is not None and not 0 < self.bandwidth < math.inf:
            raise InvalidValueError(f"bandwidth must be a finite number > 0, got {self.bandwidth!r}")

    @property
    def label(self) -> str:
        return "none" if self.repulsion is None else f"{self.repulsion}:{self.strength:g}"

    @property
    def selector(self) -> str:
        """The name of the selecting predictor (``select_by``, else ``predictor``)."""
        return self.predictor if self.select_by is None else self.select_by


@attrs.frozen(eq=False)
class DesignResult:
    """One design run: the selected designs, their scores and the GGS metrics.

    Attributes:
        sequences (list[str]): the selected designs (distinct, best predicted first).
        predicted (np.ndarray): the selecting predictor's normalised fitness of them.
        fitness (np.ndarray): the oracle's normalised fitness of them.
        novelty (np.ndarray): each design's distance to the task's training file.
        metrics (dict): :func:`design_metrics` plus ``unique_decoded`` (distinct sequences
            among the ``n`` decoded) and ``seconds``.
        latents (Tensor): the ``(n, latent_dim)`` final latents.
        config (DesignConfig): what ran.
    """

    sequences: list[str]
    predicted: np.ndarray
    fitness: np.ndarray
    novelty: np.ndarray
    metrics: dict[str, float]
    latents: Tensor
    config: DesignConfig

    def write(self, path: str | os.PathLike[str]) -> Path:
        """The designs as CSV (or FASTA for ``.fasta``) with predicted and oracle fitness and novelty."""
        return write_sequences(path, self.sequences, {"predicted_fitness": self.predicted,
                                                      "oracle_fitness": self.fitness, "novelty": self.novelty})


def _median_distance(x: Tensor) -> float:
    d = torch.cdist(x.double(), x.double())
    iu = torch.triu_indices(len(x), len(x), 1)
    return float(d[iu[0], iu[1]].median())


def _greedy(dist: np.ndarray, scores: np.ndarray, k: int, min_distance: int, weight: float) -> list[int]:
    """Greedy picks on candidates sorted best score first: each maximises ``score + weight * mean distance``.

    A candidate at least ``min_distance`` from every kept one is preferred to any other
    (ties go to the better score); once none is left, the rest compete on the objective.
    """
    n = len(scores)
    kept = [0]
    taken = np.zeros(n, dtype=bool)
    taken[0] = True
    total = dist[0].astype(np.float64)  # summed distance of each candidate to the kept set
    nearest = dist[0].astype(np.int64)  # its distance to the nearest kept one
    for _ in range(1, k):
        objective = scores + weight * total / len(kept)
        objective[taken] = -np.inf
        eligible = ~taken & (nearest >= min_distance)
        if min_distance > 1 and eligible.any():
            objective = np.where(eligible, objective, -np.inf)
        j = int(np.argmax(objective))
        kept.append(j)
        taken[j] = True
        total += dist[j]
        np.minimum(nearest, dist[j], out=nearest)
    return kept


def select_diverse(sequences: list[str], scores: np.ndarray, top: int, min_diversity: float | None = None,
                   min_distance: int = 0, *, refine: int = 12) -> tuple[np.ndarray, float]:
    """The ``top`` designs by score, traded against distance until their diversity reaches ``min_diversity``.

    Greedy maximal marginal relevance: the best-scored sequence first, then each next pick
    maximises ``score + weight * (mean Levenshtein distance to the kept ones)`` (a
    candidate at least ``min_distance`` edits from all kept ones is preferred, as in
    :func:`select_top`). ``weight`` 0 is the plain top-k by score (GGS's selection). With
    ``min_diversity``, ``weight`` is the smallest found (a geometric grid from
    ``1e-4 * spread`` to ``1e3 * spread`` of the scores, then ``refine`` bisection steps)
    whose set's diversity (the **mean** pairwise distance, GGS's metric) is at least
    ``min_diversity``: the least score given up for the wanted diversity. Nothing about the
    oracle enters; the scores are the selecting predictor's. If no weight reaches the
    target (the candidates are too alike), the set at the largest weight is returned (the
    most diverse this rule makes) and its weight reported.

    Args:
        sequences (list[str]): distinct candidates.
        scores (np.ndarray): ``(len(sequences),)``, higher is better.
        top (int): how many to keep (at most ``len(sequences)``).
        min_diversity (float | None): the wanted mean pairwise distance; None: ``weight`` 0.
        min_distance (int): as in :func:`select_top`.
        refine (int): bisection steps between the grid's last miss and first hit.

    Returns:
        tuple: ``(indices, weight)``; ``indices`` ``(min(top, len(sequences)),)`` best score
        first, ``weight`` in score units per edit.

    Example:
        >>> seqs = ["AAAA", "AAAC", "AACA", "CCCC"]
        >>> idx, w = select_diverse(seqs, np.array([4.0, 3.9, 3.8, 1.0]), 2)
        >>> idx.tolist(), w
        ([0, 1], 0.0)
        >>> idx, w = select_diverse(seqs, np.array([4.0, 3.9, 3.8, 1.0]), 2, min_diversity=3)
        >>> idx.tolist(), 0 < w < 3
        ([0, 3], True)
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(sequences),):
        raise InvalidValueError(f"need one score per sequence: {len(sequences)} sequences, scores {scores.shape}")
    if not np.isfinite(scores).all():
        raise InvalidValueError("scores must be finite")
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, np.integer)) or min_distance < 0:
        raise InvalidValueError(f"min_distance must be an integer >= 0, got {min_distance!r}")
    if min_diversity is not None and (isinstance(min_diversity, bool) or not isinstance(min_diversity, (int, float))
                                      or not 0 <= float(min_diversity) < math.inf):
        raise InvalidValueError(f"min_diversity must be a finite number >= 0 or None, got {min_diversity!r}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InvalidValueError(f"top must be an integer >= 1, got {top!r}")
    order = np.argsort(-scores, kind="stable")
    k = min(int(top), len(sequences))
    if k == 0:
        return order[:0], 0.0
    if min_distance <= 1 and min_diversity is None:
        return order[:k], 0.0
    ordered = [sequences[i] for i in order]
    dist = levenshtein_matrix(ordered, ordered)
    s = scores[order]

    def pick(weight: float) -> tuple[list[int], bool]:
        kept = _greedy(dist, s, k, int(min_distance), weight)
        return kept, min_diversity is None or mean_pairwise(dist[np.ix_(kept, kept)]) >= float(min_diversity)

    weight = 0.0
    kept, reached = pick(weight)
    if not reached:
        spread = float(s[0] - s[-1]) or 1.0
        low = 0.0
        for weight in spread * np.geomspace(1e-4, 1e3, 29):
            kept, reached = pick(float(weight))
            if reached:
                break
            low = float(weight)
        weight = float(weight)  # unreached: the grid's largest weight and its set
        if reached:
            for _ in range(int(refine)):
                mid = math.sqrt(low * weight) if low > 0 else weight / 2
                trial, ok = pick(mid)
                if ok:
                    weight, kept = mid, trial
                else:
                    low = mid
    return order[np.sort(np.asarray(kept, dtype=np.int64))], weight


def select_top(sequences: list[str], scores: np.ndarray, top: int, min_distance: int = 0,
               min_diversity: float | None = None) -> np.ndarray:
    """Indices of the ``top`` best-scored sequences, at least ``min_distance`` edits apart where possible.

    Greedy, best score first: a sequence is kept when its Levenshtein distance to every
    kept one is at least ``min_distance``. If that leaves fewer than ``top``, the best of
    the rest fill the set in score order (so a set is never short for the rule's sake).
    ``min_distance`` 0 or 1 is the plain top-k of distinct sequences (GGS's selection).
    ``min_diversity`` trades score for distance until the set's mean pairwise distance
    reaches it (:func:`select_diverse`, which also returns the weight it used).

    Args:
        sequences (list[str]): distinct candidates.
        scores (np.ndarray): ``(len(sequences),)``, higher is better.
        top (int): how many to keep (at most ``len(sequences)``).
        min_distance (int): the wanted minimum pairwise distance among the kept.
        min_diversity (float | None): the wanted mean pairwise distance among the kept.

    Returns:
        np.ndarray: ``(min(top, len(sequences)),)`` indices, best score first.

    Example:
        >>> seqs = ["AAAA", "AAAC", "CCCC", "AACC"]
        >>> select_top(seqs, np.array([4.0, 3.0, 2.0, 1.0]), 2).tolist()
        [0, 1]
        >>> select_top(seqs, np.array([4.0, 3.0, 2.0, 1.0]), 2, min_distance=3).tolist()
        [0, 2]
    """
    return select_diverse(sequences, scores, top, min_diversity, min_distance)[0]


def design(potential: Energy, domain: ProteinDomain, config: DesignConfig | None = None, *,
           generator: torch.Generator | None = None, predictor: nn.Module | None = None,
           oracle: FitnessCNN | None = None, selector: nn.Module | None = None) -> DesignResult:
    """Samples ``config.n`` latents from ``V + FitnessObservation (+ repulsion)``, selects and scores them.

    Args:
        potential (Energy): the learned potential (from
            :func:`~energyflow.training.run.load_potential`).
        domain (ProteinDomain): its domain (a task's; its VAE decodes).
        config (DesignConfig | None): the settings (default: the paper's for the domain's task).
        generator (torch.Generator | None): the source noise and the Langevin noise.
        predictor (nn.Module | None), oracle (FitnessCNN | None): default ``config.predictor``'s of the task
            (:data:`~energyflow.domains.protein.smoothing.PREDICTORS`) and :func:`train_oracle`
            (all cached).
        selector (nn.Module | None): ranks the decoded designs; default the guidance
            predictor where ``config.select_by`` is None or names the same kind, else
            ``config.select_by``'s.

    Returns:
        DesignResult
    """
    import time

    import energyflow as ef
    from energyflow.samplers.langevin import Langevin
    from energyflow.schedule import EnergyMatchingSchedule

    if not isinstance(domain, ProteinDomain) or domain.task is None:
        raise InvalidValueError("design needs a ProteinDomain of an AAV task (medium or hard)")
    config = DesignConfig(task=domain.task) if config is None else config
    if config.task != domain.task:
        raise InvalidValueError(f"the config is for the {config.task} task, the domain is {domain.task}'s")
    if config.top > config.n:
        raise InvalidValueError(f"top ({config.top}) cannot exceed n ({config.n})")
    predictor = PREDICTORS.get(config.predictor)(config.task) if predictor is None else predictor
    if selector is None:
        selector = predictor if config.selector == config.predictor else PREDICTORS.get(config.selector)(config.task)
    oracle = train_oracle() if oracle is None else oracle
    start = time.perf_counter()
    # Sampling runs where the potential is (the VAE and the predictor follow it there); selection and
    # scoring run on the CPU.
    device = next(iter(potential.parameters()), torch.empty(0)).device
    observation = FitnessObservation(predictor, domain.vae, config.target, config.zeta).to(device)
    expr: Energy = potential if config.guided else potential + observation
    if config.repulsion is not None:
        bandwidth = config.bandwidth
        if bandwidth is None and config.repulsion == "rbf":
            bandwidth = _median_distance(domain.train_data(min(1000, len(domain.train_data()))))
        expr = expr + REPULSIONS.get(config.repulsion)(config.strength, config.n, bandwidth)
    dim = domain.space.event_shape
    space = ClampedEuclidean(dim, config.clamp) if config.clamp is not None else Euclidean(dim)
    field = ef.compile(expr, space=space)
    sampler: Any = Langevin(step_size=config.step_size, t_end=config.t_end, method="euler",
                            schedule=EnergyMatchingSchedule(config.tau_star, config.eps_max))
    if config.guided:
        from energyflow.samplers.guided import GuidedLangevin

        sampler = GuidedLangevin(sampler, observation)
    x0 = domain.sample_source(config.n, generator).to(device)
    result = sampler.run(field, x0, generator=generator, trace=False)
    observation.cpu()
    z = result.samples.detach().cpu()
    decoded = domain.decode(z)
    distinct = list(dict.fromkeys(decoded))
    tokens = _data.encode(distinct)
    pred = _data.normalise(predict(selector, tokens))
    order, weight = select_diverse(distinct, pred, config.top, config.min_diversity, config.min_distance)
    chosen = [distinct[i] for i in order]
    raw = predict(oracle, tokens[torch.from_numpy(order.copy())])
    fit = _data.normalise(raw)
    reference = list(domain.sequences.sequences)
    metrics = design_metrics(chosen, raw, reference)
    nov = novelty(chosen, reference)
    metrics.update(unique_decoded=float(len(distinct)), predicted_median=float(np.median(pred[order])),
                   selection_weight=weight,
                   seconds=time.perf_counter() - start)
    return DesignResult(chosen, pred[order], fit, nov, metrics, z.cpu(), config)


def summarise(results: list[DesignResult]) -> dict[str, dict[str, float]]:
    """Mean and sample sd over seeds of every metric: ``{metric: {"mean", "sd"}}``."""
    if not results:
        raise InvalidValueError("no design results to summarise")
    keys = results[0].metrics.keys()
    out = {}
    for k in keys:
        v = np.array([r.metrics[k] for r in results], dtype=np.float64)
        out[k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def design_run(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
               seeds: tuple[int, ...] = (0, 1, 2, 3, 4), device: str = "cpu", use_ema: bool = True,
               predictor_options: dict[str, Any] | None = None, smoothing_options: dict[str, Any] | None = None,
               oracle_options: dict[str, Any] | None = None,
               **config: Any) -> tuple[list[DesignResult], dict[str, dict[str, float]]]:
    """Designs with a trained run, one independent generator per seed; writes the designs and a summary.

    Args:
        run_dir: a run of the protein domain (``energyflow train --preset aav-medium``).
        out_dir: where ``designs_seed{k}.csv`` and ``summary.json`` go (None: nowhere).
        seeds: one run per seed, each with ``torch.Generator().manual_seed(seed)``.
        predictor_options: recipe overrides of the plain predictor
            (:func:`~energyflow.domains.protein.models.train_predictor`, e.g. ``{"steps": 500}``;
            the smoothed one starts from that one).
        smoothing_options: overrides of
            :data:`~energyflow.domains.protein.smoothing.SMOOTHING_RECIPE`.
        oracle_options: overrides of :func:`train_oracle`'s recipe (every model is cached).
        config: :class:`DesignConfig` fields (``task`` comes from the run); ``zeta``, ``t_end``,
            ``n``, ``top`` or ``target`` None take the default, ``clamp=None`` turns the clamp off.

    Returns:
        tuple: the per-seed results and :func:`summarise` of them.
    """
    from energyflow.training.run import load_potential

    potential, cfg, domain = load_potential(run_dir, device=device, use_ema=use_ema)
    if not isinstance(domain, ProteinDomain) or domain.task is None:
        raise InvalidValueError(f"{run_dir} is a run of the {cfg.domain} domain ({cfg.dataset}); design needs a "
                                "protein run of an AAV task (--preset aav-medium or aav-hard)")
    if not seeds:
        raise InvalidValueError("give at least one seed")
    # None means "the task's default" for these; for clamp, bandwidth and repulsion it is a value.
    dc = DesignConfig(task=domain.task, **{k: v for k, v in config.items()
                                           if v is not None or k in ("clamp", "bandwidth", "repulsion")})
    opts = {"plain": predictor_options, "smoothing": smoothing_options}
    predictor = PREDICTORS.get(dc.predictor)(domain.task, **opts)
    selector = predictor if dc.selector == dc.predictor else PREDICTORS.get(dc.selector)(domain.task, **opts)
    oracle = train_oracle(**(oracle_options or {}))
    results = [design(potential, domain, dc, generator=torch.Generator().manual_seed(int(s)), predictor=predictor,
                      selector=selector, oracle=oracle) for s in seeds]
    summary = summarise(results)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for s, r in zip(seeds, results):
            r.write(out / f"designs_seed{s}.csv")
        payload = {"config": attrs.asdict(dc), "seeds": list(seeds), "summary": summary,
                   "per_seed": [r.metrics for r in results], "predictor": predictor.metrics,
                   "selector": selector.metrics,
                   "oracle": oracle.metrics, "vae": domain.vae.metrics}
        tmp = out / f".summary.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, out / "summary.json")
    return results, summary


#: GGS's table (Kirjner et al., ICLR 2024): median normalised fitness / mean diversity / median novelty.
PUBLISHED: dict[str, dict[str, tuple[float, float, float]]] = {
    "medium": {"GGS": (0.51, 4.0, 5.4), "AdaLead": (0.46, 8.5, 2.8), "CbAS": (0.43, 12.7, 7.2), "GWG": (0.43, 6.6, 7.7)},
    "hard": {"GGS": (0.60, 4.5, 7.0), "AdaLead": (0.40, 8.5, 3.4), "CbAS": (0.36, 14.4, 8.6)},
}


def parse_repulsion(text: str | None) -> tuple[str | None, list[float]]:
    """``"none"`` / None -> ``(None, [])``; ``"KIND:S1[,S2,...]"`` -> ``(KIND, [S1, S2, ...])``.

    Example:
        >>> parse_repulsion("rbf:0.5,2"), parse_repulsion("none")
        (('rbf', [0.5, 2.0]), (None, []))
    """
    if text is None or str(text).strip().lower() in ("", "none", "off"):
        return None, []
    kind, sep, values = str(text).partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in REPULSIONS:
        raise InvalidValueError(f"repulsion must be none or KIND:STRENGTH[,STRENGTH...] with KIND one of "
                                f"{', '.join(REPULSIONS.names())}, got {text!r}")
    try:
        strengths = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise InvalidValueError(f"repulsion strengths must be numbers, got {values!r}") from None
    if not strengths or any(not 0 < s < math.inf for s in strengths):
        raise InvalidValueError(f"repulsion strengths must be finite numbers > 0, got {values!r}")
    return kind, strengths


def plot_tradeoff(rows: list[dict[str, Any]], task: str, path: str | os.PathLike[str]) -> Path:
    """Median fitness against diversity (mean ± sd over seeds) for each repulsion setting, with GGS's rows.

    Args:
        rows: ``{"label", "summary"}`` per setting (:func:`summarise` output as summary).
        task: names the published rows drawn beside them.
        path: the PNG written (atomically).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    base = next((r for r in rows if r["label"] == "none"), None)
    kinds = list(dict.fromkeys(r["label"].partition(":")[0] for r in rows if r["label"] != "none"))
    for i, kind in enumerate([None, *kinds]):
        group = [r for r in rows if (r["label"] == "none" if kind is None else r["label"].startswith(kind + ":"))]
        if kind is not None and base is not None:
            group = [base, *group]  # each curve starts at no repulsion
        if not group:
            continue
        xs = [r["summary"]["diversity"]["mean"] for r in group]
        ys = [r["summary"]["median_fitness"]["mean"] for r in group]
        ax.errorbar(xs, ys, xerr=[r["summary"]["diversity"]["sd"] for r in group],
                    yerr=[r["summary"]["median_fitness"]["sd"] for r in group], fmt="-o" if kind else "o",
                    capsize=3, color="k" if kind is None else f"C{i - 1}",
                    label="no repulsion" if kind is None else f"{kind} (strength beside each point)")
        for r, x, y in zip(group, xs, ys):
            if r["label"] != "none":
                ax.annotate(r["label"].partition(":")[2], (x, y), textcoords="offset points", fontsize=7,
                            xytext=(4, 6 if i % 2 else -11), color=f"C{i - 1}")
    for name, (fit, div, _) in PUBLISHED.get(task, {}).items():
        ax.scatter([div], [fit], marker="s", color="C3")
        ax.annotate(f"{name} (published)", (div, fit), textcoords="offset points", xytext=(4, -10), fontsize=8,
                    color="C3")
    ax.set_xlabel("diversity (mean pairwise Levenshtein of the top designs)")
    ax.set_ylabel("median normalised fitness (oracle)")
    ax.set_title(f"AAV {task}: fitness-diversity trade-off over repulsion strengths")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
