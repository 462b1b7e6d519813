"""The graph domain: encoding, sources that copy masks, node-count sampling, permutations, files."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from energyflow.domains.base import Domain
from energyflow.domains.graph import GraphDomain, encode, load_graph_file, save_graph_file
from energyflow.errors import InvalidValueError
from energyflow.registry import DOMAINS


@pytest.fixture(scope="module")
def domain():
    return GraphDomain("community_small")


def test_the_domain_is_registered_and_follows_the_protocol(domain):
    assert isinstance(domain, Domain)
    assert DOMAINS.get("graph") is GraphDomain
    assert (len(domain.train_graphs), len(domain.test_graphs), domain.max_nodes) == (80, 20, 20)


def test_encoding_is_signed_symmetric_and_zero_off_the_graph(domain):
    s = encode([nx.path_graph(3), nx.complete_graph(2)], max_nodes=4)
    adj, mask = s["adj"], s["mask"]
    assert torch.equal(adj, adj.transpose(1, 2)) and mask.sum(1).tolist() == [3, 2]
    assert adj[0, 0, 1] == 1 and adj[0, 0, 2] == -1 and adj[1, 0, 1] == 1
    assert bool((adj[:, :, 3] == 0).all()) and bool((torch.diagonal(adj, dim1=1, dim2=2) == 0).all())
    # decoding the encoding gives the graphs back (threshold 0 on the signed scale)
    back = domain.decode(domain.test_data())
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(back, domain.test_graphs))


def test_training_draws_permute_nodes_but_keep_the_graphs(domain):
    x = domain.sample_data(64, torch.Generator().manual_seed(0))
    graphs = domain.decode(x)
    degrees = {tuple(sorted(d for _, d in g.degree())) for g in domain.train_graphs}
    assert all(tuple(sorted(d for _, d in g.degree())) in degrees for g in graphs)
    # the real nodes stay first, so the masks are prefixes
    n = x["mask"].sum(1)
    assert torch.equal(x["mask"], torch.arange(20).unsqueeze(0) < n.unsqueeze(1))
    # negative control: without permutation the first training graph comes back in its own node order
    fixed = GraphDomain("community_small", permute=False)
    same = fixed.sample_data(64, torch.Generator().manual_seed(0))
    first = fixed.train_data(1)["adj"][0]
    hits = [torch.equal(a, first) for a in same["adj"]]
    permuted = [torch.equal(a, first) for a in x["adj"]]
    assert any(hits) and sum(permuted) < sum(hits)


def test_sources_copy_masks_and_new_samples_draw_training_sizes(domain):
    x = domain.sample_data(32, torch.Generator().manual_seed(1))
    s = domain.sample_source(like=x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(s["mask"], x["mask"]) and torch.equal(s["adj"], s["adj"].transpose(1, 2))
    pair = (x["mask"].unsqueeze(1) & x["mask"].unsqueeze(2)).float()
    assert float((s["adj"] * (1 - pair)).abs().sum()) == 0
    new = domain.sample_source(2000, generator=torch.Generator().manual_seed(3))
    sizes = new["mask"].sum(1).float()
    train_sizes = torch.tensor([g.number_of_nodes() for g in domain.train_graphs], dtype=torch.float)
    # 2000 draws: the mean node count is within 4 standard errors of the training mean
    assert abs(float(sizes.mean() - train_sizes.mean())) < 4 * float(train_sizes.std()) / 2000 ** 0.5
    assert set(sizes.long().tolist()) <= set(train_sizes.long().tolist())


def test_the_default_network_gives_one_energy_per_graph(domain):
    torch.manual_seed(0)
    net = domain.default_network(hidden=8, depth=2)
    x = domain.sample_data(5, torch.Generator().manual_seed(0))
    assert net(x).shape == (5,)
    noise = domain.sample_source(like=x, generator=torch.Generator().manual_seed(1))
    assert bool(torch.isfinite(net(noise)).all())


def test_user_graphs_from_lists_and_files(tmp_path):
    graphs = [nx.cycle_graph(k) for k in range(3, 13)]
    d = GraphDomain.from_graphs(graphs, seed=1)
    assert (len(d.train_graphs), len(d.test_graphs), d.max_nodes) == (8, 2, 12)
    path = save_graph_file(graphs, tmp_path / "cycles.pt")
    loaded = load_graph_file(path)
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(loaded, graphs))
    d2 = GraphDomain(path=path, seed=1)
    assert d2.dataset == "cycles" and len(d2.test_graphs) == 2
    # a dict of edge indices loads too
    torch.save({"edge_index": [torch.tensor([[0, 1], [1, 0]])], "num_nodes": [3]}, tmp_path / "one.pt")
    (g,) = load_graph_file(tmp_path / "one.pt")
    assert g.number_of_nodes() == 3 and g.number_of_edges() == 1


class Evil:
    """A class the safe loader must refuse to unpickle."""


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(InvalidValueError, match="unknown graph data set"):
        GraphDomain("cora")
    with pytest.raises(InvalidValueError, match="max_nodes"):
        GraphDomain("community_small", max_nodes=10)
    with pytest.raises(InvalidValueError, match="gaussian"):
        GraphDomain(source="uniform")
    with pytest.raises(FileNotFoundError):
        GraphDomain(path=tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(InvalidValueError, match="list of PyG Data"):
        load_graph_file(tmp_path / "bad.pt")

    torch.save([Evil()], tmp_path / "evil.pt")  # an arbitrary class is never unpickled
    with pytest.raises(InvalidValueError, match="safely"):
        load_graph_file(tmp_path / "evil.pt")
    d = GraphDomain("community_small")
    with pytest.raises(InvalidValueError, match="graph state"):
        d.decode(torch.zeros(2, 3, 3))
    with pytest.raises(InvalidValueError, match="n must be"):
        d.sample_data(0)
