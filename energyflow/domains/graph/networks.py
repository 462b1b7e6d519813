"""The graph domain's default potential: dense GIN layers of PyTorch Geometric on a relaxed adjacency.

The state is ``{"adj": (B, N, N), "mask": (B, N)}`` (the adjacency's continuous relaxation
and the node mask, real nodes first). The network:

1. symmetrises the adjacency and zeroes its diagonal and every entry outside the real
   nodes, ``A = (adj + adj^T) / 2 * m m^T * (1 - I)``, so that the energy, and therefore its
   gradient in ``adj``, is symmetric and ignores padding;
2. computes node features from ``A`` alone: ``1``, the degree divided by the graph's own
   node count (not the padded ``N``), and the
   random-walk return probabilities ``diag(P^k)``, ``k = 1..rw_steps``, of ``P = D^-1 A``
   (degrees clamped below at 1e-6, so a continuous ``A`` is safe);
3. applies ``depth`` :class:`torch_geometric.nn.DenseGINConv` layers (each a two-layer MLP
   with SiLU; ``add_loop=False``, the mask passed on);
4. sums each layer's node states over the real nodes (a masked sum, as GIN's readout
   concatenates the layers) and maps them by an MLP to one energy per graph, ``(B,)``.

Node permutations leave it unchanged, and so does padding with extra masked nodes.

Example:
    >>> import torch
    >>> net = DenseGINPotential(hidden=8, depth=2)
    >>> adj = torch.zeros(3, 5, 5); mask = torch.ones(3, 5, dtype=torch.bool)
    >>> net({"adj": adj, "mask": mask}).shape
    torch.Size([3])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from energyflow.errors import InvalidValueError

__all__ = ["DenseGINPotential"]


class DenseGINPotential(nn.Module):
    """Permutation-invariant potential on dense masked graphs, ``{"adj", "mask"} -> (B,)``.

    Args:
        hidden (int): width of every layer.
        depth (int): number of DenseGINConv layers (>= 1).
        rw_steps (int): random-walk return probabilities used as node features (>= 0).
    """

    def __init__(self, hidden: int = 64, depth: int = 3, rw_steps: int = 4) -> None:
        super().__init__()
        from torch_geometric.nn import DenseGINConv

        if hidden < 1 or depth < 1 or rw_steps < 0:
            raise InvalidValueError(f"need hidden >= 1, depth >= 1, rw_steps >= 0; got {hidden}, {depth}, {rw_steps}")
        self.rw_steps = int(rw_steps)
        features = 2 + self.rw_steps
        self.convs = nn.ModuleList()
        for k in range(depth):
            mlp = nn.Sequential(nn.Linear(features if k == 0 else hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.convs.append(DenseGINConv(mlp, train_eps=True))
        self.act = nn.SiLU()
        self.readout = nn.Sequential(nn.Linear(depth * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def node_features(self, A: Tensor, m: Tensor) -> Tensor:
        """``(B, N, 2 + rw_steps)``: 1, degree / n, diag(P^k) (zero on padding; n: the graph's node count)."""
        degree = A.sum(-1)
        feats = [m, degree / m.sum(-1, keepdim=True).clamp_min(1.0)]
        if self.rw_steps:
            P = A / degree.clamp_min(1e-6).unsqueeze(-1)
            Pk = P
            for _ in range(self.rw_steps):
                feats.append(torch.diagonal(Pk, dim1=-2, dim2=-1))
                Pk = Pk @ P
        return torch.stack(feats, -1) * m.unsqueeze(-1)

    def forward(self, state: dict) -> Tensor:
        if not isinstance(state, dict) or "adj" not in state or "mask" not in state:
            raise InvalidValueError("DenseGINPotential takes a state {'adj': (B, N, N), 'mask': (B, N)}")
        adj, mask = state["adj"], state["mask"]
        m = mask.to(adj.dtype)
        n = adj.shape[-1]
        pair = m.unsqueeze(1) * m.unsqueeze(2) * (1 - torch.eye(n, dtype=adj.dtype, device=adj.device))
        A = 0.5 * (adj + adj.transpose(1, 2)) * pair
        h = self.node_features(A, m)
        pooled = []
        for conv in self.convs:
            h = self.act(conv(h, A, mask=mask.bool(), add_loop=False)) * m.unsqueeze(-1)
            pooled.append(h.sum(1))
        return self.readout(torch.cat(pooled, -1)).squeeze(-1)
