"""Molecule metrics (GDSS's definitions): hand-computed cases, RDKit's NCI molecules, a negative control.

The data are the molecules RDKit ships (``Data/NCI/first_5K.smi``) with at most 9 heavy
atoms, only C/N/O/F, in one fragment: 431 QM9-like molecules, no download.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

rdkit = pytest.importorskip("rdkit")
from rdkit import Chem  # noqa: E402

from energyflow.domains.molecule.chem import graph_to_mol, smiles_to_graph  # noqa: E402
from energyflow.domains.molecule.metrics import (  # noqa: E402
    canonical_smiles,
    correct_mol,
    data_floor,
    fcd,
    fraction_novel,
    fraction_unique,
    mol_graphs,
    molecule_metrics,
    nspdk_available,
    nspdk_mmd,
    type_distances,
    validity_table,
)
from energyflow.errors import InvalidTypeError, InvalidValueError  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # ChemNet (FCD) on one thread: the machine is shared
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nci() -> list[str]:
    """RDKit's NCI sample restricted to QM9-like molecules (<= 9 heavy atoms, C/N/O/F, one fragment)."""
    path = os.path.join(os.path.dirname(rdkit.__file__), "Data", "NCI", "first_5K.smi")
    out = []
    with open(path) as f:
        for line in f:
            mol = Chem.MolFromSmiles(line.split()[0])
            if (mol is not None and mol.GetNumAtoms() <= 9 and len(Chem.GetMolFrags(mol)) == 1
                    and all(a.GetSymbol() in "CNOF" for a in mol.GetAtoms())):
                out.append(line.split()[0])
    assert len(out) == 431
    return out


def _graph_mol(n: int, bonds: dict[tuple[int, int], int], atoms: list[int] | None = None):
    """graph_to_mol of ``n`` atoms (default all C) with the given ``{(i, j): order}`` bonds."""
    b = np.zeros((n, n), dtype=np.int64)
    for (i, j), order in bonds.items():
        b[i, j] = b[j, i] = order
    return graph_to_mol(atoms if atoms is not None else [0] * n, b)


def _bond_order_sum(mol) -> float:
    return sum(b.GetBondTypeAsDouble() for b in mol.GetBonds())


# --------------------------------------------------------------------------- correction


def test_correction_lowers_one_bond_of_a_pentavalent_carbon():
    # carbon 0: a double bond to 1 and single bonds to 2, 3, 4 -> valence 5
    mol = _graph_mol(5, {(0, 1): 2, (0, 2): 1, (0, 3): 1, (0, 4): 1})
    assert validity_table([mol])["valid"] == 0.0
    fixed, needed = correct_mol(mol)
    assert needed
    assert Chem.MolToSmiles(fixed) == "CC(C)(C)C"            # the highest-order bond (the double) lowered
    assert _bond_order_sum(fixed) == _bond_order_sum(mol) - 1  # by exactly one order
    assert _bond_order_sum(mol) == 5                          # the input is not modified


def test_correction_removes_a_single_bond_and_charges_the_nitrogen():
    # N bonded to five carbons: one bond goes (the first in its list, to atom 1), N+ keeps four
    mol = _graph_mol(6, {(0, j): 1 for j in range(1, 6)}, atoms=[1, 0, 0, 0, 0, 0])
    fixed, needed = correct_mol(mol)
    assert needed and Chem.MolToSmiles(fixed) == "C[N+](C)(C)C"  # the lone methane fragment is dropped


def test_a_valid_disconnected_molecule_keeps_its_largest_fragment():
    for smiles, kept in [("CCO.C", "CCO"), ("C.CCO", "CCO"), ("CC.OC#N", "N#CO")]:
        fixed, needed = correct_mol(Chem.MolFromSmiles(smiles, sanitize=False))
        assert not needed and Chem.MolToSmiles(fixed) == kept
    # equal sizes: the fragment holding the lowest atom index
    fixed, _ = correct_mol(Chem.MolFromSmiles("CO.CN"))
    assert Chem.MolToSmiles(fixed) == "CO"


def test_pick_first_is_gdss_and_most_is_the_most_overvalent_atom():
    # atom 0: =C1, #C2 (valence 5, excess 1); atom 1: =C0 and four single bonds (valence 6, excess 2).
    # first (GDSS: the lowest over-valent index, the atom RDKit's error names): 0's triple -> double,
    #   then 1's double -> single, then 1's first single bond (to 3) removed -> C=CC(C)(C)C.
    # most: 1's double -> single (this also fixes 0), then 1's first single bond removed -> C#CC(C)(C)C.
    bonds = {(0, 1): 2, (0, 2): 3, (1, 3): 1, (1, 4): 1, (1, 5): 1, (1, 6): 1}
    first, _ = correct_mol(_graph_mol(7, bonds), pick="first")
    most, _ = correct_mol(_graph_mol(7, bonds), pick="most")
    assert Chem.MolToSmiles(first) == "C=CC(C)(C)C"
    assert Chem.MolToSmiles(most) == "C#CC(C)(C)C"


def test_rdkit_names_the_lowest_overvalent_atom():
    # the premise of pick="first": atom 0 (valence 5) is named although atom 6 (valence 7) is worse
    bonds = {(0, j): 1 for j in range(1, 6)} | {(6, j): 1 for j in range(7, 13)} | {(5, 6): 1}
    mol = _graph_mol(13, bonds)
    with pytest.raises(Exception, match="atom # 0"):
        Chem.SanitizeMol(mol, sanitizeOps=Chem.SanitizeFlags.SANITIZE_PROPERTIES)


def test_correct_mol_errors_and_edge_cases():
    with pytest.raises(InvalidTypeError):
        correct_mol("CCO")
    with pytest.raises(InvalidValueError, match="pick"):
        correct_mol(Chem.MolFromSmiles("C"), pick="last")
    with pytest.raises(InvalidValueError, match="Cl"):
        correct_mol(Chem.MolFromSmiles("CCl(C)C", sanitize=False))  # needs correcting, Cl has no valence here
    assert correct_mol(Chem.RWMol()) == (None, True)               # no atoms: not a molecule


# --------------------------------------------------------------------------- validity


def test_validity_table_hand_cases():
    mols = [Chem.MolFromSmiles(s, sanitize=False) for s in ["CCO", "CC.O", "CC(=C)(C)C", "F=F"]]
    assert validity_table(mols) == {"valid": 0.5, "valid_connected": 0.25, "valid_corrected": 1.0}
    assert validity_table([Chem.RWMol()])["valid"] == 0.0  # an empty molecule is invalid
    with pytest.raises(InvalidValueError):
        validity_table([])


def test_negative_control_random_bonds_invalid_data_valid(nci):
    # Random graphs: 9 atoms of random type, every pair's bond order uniform in 0..3, so an atom
    # has ~6 bonds of mean order 2 (valence ~12, against at most 4): essentially none is valid
    # (measured 0 of 300); valid < 0.5 is the brief's bar and leaves a wide margin. Decoded data
    # graphs must all be valid: the 431 molecules decode valid and connected (measured 1.0);
    # 0.99 would still pass with 4 failures, should an RDKit release sanitise one differently.
    rng = np.random.default_rng(0)
    random_mols = []
    for _ in range(300):
        upper = np.triu(rng.integers(0, 4, size=(9, 9)), 1)
        random_mols.append(graph_to_mol(rng.integers(0, 4, size=9).tolist(), upper + upper.T))
    noise = validity_table(random_mols)
    assert noise["valid"] < 0.5
    assert noise["valid_corrected"] == 1.0  # the correction always ends in a valid molecule

    data = validity_table([graph_to_mol(*smiles_to_graph(s)) for s in nci])
    assert data["valid"] >= 0.99 and data["valid_connected"] >= 0.99 and data["valid_corrected"] == 1.0


# --------------------------------------------------------------------------- uniqueness, novelty


def test_canonical_smiles():
    assert canonical_smiles(["OCC", "C(C)O", "c1ccccc1", "C1CC", "", None]) == \
        ["CCO", "CCO", "c1ccccc1", None, None, None]


def test_uniqueness_and_novelty_hand_lists():
    gen = ["CCO", "OCC", "C(C)O", "CC", "N#C", None, "C1CC"]  # 5 valid: CCO x3, CC, C#N
    assert fraction_unique(gen) == pytest.approx(3 / 5)         # denominator: the valid ones, duplicates in
    assert fraction_novel(gen, ["CC", "C(O)C"]) == pytest.approx(1 / 3)  # {CCO, CC, C#N}: only C#N is new
    # novelty's denominator is the distinct molecules, not the generated ones (MOSES, GDSS, DiGress)
    assert fraction_novel(["CCO"] * 9 + ["CCN"], ["CCO"]) == pytest.approx(0.5)
    assert fraction_unique(["CCO"] * 4) == pytest.approx(0.25)
    assert math.isnan(fraction_unique([None, "C1C"]))
    assert math.isnan(fraction_novel([None], ["CC"]))
    with pytest.raises(InvalidValueError):
        fraction_unique([])
    with pytest.raises(InvalidTypeError):
        fraction_unique("CCO")


# --------------------------------------------------------------------------- type distances


def test_type_distances_hand_sets():
    mols = lambda *s: [Chem.MolFromSmiles(x) for x in s]  # noqa: E731
    # atoms C,O vs C,C,N: (|1/2 - 2/3| + |0 - 1/3| + |1/2 - 0|) / 2 = 1/2; one single bond each
    assert type_distances(mols("CO"), mols("CC", "N")) == pytest.approx({"atom_tv": 0.5, "bond_tv": 0.0})
    # bonds double + triple vs single: disjoint supports
    assert type_distances(mols("C=C", "C#C"), mols("CC"))["bond_tv"] == pytest.approx(1.0)
    # benzene is kekulised: 3 single + 3 double, the same histogram as propene's 1 + 1
    assert type_distances(mols("c1ccccc1"), mols("C=CC")) == pytest.approx({"atom_tv": 0.0, "bond_tv": 0.0})
    # F vs O: half the atoms moved
    assert type_distances(mols("CF"), mols("CO"))["atom_tv"] == pytest.approx(0.5)
    # unsanitised (decoded) molecules count the same as parsed ones
    decoded = [graph_to_mol(*smiles_to_graph("c1ccccc1"))]
    assert type_distances(decoded, mols("c1ccccc1")) == pytest.approx({"atom_tv": 0.0, "bond_tv": 0.0})
    assert math.isnan(type_distances(mols("C"), mols("CC"))["bond_tv"])  # no bonds to count
    with pytest.raises(InvalidValueError, match="Cl"):
        type_distances(mols("CCl"), mols("CC"))


# --------------------------------------------------------------------------- FCD


def test_fcd_self_zero_and_different_sets_positive(nci):
    # The same set gives the same Gaussian; the only error is scipy's sqrtm of a rank-deficient
    # (100 molecules, 512 activations) product, measured 2.5e-6; 1e-3 is far below the distance
    # between two different sets (measured 7.5 between two disjoint 100-molecule NCI samples).
    a, b = nci[:100], nci[100:200]
    assert abs(fcd(a, a)) < 1e-3
    assert fcd(a, b) > 1.0
    assert fcd(a, b) == pytest.approx(fcd(b, a), rel=1e-6)  # symmetric
    # a set of plain chains is much further from the NCI sample than another NCI sample is
    chains = ["C" * k + end for end in ("", "O", "N") for k in range(1, 9)]
    assert fcd(a, chains) > fcd(a, b)
    with pytest.raises(InvalidValueError, match="invalid"):
        fcd(a, ["CC", "C1C"])
    with pytest.raises(InvalidValueError, match="at least 2"):
        fcd(a, ["CC"])


# --------------------------------------------------------------------------- NSPDK


def test_mol_graphs_labels_like_gdss():
    g = mol_graphs([Chem.MolFromSmiles("c1ccccc1C#N")])[0]
    assert sorted(dict(g.nodes(data="label")).values()) == [6] * 7 + [7]
    assert sorted(label for *_, label in g.edges(data="label")) == [1] * 7 + [3]  # aromatic 1.5 -> 1, as GDSS
    with pytest.raises(InvalidValueError, match="sanitise"):
        mol_graphs([Chem.MolFromSmiles("CC(=C)(C)C", sanitize=False)])


@pytest.mark.skipif(not nspdk_available(), reason="eden-kernel is not installed")
def test_nspdk_mmd_matches_the_kernel_matrix_formula(nci):
    import networkx as nx
    from eden.graph import vectorize
    from sklearn.metrics.pairwise import pairwise_kernels

    a = mol_graphs([Chem.MolFromSmiles(s) for s in nci[:60]])
    b = mol_graphs([Chem.MolFromSmiles(s) for s in nci[60:100]])
    x, y = vectorize(a, complexity=4, discrete=True), vectorize(b, complexity=4, discrete=True)
    gdss = (pairwise_kernels(x, x, metric="linear").mean() + pairwise_kernels(y, y, metric="linear").mean()
            - 2 * pairwise_kernels(x, y, metric="linear").mean())  # GDSS's compute_nspdk_mmd
    assert nspdk_mmd(a, b) == pytest.approx(gdss, rel=1e-9, abs=1e-12)
    assert nspdk_mmd(a, b) > 0
    assert nspdk_mmd(a, a) == pytest.approx(0.0, abs=1e-12)
    assert nspdk_mmd(a + [nx.Graph()], b) == pytest.approx(nspdk_mmd(a, b))  # graphs without nodes dropped


@pytest.mark.skipif(not nspdk_available(), reason="eden-kernel is not installed")
def test_nspdk_mmd_is_the_same_in_every_process():
    # EDeN hashes labels with Python's hash(); atomic-number labels make the value independent of
    # PYTHONHASHSEED (symbol strings, as in GDSS, move it by ~0.5 %).
    code = ("from rdkit import Chem; from energyflow.domains.molecule.metrics import mol_graphs, nspdk_mmd; "
            "m = lambda *s: mol_graphs([Chem.MolFromSmiles(x) for x in s]); "
            "print(repr(nspdk_mmd(m('CCO', 'c1ccccc1O', 'CC(=O)N', 'OCCN'), "
            "m('CCC', 'c1ccncc1', 'CC=O', 'FC(F)F'))))")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    values = {subprocess.run([sys.executable, "-c", code], env=dict(env, PYTHONHASHSEED=seed),
                             capture_output=True, text=True, check=True).stdout.strip()
              for seed in ("1", "2")}
    assert len(values) == 1 and float(values.pop()) > 0


# --------------------------------------------------------------------------- the table, the floor


def test_molecule_metrics_on_decoded_data_and_noise(nci):
    test, train = nci[:100], nci[100:]
    decoded = [graph_to_mol(*smiles_to_graph(s)) for s in train[:80]]
    broken = [_graph_mol(5, {(0, 1): 2, (0, 2): 1, (0, 3): 1, (0, 4): 1})] * 20  # one bad molecule, 20 times
    table = molecule_metrics(decoded + broken, train, test)
    expected = {"valid", "valid_connected", "valid_corrected", "unique", "novel", "fcd", "atom_tv", "bond_tv"}
    assert set(table) == expected | ({"nspdk"} if nspdk_available() else set())
    assert table["valid"] == pytest.approx(0.8) and table["valid_corrected"] == 1.0
    # the 20 corrected copies are one molecule (neopentane, not among the 80); the 80 decoded hold
    # one duplicate of their own (the NCI file lists OCC=CCO twice)
    distinct = len(set(canonical_smiles(Chem.MolToSmiles(m) for m in decoded)))
    assert distinct == 79
    assert table["unique"] == pytest.approx((distinct + 1) / 100)
    assert 0.0 < table["novel"] < 0.1  # neopentane is new; nitro compounds decode neutral (see data_floor)
    assert table["fcd"] > 0 and 0 <= table["atom_tv"] < 0.1
    no_fcd = molecule_metrics(decoded, train, test, fcd=False, nspdk=False)
    assert "fcd" not in no_fcd and "nspdk" not in no_fcd
    with pytest.raises(InvalidValueError, match="invalid SMILES"):
        molecule_metrics(decoded, train, ["CC", "C1C"])


def test_data_floor(nci):
    test, train = nci[:100], nci[100:]
    floor = data_floor(train, test, n=100, seed=0, fcd=False, nspdk=False)
    assert floor["valid"] == floor["valid_connected"] == floor["valid_corrected"] == 1.0
    # the NCI file lists 7 of the 431 molecules twice (424 distinct, before and after decoding):
    # a draw of 100 may hold a pair or two (seed 0 holds none)
    assert floor["unique"] >= 0.97
    # Novel training molecules: only the nitro compounds, whose [O-] decodes to OH (chem's charge
    # rule); measured 4 of 100 with seed 0, and 8 of the 331 in the whole training part.
    assert floor["novel"] <= 0.1
    assert floor["atom_tv"] < 0.1 and floor["bond_tv"] < 0.1
    assert data_floor(train, test, n=100, seed=0, fcd=False, nspdk=False) == floor  # reproducible
    with pytest.raises(InvalidValueError, match="n must"):
        data_floor(train, test, n=len(train) + 1)
