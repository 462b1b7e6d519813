"""Conditional sampling on graphs (issue 11): completion, property steering, repulsion.

The potentials are ones whose posterior can be worked out by hand: the edge-density
quadratic (every pair independent around the signed density), an "oracle" quadratic
pulling every pair to a known graph, and its complement (an adversary the observation
has to overrule); a tiny untrained DenseGINPotential checks the plumbing on the real
network.
"""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

import energyflow as ef
from energyflow.domains.graph.conditional import (
    STATISTICS, CompletionResult, EdgeDensityPotential, GraphStatistic, LeafEnergy, _auc,
    adjacency_observation, complete, completion_accuracy, default_sampler, degree_profile, diverse, diversity,
    edge_count,
    edge_density, graph_repulsion, max_degree, measure, random_known_mask, relaxed_adjacency, steer,
    triangle_count,
)
from energyflow.domains.graph.domain import GraphDomain, encode
from energyflow.errors import InvalidTypeError, InvalidValueError

torch.set_num_threads(1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Quadratic(ef.Energy):
    """``sum_{i<j real} (s_ij - y_ij)^2 / (2 scale^2)``: pulls every pair to the signed graph ``y`` (B, N, N)."""

    coupling = "energy"

    def __init__(self, y: torch.Tensor, scale: float = 0.25) -> None:
        super().__init__()
        self.register_buffer("y", y)
        self.scale = scale

    def forward(self, x):
        a = x["adj"]
        s = 0.5 * (a + a.transpose(1, 2))
        return (torch.triu((s - self.y) ** 2, 1) * (self.y != 0)).sum((1, 2)) / (2 * self.scale**2)


@pytest.fixture(scope="module")
def domain():
    graphs = [nx.cycle_graph(k) for k in range(6, 10)] + [nx.path_graph(k) for k in range(6, 10)]
    return GraphDomain.from_graphs(graphs * 2, seed=0, max_nodes=10)


@pytest.fixture(scope="module")
def truth():
    """Two community-like graphs of 8 and 10 nodes (two cliques joined by a bridge), padded to 10."""
    def two_cliques(k):
        g = nx.disjoint_union(nx.complete_graph(k), nx.complete_graph(k))
        g.add_edge(0, k)
        return g
    return encode([two_cliques(4), two_cliques(5)], max_nodes=10)


# -- statistics on hand-made graphs ---------------------------------------------------------


def test_statistics_on_hand_made_graphs():
    graphs = [nx.complete_graph(4), nx.cycle_graph(5), nx.star_graph(4), nx.empty_graph(3)]
    s = encode(graphs, max_nodes=6)
    assert edge_count(s).tolist() == [6.0, 5.0, 4.0, 0.0]
    assert triangle_count(s).tolist() == [4.0, 0.0, 0.0, 0.0]  # K4 has 4 triangles
    assert max_degree(s, temperature=0.0).tolist() == [3.0, 2.0, 4.0, 0.0]
    smooth = max_degree(s)  # max <= T logsumexp(deg / T) <= max + T log n
    n = torch.tensor([4.0, 5.0, 5.0, 3.0])
    assert bool((smooth >= torch.tensor([3.0, 2.0, 4.0, 0.0])).all())
    assert bool((smooth <= torch.tensor([3.0, 2.0, 4.0, 0.0]) + 0.25 * n.log() + 1e-6).all())
    assert torch.allclose(max_degree(s, temperature=1e-3), torch.tensor([3.0, 2.0, 4.0, 0.0]), atol=1e-2)
    # the relaxation is the {0, 1} adjacency on real pairs, zero on padding and the diagonal
    A = relaxed_adjacency(s)
    assert A[0, :4, :4].tolist() == (torch.ones(4, 4) - torch.eye(4)).tolist()
    for b, n in enumerate((4, 5, 5, 3)):
        assert float(A[b, n:].abs().sum() + A[b, :, n:].abs().sum()) == 0.0
    assert float(torch.diagonal(A, dim1=1, dim2=2).abs().sum()) == 0.0


def test_statistics_match_networkx_on_random_graphs_and_ignore_padding_and_order():
    g = _gen(0)
    graphs = [nx.gnp_random_graph(int(torch.randint(5, 12, (1,), generator=g)), 0.4, seed=k) for k in range(8)]
    s = encode(graphs, max_nodes=12)
    assert triangle_count(s).tolist() == [sum(nx.triangles(h).values()) / 3 for h in graphs]
    assert edge_count(s).tolist() == [float(h.number_of_edges()) for h in graphs]
    assert max_degree(s, 0.0).tolist() == [float(max(d for _, d in h.degree())) for h in graphs]
    # padding to more nodes and permuting the real nodes change nothing
    wide = encode(graphs, max_nodes=16)
    perm = [nx.relabel_nodes(h, dict(zip(h.nodes, torch.randperm(h.number_of_nodes(), generator=g).tolist())))
            for h in graphs]
    for fn in STATISTICS.values():
        torch.testing.assert_close(fn(wide), fn(s))
        torch.testing.assert_close(fn(encode(perm, max_nodes=12)), fn(s))


@pytest.mark.parametrize("name", sorted(STATISTICS))
def test_statistic_gradients_are_symmetric_and_masked(name, truth):
    noisy = truth["adj"] + 0.3 * torch.randn(truth["adj"].shape, generator=_gen(1))  # not symmetric, padding set
    a = noisy.clone().requires_grad_(True)
    term = GraphStatistic(name, target=1.0, scale=2.0)
    term({"adj": a, "mask": truth["mask"]}).sum().backward()
    grad = a.grad
    torch.testing.assert_close(grad, grad.transpose(1, 2))
    pair = truth["mask"].unsqueeze(1) & truth["mask"].unsqueeze(2) & ~torch.eye(10, dtype=torch.bool)
    assert float(grad[~pair].abs().max()) == 0.0
    assert float(grad[pair].abs().max()) > 0.0


def test_graph_statistic_energy_is_the_gaussian_penalty_per_graph():
    s = encode([nx.complete_graph(4), nx.path_graph(4)])
    term = GraphStatistic("edge_count", target=torch.tensor([5.0, 5.0]), scale=2.0)
    assert term(s).tolist() == [(6 - 5) ** 2 / 8, (3 - 5) ** 2 / 8]
    assert term.coupling == "tempered"
    custom = GraphStatistic(lambda st: relaxed_adjacency(st).sum((1, 2)), target=0.0, scale=1.0)
    assert custom(s).tolist() == [144 / 2, 36 / 2]


def test_graph_statistic_refuses_bad_input():
    with pytest.raises(InvalidValueError, match="unknown graph statistic 'diameter'.*edge_count"):
        GraphStatistic("diameter", 1.0)
    with pytest.raises(InvalidTypeError):
        GraphStatistic(3, 1.0)
    for scale in (0.0, -1.0, float("inf")):
        with pytest.raises(InvalidValueError, match="scale"):
            GraphStatistic("edge_count", 1.0, scale=scale)
    with pytest.raises(InvalidValueError, match="target"):
        GraphStatistic("edge_count", float("nan"))
    with pytest.raises(InvalidValueError, match="temperature"):
        max_degree(encode([nx.path_graph(3)]), temperature=-1.0)
    with pytest.raises(InvalidValueError, match="returned"):
        GraphStatistic(lambda st: st["adj"].sum(), 1.0)(encode([nx.path_graph(3)] * 2))
    with pytest.raises(InvalidValueError, match="graph state"):
        GraphStatistic("edge_count", 1.0)(torch.zeros(2, 3, 3))


def test_measure_decodes_states_and_is_exact():
    s = encode([nx.star_graph(3), nx.complete_graph(4)])
    noisy = {"adj": 0.4 * s["adj"] + 0.1, "mask": s["mask"]}  # same signs as s except non-edges at -0.3
    assert measure(noisy, "edge_count").tolist() == [3.0, 6.0]
    assert measure(noisy, "max_degree").tolist() == [3.0, 3.0]
    assert measure([nx.complete_graph(4)], "triangle_count").tolist() == [4.0]


# -- the known mask and the observation --------------------------------------------------------


def test_random_known_mask_hides_a_fraction_of_each_graphs_pairs_symmetrically(truth):
    known = random_known_mask(truth, 0.3, _gen(0))
    pair = truth["mask"].unsqueeze(1) & truth["mask"].unsqueeze(2) & ~torch.eye(10, dtype=torch.bool)
    assert known.dtype == torch.bool and known.shape == (2, 10, 10)
    assert bool((known == known.transpose(1, 2)).all())
    assert not bool((known & ~pair).any())
    for b, n in enumerate((8, 10)):
        pairs = n * (n - 1) // 2
        assert int(known[b].sum()) // 2 == pairs - round(0.3 * pairs)
    assert bool((random_known_mask(truth, 0.0) == pair).all())
    assert not bool(random_known_mask(truth, 1.0).any())
    assert not bool((random_known_mask(truth, 0.5, _gen(1)) == random_known_mask(truth, 0.5, _gen(2))).all())
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(InvalidValueError, match="fraction"):
            random_known_mask(truth, bad)


def test_observation_gradient_is_symmetric_and_zero_off_the_known_pairs(truth):
    known = random_known_mask(truth, 0.5, _gen(0))
    obs = adjacency_observation(truth, known, noise=0.1)
    assert obs.coupling == "tempered"
    a = (0.5 * torch.randn(truth["adj"].shape, generator=_gen(3))).requires_grad_(True)
    e = obs({"adj": a, "mask": truth["mask"]})
    assert e.shape == (2,)
    e.sum().backward()
    torch.testing.assert_close(a.grad, a.grad.transpose(1, 2))
    assert float(a.grad[~known].abs().max()) == 0.0
    assert bool((a.grad[known] != 0).all())
    # at the truth the likelihood is at its minimum: zero gradient, the normalising constant only
    t = truth["adj"].clone().requires_grad_(True)
    e0 = obs({"adj": t, "mask": truth["mask"]})
    e0.sum().backward()
    assert float(t.grad.abs().max()) == 0.0
    k = known.triu(1).sum((1, 2)).double()
    torch.testing.assert_close(e0.double(), k * (math.log(0.1) + 0.5 * math.log(2 * math.pi)), rtol=1e-5, atol=1e-4)


def test_known_masks_that_are_wrong_are_refused(truth, domain):
    known = random_known_mask(truth, 0.5, _gen(0))
    V = EdgeDensityPotential.from_domain(domain)
    with pytest.raises(InvalidValueError, match="shape"):
        complete(V, domain, truth, known[:, :9, :9])
    with pytest.raises(InvalidValueError, match="shape"):
        complete(V, domain, truth, known[:1])
    skew = known.clone()
    skew[0, 0, 5] = ~skew[0, 0, 5]
    with pytest.raises(InvalidValueError, match="symmetric"):
        complete(V, domain, truth, skew)
    with pytest.raises(InvalidTypeError, match="bool"):
        complete(V, domain, truth, known.float())
    for noise in (0.0, -0.1, float("nan")):
        with pytest.raises(InvalidValueError, match="noise"):
            complete(V, domain, truth, known, noise=noise)
    with pytest.raises(InvalidValueError, match="chains"):
        complete(V, domain, truth, known, chains=0)
    with pytest.raises(InvalidValueError, match="max_nodes"):
        complete(V, domain, encode([nx.path_graph(4)], max_nodes=12), torch.zeros(1, 12, 12, dtype=torch.bool))
    with pytest.raises(InvalidTypeError, match="Langevin"):
        complete(V, domain, truth, known, sampler=ef.GradientFlow(step_size=0.1, num_steps=2))


# -- completion ------------------------------------------------------------------------------


@pytest.mark.parametrize("guidance", [True, False])
def test_an_oracle_potential_recovers_the_hidden_pairs_and_keeps_the_known(truth, domain, guidance):
    known = random_known_mask(truth, 0.4, _gen(0))
    sampler = default_sampler("euler")
    out = complete(Quadratic(truth["adj"]), domain, truth, known, sampler=sampler, guidance=guidance,
                   generator=_gen(1))
    scores = completion_accuracy(out, truth)
    assert scores.hidden_accuracy == 1.0 and scores.known_kept == 1.0
    assert scores.hidden_auc == 1.0
    assert scores.hidden_pairs == sum(round(0.4 * p) for p in (28, 45))
    assert isinstance(out, CompletionResult) and out.prediction.shape == (2, 10, 10)
    assert [g.number_of_nodes() for g in out.graphs] == [8, 10]
    assert bool((out.prediction == out.prediction.transpose(1, 2)).all())


def test_the_observation_overrules_an_adversarial_potential_on_the_known_pairs_only(truth, domain):
    """Negative control: V pulls every pair to the complement of the truth."""
    known = random_known_mask(truth, 0.4, _gen(0))
    out = complete(Quadratic(-truth["adj"], scale=0.5), domain, truth, known, sampler=default_sampler("euler"),
                   generator=_gen(2))
    scores = completion_accuracy(out, truth)
    assert scores.known_kept == 1.0  # the likelihood wins where it observes
    assert scores.hidden_accuracy == 0.0  # and the hidden pairs are the potential's


def test_the_density_potential_reproduces_the_edge_frequency_baseline(truth, domain):
    known = random_known_mask(truth, 0.5, _gen(0))
    out = complete(EdgeDensityPotential.from_domain(domain), domain, truth, known, sampler=default_sampler("euler"),
                   chains=3, generator=_gen(4))
    scores = completion_accuracy(out, truth)
    rho = edge_density(domain)
    assert 0 < rho < 0.5 and scores.edge_density == rho
    assert scores.known_kept == 1.0
    assert scores.hidden_accuracy == scores.baseline_accuracy == 1 - scores.hidden_edge_fraction
    assert out.samples["adj"].shape == (6, 10, 10) and out.chains == 3
    # common neighbours among the known edges rank the two-clique graphs' hidden pairs well
    assert scores.common_neighbours_auc > 0.8


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # PyG's import
def test_completion_with_a_tiny_untrained_gin_keeps_the_known_pairs(truth, domain):
    from energyflow.domains.graph.networks import DenseGINPotential

    torch.manual_seed(0)
    net = DenseGINPotential(hidden=8, depth=1, walk_steps=1, edge_layers=1, edge_hidden=4)
    graphs = domain.decode(truth)
    known = random_known_mask(truth, 0.3, _gen(0))
    out = complete(net, domain, graphs, known, sampler=default_sampler("euler"), chains=2, generator=_gen(5))
    scores = completion_accuracy(out, graphs, known)
    assert scores.known_kept == 1.0
    assert 0.0 <= scores.hidden_accuracy <= 1.0 and scores.hidden_pairs > 0


def test_completion_accuracy_refuses_truth_that_does_not_match(truth, domain):
    known = random_known_mask(truth, 0.5, _gen(0))
    out = complete(EdgeDensityPotential.from_domain(domain), domain, truth, known, sampler=default_sampler("euler"))
    with pytest.raises(InvalidValueError, match="truth"):
        completion_accuracy(out, encode([nx.path_graph(3)], max_nodes=10))
    with pytest.raises(InvalidValueError, match="truth holds"):
        completion_accuracy(out, [nx.path_graph(3)])
    with pytest.raises(InvalidTypeError):
        completion_accuracy({"adj": 1}, truth)


def test_auc_on_hand_cases():
    labels = torch.tensor([0, 0, 1, 1])
    assert _auc(torch.tensor([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert _auc(torch.tensor([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert _auc(torch.zeros(4), labels) == 0.5  # a constant score, the baseline's
    assert _auc(torch.tensor([0.1, 0.3, 0.2, 0.4]), labels) == 0.75
    assert math.isnan(_auc(torch.ones(3), torch.ones(3)))


# -- steering -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soft():
    """A density potential soft enough that a soft constraint can move it (pair std ~0.2 at eps_max)."""
    def make(domain):
        return EdgeDensityPotential.from_domain(domain, scale=1.0)
    return make


@pytest.mark.parametrize("guidance", [True, False])
def test_steering_toward_more_edges_raises_the_edge_count_against_the_control(domain, soft, guidance):
    V = soft(domain)
    out = steer(V, domain, 12, "edge_count", 30.0, scale=0.25, mmd=False, guidance=guidance,
                sampler=default_sampler("euler"), generator=_gen(0))
    assert out.values.shape == (12,) and out.statistic == "edge_count"
    assert out.shift > 5
    assert out.error < out.control_error
    assert out.values.tolist() == [float(g.number_of_edges()) for g in out.graphs]
    # the control is the same run without the term: same node counts
    assert [g.number_of_nodes() for g in out.graphs] == [g.number_of_nodes() for g in out.control_graphs]
    # negative control: a term whose target is the control's own mean moves nothing much
    same = steer(V, domain, 12, "edge_count", float(out.control_values.mean()), scale=5.0, mmd=False,
                 sampler=default_sampler("euler"), generator=_gen(0))
    assert abs(same.shift) < 2


def test_steering_down_and_on_triangles_and_max_degree(domain, soft):
    V = soft(domain)
    fewer = steer(V, domain, 10, "edge_count", 0.0, scale=0.5, mmd=False, sampler=default_sampler("euler"),
                  generator=_gen(1))
    assert fewer.shift < -2
    tri = steer(V, domain, 10, "triangle_count", 20.0, scale=1.0, mmd=False, sampler=default_sampler("euler"),
                generator=_gen(2))
    assert tri.shift > 2
    hub = steer(V, domain, 10, "max_degree", 8.0, scale=0.25, options={"temperature": 0.5}, mmd=False,
                sampler=default_sampler("euler"), generator=_gen(3))
    assert hub.shift > 1
    assert hub.values.tolist() == [float(max(d for _, d in g.degree())) for g in hub.graphs]  # exact, not smooth


def test_steering_reports_mmds_against_the_test_graphs(domain, soft):
    out = steer(soft(domain), domain, 6, "edge_count", 20.0, scale=0.5, sampler=default_sampler("euler"),
                generator=_gen(0))
    assert set(out.mmd) == set(out.control_mmd) == {"degree", "clustering", "orbit", "spectral"}
    assert all(v >= -1e-12 for v in out.mmd.values())


def test_statistic_terms_compose_with_the_potential_in_a_field(domain, truth):
    expr = EdgeDensityPotential.from_domain(domain) + GraphStatistic("triangle_count", 3.0) + graph_repulsion(4.0)
    assert [type(t).__name__ for _, t in expr.leaves()] == ["EdgeDensityPotential", "GraphStatistic", "LeafEnergy"]
    field = ef.compile(expr, domain.space)
    e, g = field.energy_and_grad(truth, eps=0.5)
    assert e.shape == (2,) and g["adj"].shape == (2, 10, 10) and g["mask"] is truth["mask"]
    torch.testing.assert_close(g["adj"], g["adj"].transpose(1, 2))


# -- repulsion and diversity -----------------------------------------------------------------------


def test_repulsion_on_the_adjacency_leaf_is_the_library_repulsion(truth):
    rep = graph_repulsion(sigma=3.0)
    assert rep.coupling == "tempered" and rep.couples_batch
    torch.testing.assert_close(rep(truth), ef.Repulsion(sigma=3.0)(truth["adj"]))
    with pytest.raises(AttributeError):  # what the library's tensor term does on a dict state
        ef.Repulsion(sigma=3.0)(truth)
    with pytest.raises(InvalidValueError, match="'adj' leaf"):
        LeafEnergy(ef.Repulsion(1.0))(torch.zeros(2, 3))


def test_diversity_on_hand_made_sets():
    p4 = nx.path_graph(4)
    same = diversity([p4, nx.relabel_nodes(p4, {0: 3, 3: 0}), p4])
    assert same.unique == pytest.approx(1 / 3) and same.degree_l1 == 0.0 and same.spectral_w1 == pytest.approx(0.0)
    mixed = diversity([p4, nx.star_graph(3), nx.complete_graph(4)])
    assert mixed.unique == 1.0 and mixed.degree_l1 > 0 and mixed.spectral_w1 > 0
    # degrees 2211, 3111, 3333: L1 2, 6, 6 -> mean 14/3
    assert mixed.degree_l1 == pytest.approx(14 / 3)
    assert math.isnan(diversity([p4]).degree_l1)
    assert diversity(encode([p4, nx.star_graph(3)])).unique == 1.0
    with pytest.raises(InvalidValueError):
        diversity([])


def test_repulsion_makes_the_set_more_diverse_than_the_control(domain, soft):
    V = soft(domain)
    out = diverse(V, domain, 12, sigma=1.0, mmd=False, sampler=default_sampler("euler"), generator=_gen(0))
    assert out.diversity.graphs == out.control_diversity.graphs == 12 and out.on == "adjacency"
    assert out.diversity.degree_l1 > out.control_diversity.degree_l1
    by_degrees = diverse(V, domain, 12, sigma=1.0, on="degrees", mmd=False, sampler=default_sampler("euler"),
                         generator=_gen(0))
    assert by_degrees.diversity.degree_l1 > 1.2 * by_degrees.control_diversity.degree_l1
    assert by_degrees.diversity.spectral_w1 > by_degrees.control_diversity.spectral_w1  # not what it acts on
    # negative control: a very wide repulsion changes nothing
    weak = diverse(V, domain, 12, sigma=1e3, mmd=False, sampler=default_sampler("euler"), generator=_gen(0))
    assert weak.diversity.degree_l1 == pytest.approx(weak.control_diversity.degree_l1)
    # during the transport (an energy, not tempered) it acts long before t = 1
    moved = diverse(V, domain, 12, sigma=8.0, on="degrees", transport=True, mmd=False,
                    sampler=default_sampler("euler"), generator=_gen(0))
    assert moved.transport and moved.diversity.degree_l1 > moved.control_diversity.degree_l1


def test_degree_profile_is_invariant_to_node_order_and_its_repulsion_gradient_is_symmetric(truth):
    g = nx.gnp_random_graph(9, 0.4, seed=1)
    h = nx.relabel_nodes(g, dict(zip(range(9), [3, 7, 0, 8, 1, 5, 2, 6, 4])))
    torch.testing.assert_close(degree_profile(encode([g], 10)), degree_profile(encode([h], 10)))
    rep = graph_repulsion(2.0, on="degrees")
    assert rep.couples_batch and rep.coupling == "tempered"
    assert graph_repulsion(on="degrees", transport=True).coupling == "energy"
    a = (truth["adj"] + 0.2 * torch.randn(truth["adj"].shape, generator=_gen(0))).requires_grad_(True)
    rep({"adj": a, "mask": truth["mask"]}).sum().backward()
    torch.testing.assert_close(a.grad, a.grad.transpose(1, 2))
    pair = truth["mask"].unsqueeze(1) & truth["mask"].unsqueeze(2) & ~torch.eye(10, dtype=torch.bool)
    assert float(a.grad[~pair].abs().max()) == 0.0
    with pytest.raises(InvalidValueError, match="unknown repulsion features"):
        graph_repulsion(on="spectrum")
