"""Molecule-generation metrics as GDSS reports them on QM9: validity, uniqueness, novelty, FCD, NSPDK.

The definitions follow GDSS (Jo et al. 2022): ``utils/mol_utils.py`` (``correct_mol``,
``valid_mol_can_with_seg``, ``mols_to_nx``), ``sampler.py`` (``Sampler_mol``), and the
MOSES metrics it calls (``moses.metrics.get_all_metrics`` of ``molsets`` 1.0);
DiGress (Vignac et al. 2023, ``src/analysis/rdkit_functions.py``) defines uniqueness and
novelty with the same denominators. ``N`` is the number of generated molecules.

* **valid** (GDSS's "validity w/o correction"; DiGress's "validity"): the fraction of the
  ``N`` molecules that RDKit sanitises as they are decoded, no correction. GDSS divides
  by the number of molecules its correction returns (all but the rare ones that still
  fail), here by ``N``; GDSS tests only the valences (``SANITIZE_PROPERTIES``), here the
  whole sanitisation, which for kekulised molecules without aromatic flags fails, in
  practice, only where a valence does.
* **valid_connected**: valid and a single fragment (GDSS and DiGress count a valid
  molecule with several fragments as valid, then keep its largest fragment).
* **valid_corrected** (MOSES's ``valid`` in GDSS's table, ~1 by construction): the
  fraction of the ``N`` molecules that :func:`correct_mol` turns into a molecule.
* **unique** (MOSES ``fraction_unique`` with ``k`` = the number of valid molecules, as
  GDSS calls it): distinct canonical SMILES among the valid (corrected) molecules, over
  the number of valid (corrected) molecules, duplicates included.
* **novel** (MOSES ``novelty``): among the *distinct* valid canonical SMILES, the fraction
  absent from the canonicalised training SMILES.
* **fcd** (MOSES ``FCD/Test``): the Fréchet ChemNet distance, computed by the ``fcd_torch``
  package, between the canonical SMILES of the valid corrected molecules (duplicates
  kept) and the test SMILES.
* **nspdk** (GDSS's ``NSPDK MMD``): squared MMD with the linear kernel on EDeN's NSPDK
  features (the ``eden-kernel`` package: ``complexity=4``, ``discrete=True``) of the
  labelled graphs of the valid corrected molecules and of the test molecules
  (:func:`mol_graphs`, :func:`nspdk_mmd`).
* **atom_tv**, **bond_tv** (DiGress's atom- and bond-type distances, in spirit): total
  variation between the C/N/O/F histograms, and between the single/double/triple bond
  histograms (kekulised), of the generated molecules *as decoded* (before correction)
  and of the test molecules (:func:`type_distances`).

As in GDSS, uniqueness, novelty, FCD and NSPDK are computed on the *corrected* molecules
(each one's largest fragment after :func:`correct_mol`), not on the molecules that were
valid before correction. Canonical SMILES are RDKit's (``MolToSmiles(MolFromSmiles(s))``,
isomeric, as MOSES): the decoded molecules carry no stereochemistry, so a training
SMILES with stereo tags never matches one of them.

Where this module is not GDSS's code (each also noted where it applies):

* :func:`correct_mol` counts valences itself instead of parsing RDKit's error message
  (its default ``pick="first"`` fixes the atom that message names; ``pick="most"``, the
  most over-valent atom first, is offered as an alternative), and gives the corrected molecule's N and O atoms the charges of
  :func:`~energyflow.domains.molecule.chem.graph_to_mol`'s rule; GDSS keeps the charges
  its construction set, which depend on the order its bonds were added (an N+ that loses
  a bond in the correction stays charged there, as ``[NH+]``).
* The largest fragment is the one with the most atoms (DiGress's rule, ties: the one
  holding the lowest atom index); GDSS keeps the fragment with the longest SMILES string.
* A molecule without atoms is invalid everywhere (GDSS drops empty SMILES before MOSES).
* NSPDK labels atoms by atomic number where GDSS uses the symbol: EDeN hashes labels with
  Python's ``hash``, randomised per process for strings, so GDSS's value moves by ~0.5 %
  from run to run (measured on 200 vs 200 NCI molecules); integers hash the same in every
  run. The MMD is computed from the mean feature vectors, which equals GDSS's averages of
  the three kernel matrices (the kernel is linear) without building them.

Example:
    >>> from energyflow.domains.molecule.chem import graph_to_mol, smiles_to_graph
    >>> data = [graph_to_mol(*smiles_to_graph(s)) for s in ["CCO", "C=CC#N", "CCO"]]
    >>> f_double_f = graph_to_mol([3, 3], [[0, 2], [2, 0]])   # F=F: the correction makes it F-F
    >>> validity_table(data + [f_double_f])
    {'valid': 0.75, 'valid_connected': 0.75, 'valid_corrected': 1.0}
    >>> fraction_unique(["CCO", "OCC", "C=CC#N"]), fraction_novel(["CCO", "OCC", "C=CC#N"], ["C(C)O"])
    (0.6666666666666666, 0.5)
"""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from energyflow.domains.molecule.chem import (
    _CHARGEABLE,
    ATOMS,
    VALENCE,
    _rdkit,
    graph_to_mol,
    is_sanitizable,
    smiles_to_graph,
)
from energyflow.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "canonical_smiles",
    "correct_mol",
    "data_floor",
    "fcd",
    "fraction_novel",
    "fraction_unique",
    "mol_graphs",
    "molecule_metrics",
    "nspdk_available",
    "nspdk_mmd",
    "type_distances",
    "validity_table",
]

_PICKS = ("first", "most")


# --------------------------------------------------------------------------- correction


def _check_mol(mol: Any, what: str = "mol") -> None:
    Chem = _rdkit()
    if not isinstance(mol, Chem.Mol):
        raise InvalidTypeError(f"{what} must be an RDKit Mol, got {type(mol).__name__}")


def _bond_order(bond: Any) -> int:
    Chem = _rdkit()
    kind = bond.GetBondType()
    order = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}.get(kind)
    if order is None:
        raise InvalidValueError(f"correct_mol needs single, double and triple bonds only, got {kind} "
                                "(kekulise the molecule first)")
    return order


def _largest_fragment(mol: Any) -> Any:
    """The fragment of a sanitised ``mol`` with the most atoms (ties: the one with the lowest atom index)."""
    Chem = _rdkit()
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
    return max(frags, key=lambda m: m.GetNumAtoms())  # max keeps the first of equal sizes


def correct_mol(mol: Any, pick: str = "first") -> tuple[Any, bool]:
    """GDSS's valency correction, then the largest fragment: ``(corrected mol or None, needed_correction)``.

    A molecule RDKit sanitises as it is is not changed (``needed_correction`` is False).
    Otherwise, while some atom is over-valent (its bond orders sum to more than its
    :data:`~energyflow.domains.molecule.chem.VALENCE`, or to more than one above it for
    N and O, which then carry a ``+1`` charge), one atom is chosen and the highest-order
    bond at it is lowered by one (a single bond is removed); among bonds of equal order
    the first in the atom's bond list goes, and a lowered bond moves to the end of that
    list, as GDSS's remove-and-re-add does. The atom chosen:

    * ``pick="first"`` (GDSS): the over-valent atom of lowest index, the one RDKit's
      valence error names and GDSS parses from the message;
    * ``pick="most"``: the most over-valent atom (ties: the lowest index).

    After the loop the N and O atoms get the charge of
    :func:`~energyflow.domains.molecule.chem.graph_to_mol`'s rule (``+1`` exactly when
    their valence is one above neutral) and every other atom none. Last, as GDSS's
    ``valid_mol_can_with_seg``, only the largest fragment is kept (here the one with the
    most atoms; GDSS takes the longest SMILES string).

    Args:
        mol (rdkit.Chem.Mol): a molecule over C, N, O, F (typically unsanitised, from
            :func:`~energyflow.domains.molecule.chem.graph_to_mol`). Not modified.
        pick (str): ``"first"`` or ``"most"``, the over-valent atom to fix first.

    Returns:
        tuple: a sanitised ``rdkit.Chem.Mol`` (or None when even the corrected molecule
        does not sanitise, or ``mol`` has no atoms), and whether ``mol`` failed to
        sanitise as given.

    Raises:
        InvalidTypeError: ``mol`` is not an RDKit molecule.
        InvalidValueError: an unknown ``pick``, an element outside C/N/O/F, or an
            aromatic bond in a molecule that needs correcting.

    Example:
        >>> from rdkit import Chem
        >>> five = Chem.MolFromSmiles("CC(=C)(C)C", sanitize=False)   # a carbon with valence 5
        >>> fixed, needed = correct_mol(five)
        >>> Chem.MolToSmiles(fixed), needed                            # its double bond lowered
        ('CC(C)(C)C', True)
        >>> fixed, needed = correct_mol(Chem.MolFromSmiles("CCO.C"))   # valid: the largest fragment
        >>> Chem.MolToSmiles(fixed), needed
        ('CCO', False)
    """
    _check_mol(mol)
    if pick not in _PICKS:
        raise InvalidValueError(f"pick must be one of {_PICKS}, got {pick!r}")
    Chem = _rdkit()
    if mol.GetNumAtoms() == 0:
        return None, True
    if is_sanitizable(mol):
        fixed = Chem.Mol(mol)
        Chem.SanitizeMol(fixed)
        return _largest_fragment(fixed), False

    rw = Chem.RWMol(mol)
    symbols = [atom.GetSymbol() for atom in rw.GetAtoms()]
    for sym in symbols:
        if sym not in VALENCE:
            raise InvalidValueError(f"correct_mol knows the valences of {', '.join(ATOMS)}, got {sym}")
    limit = np.array([VALENCE[s] + (s in _CHARGEABLE) for s in symbols])
    kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE}
    while True:
        valence = np.zeros(len(symbols), dtype=np.int64)
        for bond in rw.GetBonds():
            order = _bond_order(bond)
            valence[bond.GetBeginAtomIdx()] += order
            valence[bond.GetEndAtomIdx()] += order
        excess = valence - limit
        if excess.max() <= 0:
            break
        # argmax returns the lowest index among the maxima, so "most" breaks ties as "first" does
        i = int(np.flatnonzero(excess > 0)[0]) if pick == "first" else int(np.argmax(excess))
        bond = max(rw.GetAtomWithIdx(i).GetBonds(), key=_bond_order)  # the first of the highest order
        a, b, order = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), _bond_order(bond)
        rw.RemoveBond(a, b)
        if order > 1:
            rw.AddBond(a, b, kinds[order - 1])
    for atom, sym, v in zip(rw.GetAtoms(), symbols, valence):
        atom.SetFormalCharge(1 if sym in _CHARGEABLE and v == VALENCE[sym] + 1 else 0)
    fixed = rw.GetMol()
    try:
        Chem.SanitizeMol(fixed)
    except Exception:  # RDKit raises several exception types; a corrected molecule should not reach here
        return None, True
    return _largest_fragment(fixed), True


def _validity(mols: Sequence[Any], pick: str) -> tuple[dict[str, float], list[Any]]:
    """The validity table and each molecule's :func:`correct_mol` result (None where it fails)."""
    Chem = _rdkit()
    valid = connected = corrected_ok = 0
    corrected = []
    for i, mol in enumerate(mols):
        _check_mol(mol, f"mols[{i}]")
        ok = mol.GetNumAtoms() > 0 and is_sanitizable(mol)
        valid += ok
        connected += ok and len(Chem.GetMolFrags(mol)) == 1
        fixed, _ = correct_mol(mol, pick)
        corrected.append(fixed)
        corrected_ok += fixed is not None
    n = len(mols)
    table = {"valid": valid / n, "valid_connected": connected / n, "valid_corrected": corrected_ok / n}
    return table, corrected


def _nonempty_list(items: Any, what: str) -> list[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise InvalidTypeError(f"{what} must be a list, got {type(items).__name__}")
    out = list(items)
    if not out:
        raise InvalidValueError(f"{what} is empty")
    return out


def validity_table(mols: Iterable[Any], pick: str = "first") -> dict[str, float]:
    """The fractions of ``mols`` that are valid as they are, valid and connected, and valid after correction.

    Args:
        mols: RDKit molecules, possibly unsanitisable (as
            :func:`~energyflow.domains.molecule.chem.graph_to_mol` builds them).
        pick (str): the correction's atom choice, see :func:`correct_mol`.

    Returns:
        dict[str, float]: ``valid`` (sanitises as is; GDSS's "validity w/o correction"),
        ``valid_connected`` (valid and one fragment) and ``valid_corrected`` (valid
        after :func:`correct_mol`), each over ``len(mols)``. A molecule without atoms
        counts as invalid.

    Raises:
        InvalidValueError: ``mols`` is empty.

    Example:
        >>> from rdkit import Chem
        >>> mols = [Chem.MolFromSmiles(s, sanitize=False) for s in ["CCO", "CC.O", "FC(F)(F)(F)F"]]
        >>> validity_table(mols)
        {'valid': 0.6666666666666666, 'valid_connected': 0.3333333333333333, 'valid_corrected': 1.0}
    """
    return _validity(_nonempty_list(mols, "mols"), pick)[0]


# --------------------------------------------------------------------------- uniqueness, novelty


def canonical_smiles(smiles: Iterable[str | None]) -> list[str | None]:
    """RDKit's canonical SMILES of each string (``MolToSmiles(MolFromSmiles(s))``, as MOSES), None if invalid.

    None, the empty string and SMILES RDKit cannot parse or sanitise give None.

    Example:
        >>> canonical_smiles(["OCC", "C(C)O", "C1CC", "", None])
        ['CCO', 'CCO', None, None, None]
    """
    Chem = _rdkit()
    out: list[str | None] = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s) if isinstance(s, str) and s else None
        out.append(Chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() > 0 else None)
    return out


@functools.lru_cache(maxsize=4)
def _canonical_set(smiles: tuple[str, ...]) -> frozenset[str]:
    return frozenset(s for s in canonical_smiles(smiles) if s is not None)


def fraction_unique(smiles: Iterable[str | None]) -> float:
    """The number of distinct canonical SMILES among the valid ones, over the number of valid ones.

    This is MOSES's ``fraction_unique(gen, k)`` with ``k`` the number of valid molecules,
    as GDSS calls it after MOSES's ``remove_invalid`` (and DiGress's
    ``compute_uniqueness``): the denominator counts duplicates; invalid SMILES (None,
    unparseable) are left out of both counts.

    Args:
        smiles: generated SMILES; None marks a molecule that had none.

    Returns:
        float: in ``(0, 1]``, or nan when no SMILES is valid.

    Raises:
        InvalidValueError: ``smiles`` is empty.

    Example:
        >>> fraction_unique(["CCO", "OCC", "CC", None, "C1C"])   # 3 valid, 2 distinct
        0.6666666666666666
    """
    canon = [s for s in canonical_smiles(_nonempty_list(smiles, "smiles")) if s is not None]
    return len(set(canon)) / len(canon) if canon else math.nan


def fraction_novel(smiles: Iterable[str | None], train_smiles: Iterable[str]) -> float:
    """Among the distinct valid canonical SMILES, the fraction not among the training SMILES.

    MOSES's ``novelty`` (called by GDSS with the canonicalised training SMILES) and
    DiGress's ``compute_novelty``: the denominator is the number of *distinct* valid
    molecules, not the number generated. The training SMILES are canonicalised here (the
    canonical set of the last few training lists is cached).

    Args:
        smiles: generated SMILES; None marks a molecule that had none.
        train_smiles: the training set's SMILES.

    Returns:
        float: in ``[0, 1]``, or nan when no generated SMILES is valid.

    Raises:
        InvalidValueError: ``smiles`` is empty.

    Example:
        >>> fraction_novel(["CCO", "OCC", "CCN", None], ["C(C)O", "CC"])   # {CCO, CCN}: CCN is new
        0.5
    """
    unique = {s for s in canonical_smiles(_nonempty_list(smiles, "smiles")) if s is not None}
    if not unique:
        return math.nan
    train = _canonical_set(tuple(train_smiles))
    return len(unique - train) / len(unique)


# --------------------------------------------------------------------------- FCD


@functools.lru_cache(maxsize=2)
def _fcd_model(device: str) -> Any:
    try:
        from fcd_torch import FCD
    except ImportError as err:  # pragma: no cover - the molecule extra is missing
        raise InvalidValueError("fcd needs the fcd_torch package: pip install fcd_torch") from err
    return FCD(device=device, n_jobs=1)


@functools.lru_cache(maxsize=4)
def _fcd_stats(smiles: tuple[str, ...], device: str) -> dict[str, np.ndarray]:
    return _fcd_model(device).precalc(list(smiles))


def _checked_smiles(smiles: Iterable[str], what: str) -> tuple[str, ...]:
    out = tuple(_nonempty_list(smiles, what))
    bad = [s for s, c in zip(out, canonical_smiles(out)) if c is None]
    if bad:
        raise InvalidValueError(f"{what} holds {len(bad)} invalid SMILES (first: {bad[0]!r}); "
                                "the FCD takes valid molecules only")
    if len(out) < 2:
        raise InvalidValueError(f"the FCD needs at least 2 molecules in {what}, got {len(out)}")
    return out


def fcd(smiles_a: Iterable[str], smiles_b: Iterable[str], device: str = "cpu") -> float:
    """The Fréchet ChemNet distance between two sets of SMILES, computed with the ``fcd_torch`` package.

    ``fcd_torch`` (the implementation MOSES, and so GDSS, calls) canonicalises each SMILES,
    embeds it with its shipped ChemNet weights (no download), fits a Gaussian to each
    set's 512 activations and returns the Fréchet distance of the two Gaussians. GDSS
    passes the canonical SMILES of the valid corrected molecules (duplicates kept) and
    the test SMILES. The statistics of the last few sets are cached, so a fixed reference
    set is embedded once. The network runs on torch's current thread setting.

    Args:
        smiles_a, smiles_b: at least 2 valid SMILES each.
        device (str): the torch device ChemNet runs on.

    Returns:
        float: the distance (``>= 0`` up to round-off; ~0 for a set with itself).

    Raises:
        InvalidValueError: a set has fewer than 2 SMILES or an invalid one, or
            ``fcd_torch`` is not installed.

    Example:
        >>> mols = ["CCO", "CCN", "C1CCCCC1", "CC(=O)O", "CCCC", "OCC=O"]
        >>> abs(fcd(mols, mols)) < 1e-3, fcd(mols, ["CCCCCC", "CCOCC", "NCCN", "FC(F)F"]) > 1
        (True, True)
    """
    a = _checked_smiles(smiles_a, "smiles_a")
    b = _checked_smiles(smiles_b, "smiles_b")
    model = _fcd_model(device)
    with warnings.catch_warnings():
        # fcd_torch 1.0.7 calls numpy's row_stack and scipy's sqrtm(disp=...), both deprecated
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"fcd_torch(\..*)?")
        return float(model.metric(_fcd_stats(b, device), _fcd_stats(a, device)))


# --------------------------------------------------------------------------- NSPDK


def nspdk_available() -> bool:
    """Whether the ``eden-kernel`` package (EDeN's NSPDK, needed by :func:`nspdk_mmd`) is installed."""
    return importlib.util.find_spec("eden") is not None


def mol_graphs(mols: Iterable[Any]) -> list[Any]:
    """Each molecule as a ``networkx.Graph`` labelled for NSPDK, as GDSS's ``mols_to_nx`` (atomic numbers).

    Nodes are the heavy atoms with ``label`` = the atomic number (GDSS uses the symbol;
    see the module docstring), edges the bonds with ``label`` = ``int`` of RDKit's bond
    order of a sanitised copy, so that, as in GDSS, an aromatic bond (order 1.5) is
    labelled 1 like a single bond.

    Args:
        mols: RDKit molecules that sanitise.

    Returns:
        list[networkx.Graph]: one graph per molecule, nodes numbered by atom index.

    Raises:
        InvalidValueError: a molecule does not sanitise.

    Example:
        >>> from rdkit import Chem
        >>> g = mol_graphs([Chem.MolFromSmiles("c1ccccc1O")])[0]
        >>> sorted(set(dict(g.nodes(data="label")).values())), sorted({b for *_, b in g.edges(data="label")})
        ([6, 8], [1])
    """
    import networkx as nx

    Chem = _rdkit()
    out = []
    for i, mol in enumerate(mols):
        _check_mol(mol, f"mols[{i}]")
        m = Chem.Mol(mol)
        try:
            Chem.SanitizeMol(m)
        except Exception as err:
            raise InvalidValueError(f"mols[{i}] does not sanitise; correct it first (correct_mol)") from err
        g = nx.Graph()
        for atom in m.GetAtoms():
            g.add_node(atom.GetIdx(), label=atom.GetAtomicNum())
        for bond in m.GetBonds():
            g.add_edge(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), label=int(bond.GetBondTypeAsDouble()))
        out.append(g)
    return out


def _nspdk_mean_features(graphs: list[Any], what: str) -> np.ndarray:
    from eden.graph import vectorize

    for i, g in enumerate(graphs):
        attributes = [d for _, d in g.nodes(data=True)] + [d for *_, d in g.edges(data=True)]
        if any("label" not in d for d in attributes):
            raise InvalidValueError(f"{what}[{i}] needs a 'label' on every node and edge (see mol_graphs)")
    features = vectorize(graphs, complexity=4, discrete=True)  # scipy sparse, one unit-norm row per graph
    return np.asarray(features.mean(axis=0)).ravel()


def nspdk_mmd(graphs_a: Iterable[Any], graphs_b: Iterable[Any]) -> float:
    """GDSS's NSPDK MMD: squared MMD, linear kernel, on EDeN's NSPDK features (``eden-kernel`` package).

    Each graph becomes EDeN's hashed, normalised neighbourhood-subgraph-pairwise-distance
    feature vector (``eden.graph.vectorize(graphs, complexity=4, discrete=True)``, the
    call in GDSS's ``evaluation/mmd.py::compute_nspdk_mmd``, node and edge attribute
    ``label``). GDSS returns ``mean K(A, A) + mean K(B, B) - 2 mean K(A, B)`` with the
    linear kernel, the biased estimate with the diagonals; for a linear kernel that is
    ``|mean feature(A) - mean feature(B)|^2``, computed here that way (no kernel
    matrices). Graphs without nodes are dropped first, as GDSS drops them from the
    generated set.

    Args:
        graphs_a, graphs_b: ``networkx`` graphs labelled as :func:`mol_graphs` makes them.

    Returns:
        float: ``>= 0``; 0 for identical multisets of graphs.

    Raises:
        InvalidValueError: ``eden-kernel`` is not installed, a set has no graph with
            nodes, or a node or edge has no ``label``.
    """
    if not nspdk_available():
        raise InvalidValueError("nspdk_mmd needs EDeN's NSPDK: pip install eden-kernel")
    return _nspdk_to(graphs_a, _nspdk_set_features(graphs_b, "graphs_b"))


def _nspdk_set_features(graphs: Iterable[Any], what: str) -> np.ndarray:
    """The mean NSPDK feature of a set's graphs with nodes."""
    kept = [g for g in _nonempty_list(graphs, what) if g.number_of_nodes() > 0]
    if not kept:
        raise InvalidValueError("nspdk_mmd needs at least one graph with nodes in each set")
    return _nspdk_mean_features(kept, what)


def _nspdk_to(graphs_a: Iterable[Any], mean_b: np.ndarray) -> float:
    diff = _nspdk_set_features(graphs_a, "graphs_a") - mean_b
    return float(diff @ diff)


@functools.lru_cache(maxsize=2)
def _reference_nspdk(test: tuple[str, ...]) -> np.ndarray:
    """The reference set's mean NSPDK feature, once per set (QM9's 13,083 test molecules take tens of seconds)."""
    Chem = _rdkit()
    return _nspdk_set_features(mol_graphs([Chem.MolFromSmiles(s) for s in test]), "graphs_b")


# --------------------------------------------------------------------------- type distances


def _type_histograms(mols: Sequence[Any], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the atom types (:data:`ATOMS`) and of the single/double/triple bonds (kekulised)."""
    Chem = _rdkit()
    index = {s: i for i, s in enumerate(ATOMS)}
    order = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2}
    atoms, bonds = np.zeros(len(ATOMS)), np.zeros(3)
    for i, mol in enumerate(mols):
        _check_mol(mol, f"{what}[{i}]")
        if any(b.GetBondType() == Chem.BondType.AROMATIC for b in mol.GetBonds()):
            mol = Chem.Mol(mol)
            try:
                Chem.Kekulize(mol, clearAromaticFlags=True)
            except Exception as err:
                raise InvalidValueError(f"{what}[{i}] has aromatic bonds RDKit cannot kekulise") from err
        for atom in mol.GetAtoms():
            sym = atom.GetSymbol()
            if sym not in index:
                raise InvalidValueError(f"{what}[{i}] holds {sym}, not one of {', '.join(ATOMS)}")
            atoms[index[sym]] += 1
        for bond in mol.GetBonds():
            k = order.get(bond.GetBondType())
            if k is None:
                raise InvalidValueError(f"{what}[{i}] has a {bond.GetBondType()} bond")
            bonds[k] += 1
    return atoms, bonds


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    if p.sum() == 0 or q.sum() == 0:
        return math.nan
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def type_distances(gen_mols: Iterable[Any], ref_mols: Iterable[Any]) -> dict[str, float]:
    """Total-variation distances between the atom-type and between the bond-type histograms of two sets.

    The atom histogram counts every atom of a set by type (C, N, O, F); the bond
    histogram counts its single, double and triple bonds after kekulising aromatic
    molecules (every Kekulé structure of a molecule has the same counts). Each histogram
    is normalised to sum 1 and ``TV(p, q) = sum |p - q| / 2``, in ``[0, 1]``.

    Args:
        gen_mols, ref_mols: RDKit molecules over C/N/O/F, sanitised or not.

    Returns:
        dict[str, float]: ``atom_tv`` and ``bond_tv``; a distance is nan when a set has
        no atoms (no bonds) to count.

    Raises:
        InvalidValueError: a set is empty, an atom is not C/N/O/F, or a bond is not
            single, double, triple or kekulisable aromatic.

    Example:
        >>> from rdkit import Chem
        >>> gen = [Chem.MolFromSmiles("CO")]                         # atoms C, O; one single bond
        >>> ref = [Chem.MolFromSmiles(s) for s in ["CC", "N"]]       # atoms C, C, N; one single bond
        >>> type_distances(gen, ref)                                 # (|1/2-2/3| + 1/3 + 1/2) / 2
        {'atom_tv': 0.5, 'bond_tv': 0.0}
    """
    ga, gb = _type_histograms(_nonempty_list(gen_mols, "gen_mols"), "gen_mols")
    ra, rb = _type_histograms(_nonempty_list(ref_mols, "ref_mols"), "ref_mols")
    return {"atom_tv": _tv(ga, ra), "bond_tv": _tv(gb, rb)}


# --------------------------------------------------------------------------- the table


def _parse_reference(smiles: Iterable[str], what: str) -> tuple[list[str], list[Any]]:
    Chem = _rdkit()
    out = [s for s in _nonempty_list(smiles, what)]
    mols = [Chem.MolFromSmiles(s) if isinstance(s, str) else None for s in out]
    bad = [s for s, m in zip(out, mols) if m is None]
    if bad:
        raise InvalidValueError(f"{what} holds {len(bad)} invalid SMILES (first: {bad[0]!r})")
    return out, mols


def molecule_metrics(generated: Iterable[Any], train_smiles: Iterable[str], test_smiles: Iterable[str],
                     fcd: bool = True, nspdk: bool | None = None, pick: str = "first") -> dict[str, float]:
    """Every metric of the module docstring for a set of generated molecules, GDSS's way.

    Args:
        generated: RDKit molecules as decoded (possibly unsanitisable, as
            :func:`~energyflow.domains.molecule.chem.graph_to_mol` builds them).
        train_smiles: the training SMILES (novelty).
        test_smiles: the test SMILES (FCD, NSPDK, type distances).
        fcd (bool): compute the FCD (``fcd_torch``; the test set's ChemNet statistics are
            cached after the first call; a few seconds per thousand molecules on one
            thread).
        nspdk (bool | None): compute the NSPDK MMD; None: when ``eden-kernel`` is
            installed (:func:`nspdk_available`).
        pick (str): the correction's atom choice, see :func:`correct_mol`.

    Returns:
        dict[str, float]: ``valid``, ``valid_connected``, ``valid_corrected`` (over all
        generated), ``unique``, ``novel``, ``fcd``, ``nspdk`` (of the valid corrected
        molecules; nan when too few are valid: none, or fewer than 2 for the FCD),
        ``atom_tv``, ``bond_tv`` (of the molecules as generated against the test set).
        ``fcd`` and ``nspdk`` are present only when computed.

    Raises:
        InvalidValueError: ``generated`` is empty, a test SMILES is invalid, or
            ``nspdk=True`` without ``eden-kernel``.

    Example:
        >>> from energyflow.domains.molecule.chem import graph_to_mol, smiles_to_graph
        >>> gen = [graph_to_mol(*smiles_to_graph(s)) for s in ["CCO", "CCO", "CCN"]]
        >>> table = molecule_metrics(gen, ["CCO"], ["CCO", "CCC"], fcd=False, nspdk=False)
        >>> {k: round(v, 3) for k, v in table.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'valid': 1.0, 'valid_connected': 1.0, 'valid_corrected': 1.0, 'unique': 0.667, 'novel': 0.5,
         'atom_tv': 0.167, 'bond_tv': 0.0}
    """
    Chem = _rdkit()
    generated = _nonempty_list(generated, "generated")
    test, test_mols = _parse_reference(test_smiles, "test_smiles")
    if nspdk is None:
        nspdk = nspdk_available()
    elif nspdk and not nspdk_available():
        raise InvalidValueError("nspdk=True needs EDeN's NSPDK: pip install eden-kernel")
    table, corrected = _validity(generated, pick)
    kept = [m for m in corrected if m is not None]
    smiles = [s for s in canonical_smiles(Chem.MolToSmiles(m) for m in kept) if s is not None]
    table["unique"] = fraction_unique(smiles) if smiles else math.nan
    table["novel"] = fraction_novel(smiles, train_smiles) if smiles else math.nan
    if fcd:
        table["fcd"] = _fcd_value(smiles, test) if len(smiles) >= 2 else math.nan
    if nspdk:
        table["nspdk"] = _nspdk_to(mol_graphs(kept), _reference_nspdk(tuple(test))) if kept else math.nan
    table.update(type_distances(generated, test_mols))
    return table


_fcd_value = fcd  # molecule_metrics' argument ``fcd`` shadows the function there


def data_floor(train_smiles: Sequence[str], test_smiles: Iterable[str], n: int, seed: int = 0,
               fcd: bool = True, nspdk: bool | None = None) -> dict[str, float]:
    """:func:`molecule_metrics` of ``n`` training molecules against the test set: a perfect model's floor.

    The ``n`` molecules are drawn without replacement with
    ``numpy.random.default_rng(seed).choice`` and passed through the domain's
    representation (:func:`~energyflow.domains.molecule.chem.smiles_to_graph` then
    :func:`~energyflow.domains.molecule.chem.graph_to_mol`), as a generator's output would
    be, so the floor includes what the representation loses: ``novel`` is ~0 (a
    charged molecule that decodes to its neutral form counts as novel), ``unique`` ~1,
    and ``fcd``, ``nspdk`` and the type distances show how far two finite samples of the
    data lie apart.

    Args:
        train_smiles: the training SMILES (the sample is drawn from them; novelty).
        test_smiles: the test SMILES.
        n (int): the sample size, ``1 <= n <= len(train_smiles)``; use the number of
            generated molecules the floor is printed beside.
        seed (int): the draw's seed.
        fcd, nspdk: as in :func:`molecule_metrics`.

    Returns:
        dict[str, float]: the keys of :func:`molecule_metrics`.

    Raises:
        InvalidValueError: ``n`` out of range, or a drawn SMILES outside the representation.

    Example:
        >>> train = ["CCO", "CCN", "CCC", "C=O", "CC#N"]
        >>> data_floor(train, ["CCO", "CO"], n=3, fcd=False, nspdk=False)["novel"]
        0.0
    """
    train = list(train_smiles)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(train):
        raise InvalidValueError(f"n must be an integer in 1..{len(train)} (the training set's size), "
                                f"got {n!r}")
    idx = np.random.default_rng(seed).choice(len(train), size=int(n), replace=False)
    mols = [graph_to_mol(*smiles_to_graph(train[i])) for i in idx]
    return molecule_metrics(mols, train, test_smiles, fcd=fcd, nspdk=nspdk)
