"""Minibatch couplings: exact OT against brute force, Sinkhorn marginals and cost, determinism."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from energyflow.registry import COUPLINGS
from energyflow.training.coupling import ExactOT, Independent, Sinkhorn, sample_pairs, squared_cost


def points(seed: int, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), 3.0 * torch.rand(n, d, generator=g, dtype=torch.float64)


def brute_force_min(cost: np.ndarray) -> float:
    n = cost.shape[0]
    return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))


def row_index(rows: torch.Tensor, table: torch.Tensor) -> list[int]:
    """For each row of ``rows`` the index of the identical row of ``table`` (rows are distinct)."""
    out = []
    for r in rows:
        hits = (table == r).all(dim=1).nonzero().flatten().tolist()
        assert len(hits) == 1, "a paired point is not one of the inputs"
        out.append(hits[0])
    return out


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), d=st.integers(1, 3))
def test_exact_ot_pairing_matches_brute_force(seed, n, d):
    x0, x1 = points(seed, n, d)
    a, b = ExactOT().pair(x0, x1, generator=torch.Generator().manual_seed(seed))
    # The pairs are a permutation: every source and every data point used exactly once.
    i, j = row_index(a, x0), row_index(b, x1)
    assert sorted(i) == list(range(n)) and sorted(j) == list(range(n))
    # Its total squared cost is the minimum over all n! assignments. Both sums add the
    # same n float64 squared distances (in a different order), so 1e-9 relative covers
    # the rounding of the summation order and nothing else.
    cost = squared_cost(x0, x1)
    got = float(((a - b) ** 2).sum())
    best = brute_force_min(cost)
    assert math.isclose(got, best, rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_plan_is_a_scaled_permutation(seed):
    n = 6
    x0, x1 = points(seed, n, 2)
    plan = ExactOT().plan(x0, x1)
    assert plan.shape == (n, n)
    # ot.emd returns a vertex of the transport polytope: entries are exactly 0 or 1/n.
    assert np.allclose(plan.sum(0), 1 / n) and np.allclose(plan.sum(1), 1 / n)
    assert ((np.isclose(plan, 0.0)) | (np.isclose(plan, 1 / n))).all()
    assert int((plan > 0).sum()) == n
    # Drawing n pairs from it gives the permutation's pairs, each once.
    i, j = sample_pairs(plan, n, torch.Generator().manual_seed(seed))
    assert sorted(i.tolist()) == list(range(n)) and sorted(j.tolist()) == list(range(n))
    assert all(plan[a, b] > 0 for a, b in zip(i.tolist(), j.tolist()))


def test_exact_ot_beats_random_pairing_on_a_shifted_cloud():
    # A structured case with a known answer: x1 = x0 + c for a small shift c is solved by
    # the identity pairing (a translation is optimal for the squared cost).
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(8, 2, generator=g, dtype=torch.float64) * 5
    x1 = (x0 + 0.01)[torch.randperm(8, generator=g)]
    a, b = ExactOT().pair(x0, x1, generator=g)
    assert torch.allclose(b - a, torch.full_like(a, 0.01), atol=1e-12)


@pytest.mark.parametrize("reg", [0.05, 0.01])
def test_sinkhorn_plan_marginals_are_uniform(reg):
    n = 12
    x0, x1 = points(5, n, 2)
    plan = Sinkhorn(reg=reg).plan(x0, x1)
    # POT iterates until the marginal error is below 1e-9 (its stopThr); 1e-7 per entry
    # leaves room for that and is still 1e5 times smaller than the uniform mass 1/12.
    assert np.allclose(plan.sum(1), 1 / n, atol=1e-7)
    assert np.allclose(plan.sum(0), 1 / n, atol=1e-7)
    assert (plan >= 0).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_sinkhorn_cost_close_to_exact_ot_for_small_reg(seed):
    n = 8
    x0, x1 = points(seed, n, 2)
    cost = squared_cost(x0, x1)
    ot_cost = float((ExactOT().plan(x0, x1) * cost).sum())
    independent_cost = float(cost.mean())
    for reg in (0.05, 0.01):
        plan = Sinkhorn(reg=reg).plan(x0, x1)
        sk_cost = float((plan * cost).sum())
        # The entropic plan P minimises <C', P> - reg * H(P) with C' = C / max C. Comparing
        # with the OT permutation P* (entropy log n) and using H(P) <= 2 log n gives
        # <C', P> - <C', P*> <= reg * log n, i.e. a gap of at most reg * log(n) * max C.
        bound = reg * math.log(n) * cost.max()
        assert ot_cost - 1e-9 <= sk_cost <= ot_cost + bound + 1e-9
    # The bound is tight enough to mean something: far below the cost of random pairing.
    assert ot_cost + 0.01 * math.log(n) * cost.max() < independent_cost
    # The drawn pairs follow the plan: over 20 seeded draws their mean cost is much nearer
    # the OT cost than random pairing is. (Draws are n distinct entries of the plan, not
    # a permutation, so single draws can even undercut the OT cost; the seeded values
    # sit within 0.15 of the OT-to-random gap, the test allows 0.3.)
    draws = []
    for s in range(20):
        a, b = Sinkhorn(reg=0.01).pair(x0, x1, generator=torch.Generator().manual_seed(s))
        draws.append(float(((a - b) ** 2).sum()) / n)
    assert abs(np.mean(draws) - ot_cost) < 0.3 * (independent_cost - ot_cost)


@pytest.mark.parametrize("coupling", [ExactOT(), Sinkhorn(reg=0.05)])
def test_same_seed_same_pairs_different_seed_different_order(coupling):
    x0, x1 = points(11, 16, 2)
    a1, b1 = coupling.pair(x0, x1, generator=torch.Generator().manual_seed(7))
    a2, b2 = coupling.pair(x0, x1, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    a3, _ = coupling.pair(x0, x1, generator=torch.Generator().manual_seed(8))
    # Two seeds drawing the same order of 16 pairs has probability below 1/16! for OT.
    assert not torch.equal(a1, a3)


def test_independent_keeps_order():
    x0, x1 = points(0, 5, 3)
    a, b = Independent().pair(x0, x1)
    assert torch.equal(a, x0) and torch.equal(b, x1)


@pytest.mark.parametrize("name", ["ot", "sinkhorn", "independent"])
def test_mismatched_event_shapes_raise(name):
    coupling = COUPLINGS.build(name)
    with pytest.raises(ValueError, match="event shapes differ"):
        coupling.pair(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="empty"):
        coupling.pair(torch.zeros(0, 2), torch.zeros(4, 2))


def test_images_are_flattened_for_the_cost():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 1, 3, 3, generator=g), torch.randn(5, 1, 3, 3, generator=g)
    a, b = ExactOT().pair(x0, x1, generator=g)
    assert a.shape == x0.shape and b.shape == x1.shape
    best = brute_force_min(squared_cost(x0, x1))
    assert math.isclose(float(((a.double() - b.double()) ** 2).sum()), best, rel_tol=1e-5)  # float32 inputs


@pytest.mark.filterwarnings("ignore:Problem unbounded")
def test_nan_inputs_are_refused():
    x0 = torch.zeros(4, 2)
    x1 = torch.full((4, 2), float("nan"))
    with pytest.raises((FloatingPointError, ValueError)):
        ExactOT().pair(x0, x1, generator=torch.Generator().manual_seed(0))


def test_sinkhorn_reg_must_be_positive():
    with pytest.raises(ValueError, match="reg"):
        Sinkhorn(reg=0.0)


# --- pytree states (graphs): pairs only within equal structure -------------------------------
def _graph_batches(seed: int, b: int = 24):
    from graph_helpers import graph_space, random_graphs

    g = torch.Generator().manual_seed(seed)
    x1 = random_graphs(b, g, dtype=torch.float64)
    x0 = graph_space().noise(None, generator=g, like=x1)
    return x0, x1


@pytest.mark.parametrize("coupling", [ExactOT(), Sinkhorn(reg=0.05), Independent()])
def test_pytree_pairs_share_their_node_masks(coupling):
    x0, x1 = _graph_batches(0)
    a, b = coupling.pair(x0, x1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a["mask"], b["mask"])  # never a 3-node graph paired with 4-node noise
    # Every data graph and every noise state is used once (exact OT and independent pairing).
    if not isinstance(coupling, Sinkhorn):
        assert sorted(b["adj"].sum((1, 2)).tolist()) == sorted(x1["adj"].sum((1, 2)).tolist())


def test_pytree_exact_ot_is_optimal_within_each_size():
    """Brute force within each group of equal masks: OT's pairing has the least cost."""
    x0, x1 = _graph_batches(3, b=12)
    a, b = ExactOT().pair(x0, x1, generator=torch.Generator().manual_seed(0))
    cost = lambda u, v: float(((u["x"] - v["x"]) ** 2).sum() + ((u["adj"] - v["adj"]) ** 2).sum())  # noqa: E731
    from energyflow import tree

    total = cost(a, b)
    best = 0.0
    for key in {tuple(m.tolist()) for m in x1["mask"]}:
        i = [k for k in range(12) if tuple(x0["mask"][k].tolist()) == key]
        j = [k for k in range(12) if tuple(x1["mask"][k].tolist()) == key]
        s0, s1 = tree.index(x0, torch.tensor(i)), tree.index(x1, torch.tensor(j))
        best += min(cost(s0, tree.index(s1, torch.tensor(p))) for p in itertools.permutations(range(len(j))))
    assert total == pytest.approx(best, rel=1e-9)


def test_pytree_source_with_other_masks_is_refused():
    x0, x1 = _graph_batches(0)
    assert not bool(x1["mask"].all())  # the data has graphs of fewer than 4 nodes
    x0 = {**x0, "mask": torch.ones_like(x0["mask"])}  # noise for 4-node graphs only
    with pytest.raises(ValueError, match="sample_source\\(like=x1\\)"):
        ExactOT().pair(x0, x1)
