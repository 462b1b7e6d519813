"""MoleculeDomain: encoding round trips, sources, the space, the default potential and the aligned coupling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")

from energyflow.domains.graph.coupling import PermutationOT  # noqa: E402
from energyflow.domains.graph.networks import PPGNPotential  # noqa: E402
from energyflow.domains.molecule import MoleculeDomain, decode_graphs, encode_arrays  # noqa: E402
from energyflow.domains.molecule.chem import graph_to_mol, mol_to_smiles, smiles_to_graph  # noqa: E402
from energyflow.domains.molecule.data import encode_smiles, split_smiles  # noqa: E402
from energyflow.errors import InvalidValueError  # noqa: E402
from energyflow.registry import DOMAINS  # noqa: E402


@pytest.fixture(scope="module")
def nci():
    return MoleculeDomain("nci")


def test_registered_and_sized(nci):
    assert DOMAINS.get("molecule") is MoleculeDomain
    assert nci.max_atoms == 9 and len(nci.train_smiles) == 335 and len(nci.test_smiles) == 84
    assert not set(nci.train_smiles) & set(nci.test_smiles) or len(set(nci.train_smiles) & set(nci.test_smiles)) < 5


def test_every_training_molecule_decodes_to_itself(nci):
    # The encoding is lossless for uncharged molecules: argmax decoding gives back the canonical SMILES.
    assert nci.decode_smiles(nci.train_data()) == nci.train_smiles
    assert nci.decode_smiles(nci.test_data()) == nci.test_smiles


def test_permuted_draws_are_the_same_molecules(nci):
    x = nci.sample_data(64, torch.Generator().manual_seed(3))
    fixed = MoleculeDomain("nci", permute=False).sample_data(64, torch.Generator().manual_seed(3))  # same molecules
    assert nci.decode_smiles(x) == nci.decode_smiles(fixed)
    assert set(nci.decode_smiles(x)) <= set(nci.train_smiles)
    assert not torch.equal(x["x"], fixed["x"])  # the atoms were really moved


def test_state_is_in_its_space(nci):
    x = nci.sample_data(16, torch.Generator().manual_seed(0))
    p = nci.space.project(x)
    for k in ("x", "adj"):
        assert torch.equal(p[k], x[k])
    adj, m = x["adj"], x["mask"].float()
    assert torch.equal(adj, adj.transpose(1, 2))
    assert (adj.diagonal(dim1=1, dim2=2) == 0).all()
    pad = 1 - m
    assert (x["x"] * pad[..., None]).abs().sum() == 0
    assert (adj * pad[:, :, None, None]).abs().sum() == 0


def test_sources_copy_masks_and_draw_training_sizes(nci):
    g = torch.Generator().manual_seed(0)
    data = nci.sample_data(32, g)
    z = nci.sample_source(like=data, generator=g)
    assert torch.equal(z["mask"], data["mask"])
    assert torch.equal(nci.space.project(z)["adj"], z["adj"])
    fresh = nci.sample_source(500, generator=torch.Generator().manual_seed(1))
    sizes = fresh["mask"].sum(1).numpy()
    train_sizes = nci._train["mask"].sum(1).numpy()
    # every drawn size occurs in training, and the mean size matches within 4 standard errors
    assert set(sizes.tolist()) <= set(train_sizes.tolist())
    assert abs(sizes.mean() - train_sizes.mean()) < 4 * train_sizes.std() / np.sqrt(500)


def test_encode_arrays_and_decode_graphs_round_trip():
    atoms, bonds = smiles_to_graph("OC(=O)C#N")
    padded = np.full((1, 6), -1)
    padded[0, :5] = atoms
    b = np.zeros((1, 6, 6), dtype=int)
    b[0, :5, :5] = bonds
    (a2, b2), = decode_graphs(encode_arrays(padded, b))
    assert a2 == atoms and np.array_equal(b2, bonds)
    assert mol_to_smiles(graph_to_mol(a2, b2)) == "N#CC(=O)O"


def test_user_smiles_and_files(tmp_path):
    smiles = ["CCO", "CC=O", "C#N", "OCC(F)F", "CN", "c1ccccc1", "CC(C)O", "NCC=O"]
    d = MoleculeDomain.from_smiles(smiles, test_fraction=0.25, seed=2)
    assert len(d.train_smiles) == 6 and len(d.test_smiles) == 2 and d.max_atoms == 6
    f = tmp_path / "mols.smi"
    f.write_text("# my molecules\n" + "\n".join(f"{s} name{k}" for k, s in enumerate(smiles)) + "\n")
    d2 = MoleculeDomain(path=f, test_fraction=0.25, seed=2)
    assert d2.train_smiles == d.train_smiles
    with pytest.raises(InvalidValueError, match="Cl"):
        MoleculeDomain.from_smiles(["CCCl", "CCO"])
    with pytest.raises(InvalidValueError, match="parse"):
        split_smiles(["C1CC", "CCO"])
    with pytest.raises(InvalidValueError, match="unknown molecule data set"):
        MoleculeDomain("zinc")
    with pytest.raises(FileNotFoundError):
        MoleculeDomain(path=tmp_path / "nope.smi")
    with pytest.raises(InvalidValueError, match="max_atoms"):
        encode_smiles(["CCCCCC"], max_atoms=3)


def test_default_potential_is_invariant_and_its_gradient_symmetric_and_masked(nci):
    torch.manual_seed(0)
    net = nci.default_network(hidden=16, depth=2).double()
    assert isinstance(net, PPGNPotential)
    g = torch.Generator().manual_seed(0)
    z = {k: v.double() if v.is_floating_point() else v for k, v in nci.sample_source(like=nci.sample_data(5, g), generator=g).items()}
    e = net(z)
    assert e.shape == (5,)
    # node permutation of the real atoms
    n = int(z["mask"][0].sum())
    perm = torch.cat([torch.randperm(n, generator=g), torch.arange(n, 9)])
    zp = {"x": z["x"][:, perm], "adj": z["adj"][:, perm][:, :, perm], "mask": z["mask"][:, perm]}
    assert torch.allclose(net(zp)[0], e[0], atol=1e-10)  # float64: only rounding differs
    # padding: two more masked atoms change nothing
    big = {"x": torch.nn.functional.pad(z["x"], (0, 0, 0, 2)),
           "adj": torch.nn.functional.pad(z["adj"], (0, 0, 0, 2, 0, 2)),
           "mask": torch.nn.functional.pad(z["mask"], (0, 2))}
    assert torch.allclose(net(big), e, atol=1e-10)
    # gradient: symmetric in adj, zero on padding and on the diagonal (the input is symmetrised and masked)
    x = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in z.items()}
    gx, ga = torch.autograd.grad(net(x).sum(), [x["x"], x["adj"]])
    assert torch.allclose(ga, ga.transpose(1, 2), atol=1e-12)
    pad = 1 - z["mask"].double()
    assert (gx * pad[..., None]).abs().max() == 0 and (ga * pad[:, :, None, None]).abs().max() == 0
    assert ga.diagonal(dim1=1, dim2=2).abs().max() == 0


def test_aligned_coupling_permutes_atoms_with_bonds(nci):
    g = torch.Generator().manual_seed(0)
    x1 = nci.sample_data(32, g)
    x0 = nci.sample_source(like=x1, generator=g)
    a, b = PermutationOT().pair(x0, x1, generator=g)
    assert torch.equal(a["mask"], b["mask"])
    # the aligned data are the same multiset of molecules, each relabelled consistently
    assert sorted(nci.decode_smiles(b)) == sorted(nci.decode_smiles(x1))
    # and closer to their noise partners than the unaligned pairs (ExactOT alone)
    from energyflow.training.coupling import ExactOT

    a0, b0 = ExactOT().pair(x0, x1, torch.Generator().manual_seed(0))
    dist = lambda u, v: sum(((u[k] - v[k]) ** 2).sum() for k in ("x", "adj"))  # noqa: E731
    assert dist(a, b) < dist(a0, b0)
