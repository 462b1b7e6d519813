"""ValenceEnergy: zero on valid molecules, the hinge's value and gradient on over-valent ones, and its effect on a sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from energyflow.domains.molecule import MoleculeDomain, encode_arrays  # noqa: E402
from energyflow.domains.molecule.chem import smiles_to_graph  # noqa: E402
from energyflow.domains.molecule.valence import ValenceEnergy, soft_valence, valence_distribution  # noqa: E402
from energyflow.errors import InvalidValueError  # noqa: E402


def _state(atoms: list[int], bonds: list[list[int]], pad: int = 0) -> dict[str, torch.Tensor]:
    a = np.array([atoms + [-1] * pad])
    b = np.pad(np.array([bonds]), ((0, 0), (0, pad), (0, pad)))
    return encode_arrays(a, b)


def test_soft_valences_match_the_integer_ones_on_data_and_ignore_padding():
    atoms, bonds = smiles_to_graph("OC(=O)C#N")  # valences O 1, C 4, O 2, C 4, N 3
    valence, limit = soft_valence(_state(atoms, bonds.tolist(), pad=3))
    expected = bonds.sum(1).tolist() + [0, 0, 0]
    # Softmax tails at 0.25: each channel weighs exp(-8) = 3.4e-4, so each of an atom's <= 4 other pairs is off by
    # at most 3 * 3 * 3.4e-4 = 3e-3 in order and the limit by 3 * 3 * 3.4e-4: within 2e-2 in all.
    assert torch.allclose(valence[0], torch.tensor(expected, dtype=torch.float32), atol=2e-2)
    assert torch.allclose(limit[0], torch.tensor([2, 4, 2, 4, 3, 0, 0, 0], dtype=torch.float32), atol=2e-2)
    half = soft_valence({k: (v * 0.5 if k != "mask" else v) for k, v in _state(atoms, bonds.tolist()).items()}, scale=0.5)
    assert torch.allclose(half[0][0], valence[0][:5])  # the temperature is in units of the scale


def test_the_valence_distribution_is_the_convolution_of_the_pairs():
    # Two real atoms and one pair read as (none, single, double, triple) with probabilities q: valence ~ q.
    s = _state([0, 0], [[0, 1], [1, 0]], pad=1)
    s["adj"][0, 0, 1] = s["adj"][0, 1, 0] = torch.tensor([0.0, 0.25, -0.5, 0.1])
    q = torch.softmax(torch.tensor([0.0, 0.25, -0.5, 0.1]) / 0.25, 0)
    d = valence_distribution(s)
    assert d.shape == (1, 3, 7)
    assert torch.allclose(d[0, 0, :4], q) and torch.allclose(d[0, 1, :4], q) and float(d[0, 0, 4:].sum()) == 0.0
    assert d[0, 2].tolist() == [1.0, 0, 0, 0, 0, 0, 0]  # padding
    # A third real atom bonded to atom 0 by a sure single bond shifts atom 0's distribution by one.
    s3 = _state([0, 0, 0], [[0, 1, 1], [1, 0, 0], [1, 0, 0]])
    s3["adj"][0, 0, 1] = s3["adj"][0, 1, 0] = torch.tensor([0.0, 0.25, -0.5, 0.1])
    d3 = valence_distribution(s3, temperature=0.01)  # the sure bond exactly (exp(-200) tails)
    assert torch.allclose(d3[0, 0, 1:5], torch.softmax(torch.tensor([0.0, 0.25, -0.5, 0.1]) / 0.01, 0), atol=1e-6)


def test_every_nci_molecule_costs_nothing():
    d = MoleculeDomain("nci")
    e = ValenceEnergy(strength=1.0)(d.train_data())
    # A valid neutral molecule is within its caps; only the tails (exp(-8) = 3.4e-4 per channel) reach beyond: a
    # saturated atom has ~27 of them (8 pairs x 3 bond types, 3 atom types) with hinges 1..9, about 1e-2 per atom,
    # nine atoms ~0.1; measured max 0.22. One bond too many costs 1 (below), so the two are well apart.
    assert float(e.max()) < 0.3


def test_the_hinge_is_the_squared_excess_and_charged_allows_one_more_on_n_and_o():
    # Ammonium-like N with four single bonds to C: excess 1 when neutral, 0 with GDSS's +1 rule.
    atoms = [1, 0, 0, 0, 0]
    bonds = [[0, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]
    s = _state(atoms, bonds)
    # Tolerances: the excess is 1 up to the tails (3.4e-4 per channel), whose outcomes add a few 1e-2 at most.
    assert float(ValenceEnergy(3.0)(s)) == pytest.approx(3.0, abs=0.2)  # 3 * 1^2
    assert float(ValenceEnergy(3.0, charged=True)(s)) == pytest.approx(0.0, abs=0.05)
    # A carbon with a double and a triple bond (valence 5): 1^2; the terminal carbons are within their 4.
    five = _state([0, 0, 0], [[0, 2, 3], [2, 0, 0], [3, 0, 0]])
    assert float(ValenceEnergy(1.0)(five)) == pytest.approx(1.0, abs=0.05)
    # Over-valent F (a double bond, limit 1): 1; O with a triple bond and a single one (4 > 2): 2^2, and the F: 0.
    assert float(ValenceEnergy(1.0)(_state([3, 0], [[0, 2], [2, 0]]))) == pytest.approx(1.0, abs=0.05)
    assert float(ValenceEnergy(1.0)(_state([2, 0, 3], [[0, 3, 1], [3, 0, 0], [1, 0, 0]]))) == pytest.approx(4.0, abs=0.1)


def test_the_gradient_lowers_the_over_valent_bonds_and_is_symmetric():
    s = _state([0, 0, 0], [[0, 2, 3], [2, 0, 0], [3, 0, 0]])
    adj = s["adj"].clone().requires_grad_(True)
    e = ValenceEnergy(1.0)({"x": s["x"], "adj": adj, "mask": s["mask"]}).sum()
    (g,) = torch.autograd.grad(e, adj)
    # Committed bonds feel little (exp(-8) tails), but the sign is right: the over-valent carbon's bonds lose order.
    assert float(g[0, 0, 2, 3]) > 0 and float(g[0, 0, 2, 0]) < 0
    assert torch.allclose(g, g.transpose(1, 2))
    assert float(g[0, 0, 0].abs().sum()) == 0.0  # the diagonal plays no part


def test_bad_arguments_and_states_are_refused():
    with pytest.raises(InvalidValueError, match="strength"):
        ValenceEnergy(0.0)
    with pytest.raises(InvalidValueError, match="scale"):
        ValenceEnergy(1.0, scale=float("inf"))
    with pytest.raises(InvalidValueError, match="molecule state"):
        ValenceEnergy()(torch.zeros(2, 3))
    s = _state([0, 0], [[0, 1], [1, 0]])
    with pytest.raises(InvalidValueError, match="adj"):
        ValenceEnergy()({"x": s["x"], "adj": s["adj"][..., :3], "mask": s["mask"]})


def test_descent_on_the_term_alone_pushes_a_near_tie_through():
    # The failure of generated molecules: a pair whose argmax has barely committed. Here the carbon's triple bond
    # leads "none" by 0.1; plain descent on the energy (no potential; the gradient is symmetric and masked, so no
    # projection is needed) flips it, and the molecule decodes valid.
    from energyflow.domains.molecule.chem import graph_to_mol, is_sanitizable
    from energyflow.domains.molecule.domain import decode_graphs

    s = _state([0, 0, 0], [[0, 2, 3], [2, 0, 0], [3, 0, 0]])
    adj = s["adj"].clone()
    adj[0, 0, 2, 0] = adj[0, 2, 0, 0] = 0.9
    term = ValenceEnergy(1.0)
    x = s["x"].clone()
    assert not is_sanitizable(graph_to_mol(*decode_graphs({"x": x, "adj": adj, "mask": s["mask"]})[0]))
    for _ in range(100):
        x.requires_grad_(True)
        adj.requires_grad_(True)
        gx, ga = torch.autograd.grad(term({"x": x, "adj": adj, "mask": s["mask"]}).sum(), (x, adj))
        x, adj = (x - 0.02 * gx).detach(), (adj - 0.02 * ga).detach()
    assert is_sanitizable(graph_to_mol(*decode_graphs({"x": x, "adj": adj, "mask": s["mask"]})[0]))
    assert float(term({"x": x, "adj": adj, "mask": s["mask"]})) < 0.05
