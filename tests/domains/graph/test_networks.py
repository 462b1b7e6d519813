"""The default graph potential: permutation invariance, padding, symmetric masked gradients."""

from __future__ import annotations

import pytest
import torch

from energyflow.domains.graph.convert import graphs_to_dense
from energyflow.domains.graph.data import load_graphs
from energyflow.domains.graph.networks import DenseGINPotential, power_features
from energyflow.errors import InvalidValueError


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    A, mask = graphs_to_dense(load_graphs("community_small", seed=0).test[:6], max_nodes=20, dtype=torch.float64)
    A = A + 0.1 * torch.rand(A.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))  # relaxed
    return A, mask.bool()


def _net(power_steps: int = 0):
    torch.manual_seed(0)
    return DenseGINPotential(hidden=16, depth=2, signed=False, power_steps=power_steps).double()


@pytest.mark.parametrize("power_steps", [0, 4])
def test_node_permutations_leave_the_energy_unchanged(batch, power_steps):
    A, mask = batch
    net = _net(power_steps)
    e = net({"adj": A, "mask": mask})
    g = torch.Generator().manual_seed(2)
    for b in range(A.shape[0]):
        n = int(mask[b].sum())
        perm = torch.cat([torch.randperm(n, generator=g), torch.arange(n, A.shape[1])])  # real nodes stay first
        Ap = A[b][perm][:, perm].unsqueeze(0)
        torch.testing.assert_close(net({"adj": Ap, "mask": mask[b:b + 1]}), e[b:b + 1])
    # negative control: changing one edge between real nodes changes the energy
    B = A.clone()
    B[0, 0, 1] = B[0, 1, 0] = 1.0 - B[0, 0, 1]
    assert not torch.allclose(net({"adj": B, "mask": mask})[0], e[0])


@pytest.mark.parametrize("power_steps", [0, 4])
def test_padding_and_entries_outside_the_graph_do_not_matter(batch, power_steps):
    A, mask = batch
    net = _net(power_steps)
    e = net({"adj": A, "mask": mask})
    big = torch.zeros(A.shape[0], 30, 30, dtype=A.dtype)
    big[:, :20, :20] = A
    big_mask = torch.zeros(A.shape[0], 30, dtype=torch.bool)
    big_mask[:, :20] = mask
    junk = big + (1 - (big_mask.unsqueeze(1) & big_mask.unsqueeze(2)).double()) * 3.0  # garbage on padding
    torch.testing.assert_close(net({"adj": junk, "mask": big_mask}), e)


@pytest.mark.parametrize("power_steps", [0, 4])
def test_the_gradient_in_the_adjacency_is_symmetric_and_masked(batch, power_steps):
    A, mask = batch
    net = _net(power_steps)
    adj = A.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net({"adj": adj, "mask": mask}).sum(), adj)
    torch.testing.assert_close(grad, grad.transpose(1, 2))
    pair = (mask.unsqueeze(1) & mask.unsqueeze(2)).double()
    assert bool((grad * (1 - pair) == 0).all()) and bool((torch.diagonal(grad, dim1=1, dim2=2) == 0).all())
    assert float(grad.abs().sum()) > 0


def test_bad_states_and_settings_are_refused():
    with pytest.raises(InvalidValueError, match="adj"):
        _net()(torch.zeros(2, 3, 3))
    with pytest.raises(InvalidValueError, match="depth"):
        DenseGINPotential(depth=0)
    with pytest.raises(InvalidValueError, match="power_steps"):
        DenseGINPotential(power_steps=-1)


def test_power_features_converge_to_the_leading_eigenprojection():
    """On a planted two-community graph with noise, n P_k tends to n u u^T (u: leading eigenvector of C).

    The graph is G(16, p_in 0.8, p_out 0.1) plus Gaussian noise of sd 0.3 on the relaxed
    entries. The error of P_k shrinks like (|lambda_2| / |lambda_1|)^(2^k); with this
    draw's eigengap 6 squarings leave less than 1e-6, and the signs of u u^T agree with
    the planted split on almost every pair (spectral clustering's own error, not ours).
    Negative control: one squaring is still far from u u^T.
    """
    g = torch.Generator().manual_seed(0)
    side = torch.arange(16) < 8
    same = side.unsqueeze(0) == side.unsqueeze(1)
    upper = torch.triu(torch.rand(16, 16, generator=g) < torch.where(same, 0.8, 0.1), 1).double()
    pair = 1 - torch.eye(16, dtype=torch.float64)
    A = upper + upper.T + 0.3 * torch.randn(16, 16, generator=g, dtype=torch.float64)
    A = 0.5 * (A + A.T) * pair
    C = (A - A[pair.bool()].mean()) * pair
    vals, vecs = torch.linalg.eigh(C)
    lead = int(vals.abs().argmax())
    ratio = float(vals.abs().sort(descending=True).values[1] / vals.abs().max())
    assert ratio ** 64 < 1e-6  # the claim below is about this draw's gap
    target = 16 * torch.outer(vecs[:, lead], vecs[:, lead]) * pair
    feats = power_features(A.unsqueeze(0), pair.unsqueeze(0), 6)
    assert len(feats) == 6 and all(f.shape == (1, 16, 16) for f in feats)
    torch.testing.assert_close(feats[-1][0], target, atol=1e-5, rtol=0)
    assert float((feats[0][0] - target).abs().max()) > 0.1
    assert float(((feats[-1][0] > 0) == same)[pair.bool()].double().mean()) >= 0.85
    assert power_features(A.unsqueeze(0), pair.unsqueeze(0), 0) == []


def test_mean_aggregation_keeps_large_noisy_graphs_tame(batch):
    """At 64 nodes of dense noise, summed messages blow the first gradients up; mean messages do not."""
    torch.manual_seed(0)
    adj = torch.randn(4, 64, 64, dtype=torch.float64)
    adj = (adj + adj.transpose(1, 2)) / 2
    mask = torch.ones(4, 64, dtype=torch.bool)
    grads = {}
    for agg in ("sum", "mean"):
        torch.manual_seed(0)
        net = DenseGINPotential(hidden=16, depth=3, aggregate=agg).double()
        a = adj.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net({"adj": a, "mask": mask}).sum(), a)
        grads[agg] = float(g.abs().mean())
    assert grads["mean"] < grads["sum"] / 10  # the sum's amplification is ~n per layer
    A, mask = batch  # still invariant with mean messages
    net = DenseGINPotential(hidden=8, depth=2, signed=False, aggregate="mean").double()
    perm = torch.cat([torch.randperm(int(mask[0].sum())), torch.arange(int(mask[0].sum()), A.shape[1])])
    torch.testing.assert_close(net({"adj": A[:1, perm][:, :, perm], "mask": mask[:1]}), net({"adj": A[:1], "mask": mask[:1]}))
    with pytest.raises(InvalidValueError, match="aggregate"):
        DenseGINPotential(aggregate="max")
