"""Molecules as small labelled graphs: SMILES <-> (atom types, bond orders), RDKit only.

The representation of the molecule domain (2-D, hydrogens implicit, kekulised), as
GDSS and DiGress use for QM9:

* atom types :data:`ATOMS` = C, N, O, F (index 0..3 of a node's one-hot);
* bond types :data:`BONDS` = none, single, double, triple (index 0..3 of a pair's
  one-hot; aromatic rings are kekulised first, so no aromatic type is needed);
* formal charges are not represented. :func:`graph_to_mol` gives an N or O atom a
  ``+1`` charge when it carries exactly one bond more than its neutral valence (the GDSS
  rule: ammonium-like N and oxonium-like O), and no other charge. A data molecule with
  an anionic O (``[O-]``) therefore decodes to its neutral form (``OH``); the few QM9
  zwitterions are affected (:func:`smiles_to_graph` documents it).

Example:
    >>> atoms, bonds = smiles_to_graph("C=CC#N")
    >>> atoms, bonds.tolist()
    ([0, 0, 0, 1], [[0, 2, 0, 0], [2, 0, 1, 0], [0, 1, 0, 3], [0, 0, 3, 0]])
    >>> mol_to_smiles(graph_to_mol(atoms, bonds))
    'C=CC#N'
    >>> graph_to_mol([1, 0, 0, 0, 0], [[0, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0],
    ...                                [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]).GetAtomWithIdx(0).GetFormalCharge()
    1
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from energyflow.errors import InvalidValueError

__all__ = ["ATOMS", "BONDS", "VALENCE", "graph_to_mol", "is_sanitizable", "mol_to_smiles", "smiles_to_graph"]

ATOMS: tuple[str, ...] = ("C", "N", "O", "F")
"""Atom types, in the order of a node's one-hot channels."""
BONDS: tuple[str, ...] = ("none", "single", "double", "triple")
"""Bond types, in the order of a pair's one-hot channels (index = bond order)."""
VALENCE: dict[str, int] = {"C": 4, "N": 3, "O": 2, "F": 1}
"""Neutral valence of each atom type (N and O may take one more bond with a +1 charge)."""
_CHARGEABLE = {"N", "O"}


def _rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:  # pragma: no cover - the molecule extra is missing
        raise InvalidValueError("the molecule domain needs RDKit: pip install 'energyflow-em[molecule]'") from err
    RDLogger.DisableLog("rdApp.*")  # sanitisation failures are expected on generated graphs; we count them
    return Chem


def smiles_to_graph(smiles: str, atoms: Sequence[str] = ATOMS) -> tuple[list[int], np.ndarray]:
    """A SMILES string -> (atom-type indices ``(n,)``, bond-order matrix ``(n, n)``), kekulised, H implicit.

    Charges are dropped (see the module docstring); explicit hydrogens in the SMILES are
    removed, and stereochemistry is ignored.

    Args:
        smiles (str): one molecule.
        atoms (Sequence[str]): the allowed element symbols, in channel order.

    Returns:
        tuple[list[int], numpy.ndarray]: atom indices into ``atoms`` and an ``int64``
        symmetric matrix with entries 0 (none) .. 3 (triple) and a zero diagonal.

    Raises:
        InvalidValueError: the SMILES does not parse, or holds an element outside ``atoms``.
    """
    Chem = _rdkit()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    Chem.Kekulize(mol, clearAromaticFlags=True)
    index = {s: i for i, s in enumerate(atoms)}
    types = []
    for atom in mol.GetAtoms():
        sym = atom.GetSymbol()
        if sym not in index:
            raise InvalidValueError(f"{smiles!r} holds {sym}; this representation has only {', '.join(atoms)}")
        types.append(index[sym])
    n = mol.GetNumAtoms()
    bonds = np.zeros((n, n), dtype=np.int64)
    for bond in mol.GetBonds():
        order = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}.get(bond.GetBondType())
        if order is None:
            raise InvalidValueError(f"{smiles!r} has a {bond.GetBondType()} bond after kekulisation")
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        bonds[i, j] = bonds[j, i] = order
    return types, bonds


def graph_to_mol(atom_types: Sequence[int], bonds: np.ndarray | Sequence[Sequence[int]],
                 atoms: Sequence[str] = ATOMS):
    """(atom-type indices, bond-order matrix) -> an unsanitised RDKit ``RWMol``, GDSS's charge rule applied.

    Bonds are read from the upper triangle (``i < j``). An N or O whose bond orders sum
    to exactly one more than its neutral valence gets a ``+1`` formal charge.

    Args:
        atom_types (Sequence[int]): ``(n,)`` indices into ``atoms``.
        bonds: ``(n, n)`` bond orders 0..3.
        atoms (Sequence[str]): element symbols in channel order.

    Returns:
        rdkit.Chem.RWMol: not sanitised (see :func:`is_sanitizable`).
    """
    Chem = _rdkit()
    bonds = np.asarray(bonds, dtype=np.int64)
    n = len(atom_types)
    if bonds.shape != (n, n):
        raise InvalidValueError(f"bonds must be ({n}, {n}) for {n} atoms, got {bonds.shape}")
    if bonds.size and (bonds.min() < 0 or bonds.max() > 3):
        raise InvalidValueError("bond orders must lie in 0..3")
    kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    mol = Chem.RWMol()
    for t in atom_types:
        mol.AddAtom(Chem.Atom(atoms[int(t)]))
    upper = np.triu(bonds, 1)
    for i, j in zip(*np.nonzero(upper)):
        mol.AddBond(int(i), int(j), kinds[int(upper[i, j])])
    valence = (upper + upper.T).sum(1)
    for i, t in enumerate(atom_types):
        sym = atoms[int(t)]
        if sym in _CHARGEABLE and valence[i] == VALENCE[sym] + 1:
            mol.GetAtomWithIdx(i).SetFormalCharge(1)
    return mol


def is_sanitizable(mol) -> bool:
    """Whether RDKit sanitises a copy of ``mol`` as it is (valences, kekulé structure)."""
    Chem = _rdkit()
    try:
        Chem.SanitizeMol(Chem.Mol(mol))
    except Exception:  # RDKit raises several exception types (valence, kekulize, ...)
        return False
    return True


def mol_to_smiles(mol) -> str | None:
    """Canonical SMILES of a sanitised copy of ``mol``, or None when it does not sanitise."""
    Chem = _rdkit()
    m = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(m)
    except Exception:
        return None
    return Chem.MolToSmiles(m)
