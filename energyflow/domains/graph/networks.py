"""The graph domain's default potential: dense GIN layers of PyTorch Geometric on a relaxed adjacency.

The state is ``{"adj": (B, N, N), "mask": (B, N)}`` (the adjacency's continuous relaxation
and the node mask, real nodes first). The graph domain encodes edges as ``+1`` and
non-edges as ``-1`` (``signed=True``, the default); with ``signed=False`` the input is on
the ``{0, 1}`` scale. The network:

1. maps the input to the ``{0, 1}`` scale (``(adj + 1) / 2`` when signed), symmetrises
   it and zeroes its diagonal and every entry outside the real nodes,
   ``A = (a + a^T) / 2 * m m^T * (1 - I)``, so that the energy, and therefore its gradient
   in ``adj``, is symmetric and ignores padding;
2. computes node features from ``A`` alone, polynomials in ``A`` so that they are smooth
   and bounded on any real relaxation (noise included): ``1``, the degree divided by the
   graph's own node count ``n`` (not the padded ``N``), and the closed-walk counts
   ``diag(A^k) / n^(k-1)``, ``k = 3 .. 2 + walk_steps`` (``k = 3``: twice the triangles
   at the node);
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

__all__ = ["DenseGINPotential", "PPGNPotential", "power_features"]


class DenseGINPotential(nn.Module):
    """Permutation-invariant potential on dense masked graphs, ``{"adj", "mask"} -> (B,)``.

    Args:
        hidden (int): width of every layer.
        depth (int): number of DenseGINConv layers (>= 1).
        walk_steps (int): closed-walk features ``diag(A^k) / n^(k-1)`` for ``k = 3 ..
            2 + walk_steps`` (>= 0).
        signed (bool): the input encodes edges as +1 and non-edges as -1 (the graph
            domain's encoding); False for the {0, 1} scale.
        edge_layers (int): PPGN-style pair layers (0: node states only).
        edge_hidden (int): width of the pair states.
        power_steps (int): spectral pair features (0: none). The pair layers start also
            from ``n P_k / ||P_k||_F`` for ``P_k = C^(2^k)``, ``k = 1 .. power_steps``, where
            ``C`` is the signed adjacency centred on its mean over the real pairs: power
            iteration towards the leading eigenprojections ``u u^T``, whose signs say
            which nodes go together (what spectral clustering reads, and what a few
            message-passing or pair layers cannot compute from a noise-like state).
            Polynomials over a smooth norm, so the energy's gradients stay bounded.
        aggregate (str): ``"sum"`` (GIN's) or ``"mean"``: messages along ``A / n``. Use
            ``"mean"`` for graphs of more than a few dozen nodes: near the dense noise the
            flow starts from, summed messages grow like ``n`` per layer and the first
            gradients overflow (planar, 64 nodes: flow loss 4e11 at step 10).
    """

    def __init__(self, hidden: int = 64, depth: int = 3, walk_steps: int = 2, signed: bool = True,
                 edge_layers: int = 2, edge_hidden: int = 32, aggregate: str = "sum", power_steps: int = 0) -> None:
        super().__init__()
        from torch_geometric.nn import DenseGINConv

        if hidden < 1 or depth < 1 or walk_steps < 0 or edge_layers < 0 or power_steps < 0:
            raise InvalidValueError(f"need hidden >= 1, depth >= 1, walk_steps >= 0, edge_layers >= 0, power_steps >= 0; "
                                    f"got {hidden}, {depth}, {walk_steps}, {edge_layers}, {power_steps}")
        if aggregate not in ("sum", "mean"):
            raise InvalidValueError(f"aggregate must be 'sum' or 'mean', got {aggregate!r}")
        self.walk_steps, self.signed, self.aggregate = int(walk_steps), bool(signed), aggregate
        self.power_steps = int(power_steps)
        features = 2 + self.walk_steps
        self.convs = nn.ModuleList()
        for k in range(depth):
            mlp = nn.Sequential(nn.Linear(features if k == 0 else hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.convs.append(DenseGINConv(mlp, train_eps=True))
        self.act = nn.SiLU()
        self.readout = nn.Sequential(nn.Linear(depth * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.edge_layers = int(edge_layers)
        if self.edge_layers:
            he = int(edge_hidden)
            self.node_to_edge = nn.Linear(hidden, he)
            self.edge_in = nn.Linear(3 + self.power_steps + 2 * he, he)
            self.edge_left = nn.ModuleList(nn.Linear(he, he) for _ in range(self.edge_layers))
            self.edge_right = nn.ModuleList(nn.Linear(he, he) for _ in range(self.edge_layers))
            self.edge_update = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * he, he), nn.SiLU(), nn.Linear(he, he)) for _ in range(self.edge_layers))
            self.edge_readout = nn.Sequential(nn.Linear(he, he), nn.SiLU(), nn.Linear(he, 1))

    def node_features(self, A: Tensor, m: Tensor) -> Tensor:
        """``(B, N, 2 + walk_steps)``: 1, degree / n, diag(A^k) / n^(k-1) for k >= 3 (zero on padding)."""
        n = m.sum(-1, keepdim=True).clamp_min(1.0)
        feats = [m, A.sum(-1) / n]
        if self.walk_steps:
            An = A / n.unsqueeze(-1)  # diag((A / n)^k) * n = diag(A^k) / n^(k-1)
            Ak = An @ An
            for _ in range(self.walk_steps):
                Ak = Ak @ An
                feats.append(torch.diagonal(Ak, dim1=-2, dim2=-1) * n)
        return torch.stack(feats, -1) * m.unsqueeze(-1)

    def forward(self, state: dict) -> Tensor:
        if not isinstance(state, dict) or "adj" not in state or "mask" not in state:
            raise InvalidValueError("DenseGINPotential takes a state {'adj': (B, N, N), 'mask': (B, N)}")
        adj, mask = state["adj"], state["mask"]
        m = mask.to(adj.dtype)
        n = adj.shape[-1]
        pair = m.unsqueeze(1) * m.unsqueeze(2) * (1 - torch.eye(n, dtype=adj.dtype, device=adj.device))
        a = 0.5 * (adj + 1) if self.signed else adj
        A = 0.5 * (a + a.transpose(1, 2)) * pair
        h = self.node_features(A, m)
        messages = A / m.sum(-1).clamp_min(1.0)[:, None, None] if self.aggregate == "mean" else A
        pooled = []
        for conv in self.convs:
            h = self.act(conv(h, messages, mask=mask.bool(), add_loop=False)) * m.unsqueeze(-1)
            pooled.append(h.sum(1))
        energy = self.readout(torch.cat(pooled, -1)).squeeze(-1)
        if self.edge_layers:
            energy = energy + self.edge_energy(A, h, m, pair)
        return energy

    def edge_energy(self, A: Tensor, h: Tensor, m: Tensor, pair: Tensor) -> Tensor:
        """``(B,)``: pair states refined by PPGN-style layers, summed over the real node pairs.

        A pair ``(i, j)`` starts from ``A_ij``, ``(A^2)_ij / n``, ``(A^3)_ij / n^2`` (common
        neighbours and 3-walks: what tells two nodes of one community from two of
        different ones), the spectral features of ``power_steps`` (:func:`power_features`)
        and the node states ``h_i + h_j``, ``h_i * h_j``; each layer adds ``MLP([e, (L e)
        @ (R e) / n])``, the channel-wise matrix product over the real nodes (Maron et al.
        2019, provably more expressive than message passing).
        """
        n = m.sum(-1).clamp_min(1.0)[:, None, None]
        A2 = A @ A
        walks = torch.stack([A, A2 / n, (A2 @ A) / n**2] + power_features(A, pair, self.power_steps), -1)
        h = self.node_to_edge(h)
        e = self.edge_in(torch.cat([walks, h.unsqueeze(1) + h.unsqueeze(2), h.unsqueeze(1) * h.unsqueeze(2)], -1))
        e = self.act(e) * pair.unsqueeze(-1)
        for left, right, update in zip(self.edge_left, self.edge_right, self.edge_update):
            L = (left(e) * pair.unsqueeze(-1)).permute(0, 3, 1, 2)
            R = (right(e) * pair.unsqueeze(-1)).permute(0, 3, 1, 2)
            prod = (L @ R).permute(0, 2, 3, 1) / n.unsqueeze(-1)
            e = (e + update(torch.cat([e, prod], -1))) * pair.unsqueeze(-1)
        return (self.edge_readout(e).squeeze(-1) * pair).sum((1, 2))


def power_features(A: Tensor, pair: Tensor, steps: int) -> list[Tensor]:
    """Spectral pair features by repeated squaring: ``[n P_1, ..., n P_steps]``, each ``(B, N, N)``.

    ``C`` is ``A`` centred on its mean over the real pairs (zero elsewhere), ``P_k =
    C^(2^k) / ||C^(2^k)||_F``. As ``k`` grows ``P_k`` tends to ``u u^T`` for the
    eigenvector ``u`` of ``C`` with the largest ``|lambda|`` (for two communities: the
    vector whose signs split them), so ``n P_k`` is ``O(1)`` and sign-free.

    Args:
        A (Tensor): shape ``(B, N, N)``, symmetric, zero off the real pairs.
        pair (Tensor): shape ``(B, N, N)``, 1 on pairs of distinct real nodes.
        steps (int): number of squarings (0: no features).

    Example:
        >>> import torch
        >>> u = torch.tensor([1., 1., 1., -1., -1., -1.]) / 6 ** 0.5
        >>> pair = 1 - torch.eye(6)
        >>> A = ((torch.outer(u, u) > 0).float() * pair).unsqueeze(0)  # two triangles
        >>> P = power_features(A, pair.unsqueeze(0), 3)[-1][0]
        >>> bool(((P[0, 1:] > 0) == (u[1:] > 0)).all())  # row 0 off its (masked) diagonal
        True
    """
    if steps <= 0:
        return []
    n = (pair.sum(-1) > 0).sum(-1).to(A.dtype).clamp_min(1.0)[:, None, None]
    pairs = pair.sum((1, 2), keepdim=True).clamp_min(1.0)
    P = (A - (A * pair).sum((1, 2), keepdim=True) / pairs) * pair
    out = []
    for _ in range(steps):
        P = P @ P
        P = P / torch.sqrt((P * P).sum((1, 2), keepdim=True) + 1e-12)
        out.append(n * P * pair)
    return out


class PPGNPotential(nn.Module):
    """Permutation-invariant potential on dense graphs with node features and edge channels, ``-> (B,)``.

    For attributed graphs (molecules: atom types on the nodes, bond types on the pairs).
    The state is ``{"x": (B, N, F), "adj": (B, N, N, C), "mask": (B, N)}`` (``x`` optional
    with ``node_features=0``; ``adj`` may be ``(B, N, N)`` with ``edge_channels=1``). All
    of it is one pair tensor ``T`` of shape ``(B, N, N, D)``, as provably powerful graph
    networks hold a graph (Maron et al. 2019): off the diagonal the symmetrised edge
    channels ``(a_ij + a_ji) / 2`` and the node pair ``x_i + x_j``, ``x_i * x_j``; on the
    diagonal the node's own ``x_i`` and an indicator; zero wherever a padding node is
    involved. Each of ``depth`` blocks adds ``MLP([T, (L T) @ (R T) / n])`` (the
    channel-wise matrix product over the ``n`` real nodes), and the energy is an MLP of
    the blocks' mean diagonal and mean off-diagonal states.

    Node permutations leave the energy unchanged and padding nodes do not enter it; the
    input is symmetrised, so the gradient in ``adj`` is symmetric.

    Args:
        node_features (int): F (0: no ``x`` leaf).
        edge_channels (int): C.
        hidden (int): width of the pair states.
        depth (int): PPGN blocks (>= 1).
        node_key, edge_key (str): the state's leaves.

    Example:
        >>> import torch
        >>> net = PPGNPotential(node_features=4, edge_channels=4, hidden=8, depth=2)
        >>> s = {"x": torch.randn(3, 5, 4), "adj": torch.randn(3, 5, 5, 4), "mask": torch.ones(3, 5, dtype=torch.bool)}
        >>> net(s).shape
        torch.Size([3])
        >>> perm = torch.tensor([2, 0, 1, 4, 3])
        >>> p = {"x": s["x"][:, perm], "adj": s["adj"][:, perm][:, :, perm], "mask": s["mask"]}
        >>> bool(torch.allclose(net(s), net(p), atol=1e-5))
        True
    """

    def __init__(self, node_features: int = 4, edge_channels: int = 4, hidden: int = 64, depth: int = 4,
                 node_key: str = "x", edge_key: str = "adj") -> None:
        super().__init__()
        if node_features < 0 or edge_channels < 1 or hidden < 1 or depth < 1:
            raise InvalidValueError(f"need node_features >= 0, edge_channels >= 1, hidden >= 1, depth >= 1; "
                                    f"got {node_features}, {edge_channels}, {hidden}, {depth}")
        self.node_features, self.edge_channels = int(node_features), int(edge_channels)
        self.node_key, self.edge_key = node_key, edge_key
        d_in = self.edge_channels + 3 * self.node_features + 1
        self.embed = nn.Linear(d_in, hidden)
        self.left = nn.ModuleList(nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
                                  for _ in range(depth))
        self.right = nn.ModuleList(nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
                                   for _ in range(depth))
        self.update = nn.ModuleList(nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
                                    for _ in range(depth))
        self.act = nn.SiLU()
        self.readout = nn.Sequential(nn.Linear(2 * hidden * (depth + 1), hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, state: dict) -> Tensor:
        keys = [self.edge_key, "mask"] + ([self.node_key] if self.node_features else [])
        if not isinstance(state, dict) or any(k not in state for k in keys):
            raise InvalidValueError(f"PPGNPotential takes a state with leaves {keys}")
        adj, mask = state[self.edge_key], state["mask"]
        if adj.dim() == 3:
            adj = adj.unsqueeze(-1)
        if adj.shape[-1] != self.edge_channels:
            raise InvalidValueError(f"expected {self.edge_channels} edge channels, got adj of shape {tuple(adj.shape)}")
        m = mask.to(adj.dtype)
        b, n_max = m.shape
        eye = torch.eye(n_max, dtype=adj.dtype, device=adj.device)
        both = m.unsqueeze(1) * m.unsqueeze(2)  # (B, N, N): pairs of real nodes, diagonal included
        off = (both * (1 - eye)).unsqueeze(-1)
        diag = (both * eye).unsqueeze(-1)
        parts = [0.5 * (adj + adj.transpose(1, 2)) * off]
        if self.node_features:
            x = state[self.node_key] * m.unsqueeze(-1)
            xi, xj = x.unsqueeze(2), x.unsqueeze(1)
            parts += [(xi + xj) * off, xi * xj * off, xi.expand(-1, -1, n_max, -1) * diag]
        parts.append(diag)
        pair = both.unsqueeze(-1)
        n = m.sum(-1).clamp_min(1.0)[:, None, None, None]
        t = self.act(self.embed(torch.cat(parts, -1))) * pair
        pooled = [self._pool(t, diag, off, n)]
        for left, right, update in zip(self.left, self.right, self.update):
            lt = (left(t) * pair).permute(0, 3, 1, 2)
            rt = (right(t) * pair).permute(0, 3, 1, 2)
            prod = (lt @ rt).permute(0, 2, 3, 1) / n
            t = (t + update(torch.cat([t, prod], -1))) * pair
            pooled.append(self._pool(t, diag, off, n))
        return self.readout(torch.cat(pooled, -1)).squeeze(-1)

    @staticmethod
    def _pool(t: Tensor, diag: Tensor, off: Tensor, n: Tensor) -> Tensor:
        """``(B, 2 H)``: mean of the diagonal (node) states and of the off-diagonal (pair) states."""
        n = n.reshape(-1, 1)
        return torch.cat([(t * diag).sum((1, 2)) / n, (t * off).sum((1, 2)) / (n * (n - 1)).clamp_min(1.0)], -1)
