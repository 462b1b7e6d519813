"""Molecule data sets, offline: QM9 from the ``qm9pack`` wheel, and RDKit's own NCI sample.

Each data set is a :class:`MoleculeSplit`: canonical SMILES of the train, validation and
test molecules and their encoded graphs (:func:`energyflow.domains.molecule.chem.smiles_to_graph`)
as compact arrays, ``atoms (M, N) int8`` (type index, ``-1`` on padding) and
``bonds (M, N, N) int8`` (order 0..3).

* ``qm9``: the 130,831 characterised molecules of QM9 (Ramakrishnan et al. 2014) as the
  PyPI package ``qm9pack`` (MIT, by one of the QM9 authors) ships them, read straight from
  its CSVs in their ``Index`` order (``qm9pack`` itself is not imported: it needs pandas
  and ``pkg_resources``). Split as EDM and DiGress do: ``numpy.random.seed(0)``, then
  ``numpy.random.permutation(130831)``; the first 100,000 indices train, the next 17,748
  validate, the last 13,083 test. Up to 9 heavy atoms (C, N, O, F), hydrogens implicit,
  kekulised; QM9's charged zwitterions (about 0.2 %) lose their charges (``chem``).
  Encoding all of it takes about 20 s; the arrays are cached under ``$ENERGYFLOW_CACHE``
  (default ``~/.cache/energyflow``), keyed by a hash of the CSVs' sizes and the recipe, and
  written atomically. Properties kept per molecule: ``alpha`` (isotropic polarisability,
  bohr³) and ``gap`` (HOMO-LUMO gap, hartree).
* ``nci``: the molecules of RDKit's ``Data/NCI/first_5K.smi`` with at most 9 heavy atoms,
  all of them uncharged C, N, O or F, in one fragment (419; RDKit ships them, so tests never need
  the QM9 wheel). Split: a ``numpy.random.default_rng(seed)`` permutation, 20 % test.
* a user's SMILES list (:func:`split_smiles`).

Example:
    >>> split = load_molecules("nci")
    >>> len(split.train), len(split.test), split.atoms.shape[1]
    (335, 84, 9)
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import attrs
import numpy as np

from energyflow.cache import cache_dir
from energyflow.domains.molecule.chem import ATOMS, _rdkit, smiles_to_graph
from energyflow.errors import InvalidValueError

__all__ = ["MoleculeSplit", "MOLECULE_DATASETS", "encode_smiles", "load_molecules", "load_qm9", "nci_smiles", "qm9_csv_dir",
           "split_smiles"]

MOLECULE_DATASETS = ("qm9", "nci")
QM9_SIZES = (100_000, 17_748, 13_083)
_QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


@attrs.frozen(eq=False)
class MoleculeSplit:
    """A molecule data set, encoded and split.

    Attributes:
        name (str): the data set.
        smiles (list[str]): canonical SMILES of every molecule, in data-set order.
        atoms (numpy.ndarray): ``(M, N) int8`` atom-type indices, ``-1`` on padding.
        bonds (numpy.ndarray): ``(M, N, N) int8`` bond orders.
        train, validation, test (numpy.ndarray): indices into the molecules.
        properties (dict[str, numpy.ndarray]): ``(M,)`` float arrays (QM9: ``alpha``, ``gap``).
    """

    name: str
    smiles: list
    atoms: np.ndarray
    bonds: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    properties: dict = attrs.field(factory=dict)

    def smiles_of(self, part: str) -> list[str]:
        """Canonical SMILES of ``"train"``, ``"validation"`` or ``"test"``."""
        return [self.smiles[i] for i in getattr(self, part)]


def encode_smiles(smiles: list[str], max_atoms: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """SMILES -> (canonical SMILES, ``atoms (M, N)``, ``bonds (M, N, N)``), padded to ``max_atoms``.

    Raises:
        InvalidValueError: a SMILES that does not parse, holds another element, or has
            more atoms than ``max_atoms``.
    """
    Chem = _rdkit()
    graphs = [smiles_to_graph(s) for s in smiles]
    largest = max(len(a) for a, _ in graphs)
    n = largest if max_atoms is None else int(max_atoms)
    if largest > n:
        raise InvalidValueError(f"a molecule has {largest} heavy atoms; max_atoms is {n}")
    atoms = np.full((len(graphs), n), -1, dtype=np.int8)
    bonds = np.zeros((len(graphs), n, n), dtype=np.int8)
    for k, (a, b) in enumerate(graphs):
        atoms[k, : len(a)] = a
        bonds[k, : len(a), : len(a)] = b
    canon = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in smiles]
    return canon, atoms, bonds


def split_smiles(smiles: list[str], test_fraction: float = 0.2, seed: int = 0, name: str = "custom",
                 max_atoms: int | None = None) -> MoleculeSplit:
    """A user's molecules split into train and test after a permutation drawn with ``seed``.

    Example:
        >>> s = split_smiles(["CCO", "CC=O", "C#N", "OCC(F)F", "CN"], test_fraction=0.4, seed=1)
        >>> len(s.train), len(s.test), s.atoms.shape
        (3, 2, (5, 5))
    """
    if not isinstance(smiles, (list, tuple)) or len(smiles) < 2 or not all(isinstance(s, str) for s in smiles):
        raise InvalidValueError("need a list of at least 2 SMILES strings (one to train on, one to test against)")
    if not 0 < float(test_fraction) < 1:
        raise InvalidValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    canon, atoms, bonds = encode_smiles(list(smiles), max_atoms)
    order = np.random.default_rng(seed).permutation(len(canon))
    k = min(max(1, round(float(test_fraction) * len(canon))), len(canon) - 1)
    return MoleculeSplit(name, canon, atoms, bonds, train=np.sort(order[k:]), validation=np.zeros(0, dtype=np.int64),
                         test=np.sort(order[:k]))


def nci_smiles() -> list[str]:
    """The 419 one-fragment, uncharged C/N/O/F molecules of at most 9 heavy atoms in RDKit's ``first_5K.smi``."""
    Chem = _rdkit()
    import rdkit

    path = Path(rdkit.__file__).parent / "Data" / "NCI" / "first_5K.smi"
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        mol = Chem.MolFromSmiles(parts[0]) if parts else None
        if mol is None or mol.GetNumHeavyAtoms() > 9 or len(Chem.GetMolFrags(mol)) != 1:
            continue
        if all(a.GetSymbol() in ATOMS and a.GetFormalCharge() == 0 for a in mol.GetAtoms()):
            out.append(parts[0])
    return out


def qm9_csv_dir() -> Path:
    """The folder of ``qm9pack``'s CSVs (the package is located, not imported).

    Raises:
        InvalidValueError: ``qm9pack`` is not installed.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidValueError("the qm9 data set comes from the qm9pack package: pip install 'energyflow-em[molecule]'")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _read_qm9(folder: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    smiles, alpha, gap = [], [], []
    for name in _QM9_FILES:
        with open(folder / name, newline="") as f:
            rows = csv.reader(f)
            head = next(rows)
            i_s, i_a, i_g = (head.index(c) for c in ("SMILES", "Polarizability_bohr3", "HOMO_LUMO_gap_au"))
            for row in rows:
                smiles.append(row[i_s])
                alpha.append(float(row[i_a]))
                gap.append(float(row[i_g]))
    return smiles, {"alpha": np.asarray(alpha), "gap": np.asarray(gap)}


def load_qm9() -> MoleculeSplit:
    """QM9 (``qm9pack``), encoded (cached) and split 100,000 / 17,748 / 13,083 as EDM and DiGress split it."""
    folder = qm9_csv_dir()
    recipe = {"files": [[n, (folder / n).stat().st_size] for n in _QM9_FILES], "atoms": list(ATOMS), "version": 1}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"qm9-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            smiles = [str(s) for s in z["smiles"]]
            atoms, bonds = z["atoms"], z["bonds"]
            props = {"alpha": z["alpha"], "gap": z["gap"]}
    else:
        raw, props = _read_qm9(folder)
        smiles, atoms, bonds = encode_smiles(raw, max_atoms=9)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, smiles=np.asarray(smiles), atoms=atoms, bonds=bonds, **props)
        os.replace(tmp, path)
    total = len(smiles)
    if total != sum(QM9_SIZES):
        raise InvalidValueError(f"qm9pack holds {total} molecules, expected {sum(QM9_SIZES)}; its version differs")
    rs = np.random.RandomState(0)  # numpy.random.seed(0); numpy.random.permutation(130831), as EDM
    perm = rs.permutation(total)
    a, b = QM9_SIZES[0], QM9_SIZES[0] + QM9_SIZES[1]
    return MoleculeSplit("qm9", smiles, atoms, bonds, train=perm[:a], validation=perm[a:b], test=perm[b:],
                         properties=props)


def load_molecules(dataset: str, seed: int = 0) -> MoleculeSplit:
    """A named data set: ``"qm9"`` or ``"nci"`` (``seed`` splits ``nci``; QM9's split is fixed)."""
    if dataset == "qm9":
        return load_qm9()
    if dataset == "nci":
        return split_smiles(nci_smiles(), test_fraction=0.2, seed=seed, name="nci", max_atoms=9)
    raise InvalidValueError(f"unknown molecule data set {dataset!r}; choose one of {list(MOLECULE_DATASETS)} "
                            "or give smiles= (a list, or a file of SMILES)")
