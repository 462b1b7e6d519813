"""A tiny graph-shaped domain for tests of pytree states (node features, adjacency, mask).

States are ``{"x": (B, n, F), "adj": (B, n, n), "mask": (B, n) bool}`` on the product of
the node-masked and the symmetric masked spaces, both reading the mask from the state.
Graphs have 2..n real nodes (the first ones), random edges among them; node features
are ``[1, degree / n]``. Imported by test modules (tests/ is on sys.path).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import energyflow as ef
from energyflow.domains.base import Domain
from energyflow.spaces import NodeMasked, ProductSpace, SymmetricMasked

N, F = 4, 2


def graph_space(n: int = N, f: int = F) -> ProductSpace:
    return ProductSpace({"x": NodeMasked(n, f, mask="mask"), "adj": SymmetricMasked(n, mask="mask")})


def random_graphs(b: int, generator: torch.Generator, n: int = N, f: int = F, dtype=torch.float32) -> dict:
    sizes = torch.randint(2, n + 1, (b,), generator=generator)
    mask = torch.arange(n).unsqueeze(0) < sizes.unsqueeze(1)
    upper = torch.triu((torch.rand(b, n, n, generator=generator) < 0.5).to(dtype), diagonal=1)
    pair = (mask.unsqueeze(1) & mask.unsqueeze(2)).to(dtype)
    adj = (upper + upper.transpose(1, 2)) * pair
    x = torch.zeros(b, n, f, dtype=dtype)
    x[..., 0] = mask.to(dtype)
    x[..., 1] = adj.sum(-1) / n
    return {"x": x, "adj": adj, "mask": mask}


def random_masks(b: int, generator: torch.Generator, n: int = N) -> Tensor:
    sizes = torch.randint(2, n + 1, (b,), generator=generator)
    return torch.arange(n).unsqueeze(0) < sizes.unsqueeze(1)


class GraphNet(nn.Module):
    """A small permutation-invariant potential: per-node MLP, one round of messages
    along the (continuous) adjacency, masked sum over nodes -> (B,)."""

    def __init__(self, f: int = F, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(f, hidden), nn.SiLU())
        self.readout = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, state: dict) -> Tensor:
        m = state["mask"].to(state["x"].dtype).unsqueeze(-1)
        h = self.embed(state["x"]) * m
        msg = state["adj"] @ h
        return (self.readout(torch.cat([h, msg], -1)) * m).sum((1, 2))


class Quadratic(ef.Energy):
    """U = (|x|^2 + |A|_F^2) / 2: on the graph space, free features ~ N(0, T) and free
    adjacency entries ~ N(0, T / 2) (each counts twice in the Frobenius norm)."""

    def forward(self, state: dict) -> Tensor:
        return 0.5 * (state["x"].pow(2).sum((1, 2)) + state["adj"].pow(2).sum((1, 2)))


class TinyGraph(Domain):
    """Random small graphs as a domain (for two training steps on pytree states)."""

    name = "tinygraph"
    options = ()
    network_options = ()

    def __init__(self) -> None:
        self.space = graph_space()

    def sample_data(self, n, generator=None, device=None):
        return random_graphs(n, generator or torch.Generator().manual_seed(0))

    def sample_source(self, n=None, generator=None, device=None, like=None):
        if like is None:  # new samples: node counts from the data distribution
            like = random_graphs(n, generator or torch.Generator().manual_seed(0))
        return super().sample_source(n, generator, device, like)

    def default_network(self):
        return GraphNet()

    def train_data(self, n=None, generator=None):
        return random_graphs(n or 64, generator or torch.Generator().manual_seed(1))

    def test_data(self, n=None, generator=None):
        return random_graphs(n or 64, torch.Generator().manual_seed(2))

    def metrics(self, samples, reference=None):
        ref = reference if reference is not None else self.test_data()
        return {"edge_density_gap": float((samples["adj"].mean() - ref["adj"].mean()).abs())}

    def decode(self, samples):
        return [(s["adj"] > 0.5).int() for s in (dict(zip(samples, v)) for v in zip(*samples.values()))]
