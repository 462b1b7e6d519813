"""The molecule domain: Energy Matching on relaxed one-hot atom and bond types (QM9 and the user's SMILES).

A state is ``{"x": (B, N, 4), "adj": (B, N, N, 4), "mask": (B, N) bool}``: one-hot atom
types C, N, O, F on the nodes and one-hot bond types none, single, double, triple on the
pairs, both relaxed to real numbers (2-D, hydrogens implicit, kekulised;
:mod:`energyflow.domains.molecule.chem`). The space is
``ProductSpace({"x": NodeMasked, "adj": SymmetricMasked(channels=4)})`` reading the node
mask from the state, so samplers and losses move only the real atoms' features and the
``n (n - 1) / 2`` real pairs, symmetrically.

Encoding and decoding (the documented rule):

* data: the chosen type ``+1``, the other types ``-1`` (centred like the Gaussian source),
  padding and the adjacency's diagonal ``0``;
* decoding: each atom's type is the argmax of its ``x`` row, each pair's bond type the
  argmax of the symmetrised ``(a_ij + a_ji) / 2``; the graph becomes an RDKit molecule by
  :func:`~energyflow.domains.molecule.chem.graph_to_mol` (GDSS's +1 charge on an
  over-valent N or O) and is reported as it is, without correction.

Sources and couplings: noise copies each data molecule's node mask, new samples draw
their atom counts from the training molecules'; the default coupling (``graph_ot``)
pairs molecules of one size by exact OT and relabels each data molecule's atoms onto its
noise partner (:class:`~energyflow.domains.graph.coupling.PermutationOT`). Training draws
permute each molecule's atoms at random (``permute=True``).

Example:
    >>> import torch
    >>> d = MoleculeDomain("nci")
    >>> x = d.sample_data(4, torch.Generator().manual_seed(0))
    >>> x["x"].shape, x["adj"].shape, x["mask"].dtype
    (torch.Size([4, 9, 4]), torch.Size([4, 9, 9, 4]), torch.bool)
    >>> d.decode_smiles(d.test_data(3)) == d.test_smiles[:3]
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from energyflow import tree
from energyflow.domains.graph.domain import DenseGraphDomain
from energyflow.domains.molecule.chem import ATOMS, BONDS, graph_to_mol, mol_to_smiles
from energyflow.domains.molecule.data import MOLECULE_DATASETS, MoleculeSplit, load_molecules, split_smiles
from energyflow.errors import InvalidValueError
from energyflow.spaces import NodeMasked, ProductSpace, SymmetricMasked

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["MoleculeDomain", "decode_graphs", "encode_arrays", "read_smiles_file"]


def encode_arrays(atoms: np.ndarray, bonds: np.ndarray, scale: float = 1.0) -> dict[str, Tensor]:
    """Compact arrays -> a state: ``atoms (M, N)`` (``-1`` padding), ``bonds (M, N, N)`` -> signed one-hots.

    The chosen type is ``+scale``, the others ``-scale``, padding and the diagonal 0.

    Example:
        >>> s = encode_arrays(np.array([[0, 2, -1]]), np.array([[[0, 1, 0], [1, 0, 0], [0, 0, 0]]]))
        >>> s["x"][0].tolist(), s["adj"][0, 0, 1].tolist(), s["adj"][0, 0, 2].tolist(), s["mask"][0].tolist()
        ([[1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0]], [-1.0, 1.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0], [True, True, False])
    """
    atoms = torch.as_tensor(np.asarray(atoms), dtype=torch.long)
    bonds = torch.as_tensor(np.asarray(bonds), dtype=torch.long)
    mask = atoms >= 0
    zero = torch.zeros(())
    s = float(scale)
    x = torch.where(mask.unsqueeze(-1), s * (2 * nn.functional.one_hot(atoms.clamp_min(0), len(ATOMS)).float() - 1), zero)
    n = atoms.shape[1]
    pair = (mask.unsqueeze(1) & mask.unsqueeze(2) & ~torch.eye(n, dtype=torch.bool)).unsqueeze(-1)
    adj = torch.where(pair, s * (2 * nn.functional.one_hot(bonds, len(BONDS)).float() - 1), zero)
    return {"x": x, "adj": adj, "mask": mask}


def decode_graphs(state: dict[str, Tensor]) -> list[tuple[list[int], np.ndarray]]:
    """A state -> per molecule (atom-type indices, bond-order matrix) of its real atoms, by argmax."""
    x, adj, mask = state["x"].detach().cpu(), state["adj"].detach().cpu(), state["mask"].cpu().bool()
    atoms = x.argmax(-1)
    bonds = (0.5 * (adj + adj.transpose(1, 2))).argmax(-1)
    out = []
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        bb = bonds[b, :n, :n].numpy().copy()
        np.fill_diagonal(bb, 0)
        out.append((atoms[b, :n].tolist(), bb))
    return out


def read_smiles_file(path: str | os.PathLike[str]) -> list[str]:
    """SMILES from a text file: the first whitespace-separated field of each non-empty, non-``#`` line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SMILES file at {path}")
    out = [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not out:
        raise InvalidValueError(f"{path} holds no SMILES")
    return out


class MoleculeDomain(DenseGraphDomain):
    """Small molecules (C, N, O, F; up to ``max_atoms`` heavy atoms) as dense masked states.

    Args:
        dataset (str): ``"qm9"`` (default; the ``qm9pack`` wheel, EDM's split) or
            ``"nci"`` (419 molecules RDKit ships; tests and quick demos), or the name of a
            user's set when ``smiles`` is given.
        source (str): only ``"gaussian"``.
        seed (int): splits ``nci`` and a user's molecules.
        smiles (list[str] | str | PathLike | None): the user's molecules, a list or a
            file of SMILES (:func:`read_smiles_file`); split by ``test_fraction``.
        path (str | PathLike | None): a file of SMILES (what ``train --data`` sets).
        test_fraction (float): share of a user's molecules held out.
        max_atoms (int | None): padding size ``N`` (default 9 for the named sets, else the
            largest molecule).
        permute (bool): permute each training draw's atoms at random.
        scale (float): the data's magnitude: a chosen type is ``+scale``, the others
            ``-scale`` (decoding by argmax does not depend on it). Against the unit
            Gaussian source, ``scale=1`` gives data and noise the same norm, so a point
            half-way along a path looks like one at ``t`` and ``1 - t`` to a
            time-independent field; smaller values separate them.

    Attributes:
        space (ProductSpace): ``{"x": NodeMasked(N, 4), "adj": SymmetricMasked(N, channels=4)}``.
        train_smiles, test_smiles (list[str]): canonical SMILES of the split.
        max_atoms (int): ``N``.
    """

    name = "molecule"
    unit = "molecules"
    node_keys = ("x",)
    options = ("dataset", "source", "seed", "smiles", "path", "test_fraction", "max_atoms", "permute", "scale")
    network_options = ("hidden", "depth")

    def __init__(self, dataset: str = "qm9", source: str = "gaussian", seed: int = 0,
                 smiles: list[str] | str | os.PathLike[str] | None = None,
                 path: str | os.PathLike[str] | None = None, test_fraction: float = 0.2,
                 max_atoms: int | None = None, permute: bool = True, scale: float = 1.0) -> None:
        if not isinstance(source, str) or source.lower() not in ("gaussian", "normal"):
            raise InvalidValueError(f"MoleculeDomain supports only source='gaussian', got {source!r}")
        self.source, self.permute = "gaussian", bool(permute)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < float(scale) < float("inf"):
            raise InvalidValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        if smiles is not None and path is not None:
            raise InvalidValueError("give smiles= (a list or file) or path= (a file of SMILES), not both")
        smiles = path if path is not None else smiles
        self.path = None if path is None else str(path)
        if smiles is not None:
            items = read_smiles_file(smiles) if isinstance(smiles, (str, os.PathLike)) else list(smiles)
            name = str(dataset) if dataset not in (None, "", "qm9") else "custom"
            split = split_smiles(items, test_fraction, seed, name=name, max_atoms=max_atoms)
        else:
            if dataset not in MOLECULE_DATASETS:
                raise InvalidValueError(f"unknown molecule data set {dataset!r}; choose one of "
                                        f"{list(MOLECULE_DATASETS)} or give smiles= (a list or a file of SMILES)")
            split = load_molecules(dataset, seed=int(seed))
        self.split: MoleculeSplit = split
        self.dataset, self.seed, self.test_fraction = split.name, int(seed), float(test_fraction)
        n = split.atoms.shape[1]
        if max_atoms is not None and int(max_atoms) != n:
            if int(max_atoms) < int((split.atoms >= 0).sum(1).max()):
                raise InvalidValueError(f"max_atoms={max_atoms} is smaller than the largest molecule")
            pad = int(max_atoms) - n
            atoms = np.pad(split.atoms, ((0, 0), (0, pad)), constant_values=-1) if pad > 0 else split.atoms[:, :int(max_atoms)]
            bonds = np.pad(split.bonds, ((0, 0), (0, pad), (0, pad))) if pad > 0 else split.bonds[:, :int(max_atoms), :int(max_atoms)]
        else:
            atoms, bonds = split.atoms, split.bonds
        self.max_atoms = atoms.shape[1]
        self._atoms, self._bonds = atoms, bonds
        self.train_smiles, self.test_smiles = split.smiles_of("train"), split.smiles_of("test")
        self.validation_smiles = split.smiles_of("validation")
        self._train = encode_arrays(atoms[split.train], bonds[split.train], self.scale)
        self._test = encode_arrays(atoms[split.test], bonds[split.test], self.scale)
        self.space = ProductSpace({"x": NodeMasked(self.max_atoms, len(ATOMS), mask="mask"),
                                   "adj": SymmetricMasked(self.max_atoms, mask="mask", channels=len(BONDS))})

    @classmethod
    def from_smiles(cls, smiles: list[str], test_fraction: float = 0.2, seed: int = 0, name: str = "custom",
                    **kwargs: Any) -> "MoleculeDomain":
        """A domain on the user's molecules (a list of SMILES).

        Example:
            >>> d = MoleculeDomain.from_smiles(["CCO", "CC=O", "C#N", "OCC(F)F", "CN"], test_fraction=0.4)
            >>> len(d.train_smiles), d.max_atoms
            (3, 5)
        """
        return cls(dataset=name, seed=seed, smiles=list(smiles), test_fraction=test_fraction, **kwargs)

    # -- network ---------------------------------------------------------------------

    def default_network(self, hidden: int = 64, depth: int = 4) -> nn.Module:
        """A fresh :class:`~energyflow.domains.graph.networks.PPGNPotential` on atoms and bonds (``(B,)`` energies)."""
        from energyflow.domains.graph.networks import PPGNPotential

        return PPGNPotential(node_features=len(ATOMS), edge_channels=len(BONDS), hidden=hidden, depth=depth)

    # -- decoding, metrics, plots --------------------------------------------------------

    def _state(self, samples: Any, what: str) -> dict[str, Tensor]:
        if not isinstance(samples, dict) or any(k not in samples for k in ("x", "adj", "mask")):
            raise InvalidValueError(f"{what} must be a molecule state {{'x', 'adj', 'mask'}}, got {tree.describe(samples)}")
        return samples

    def decode(self, samples: dict[str, Tensor]) -> list:
        """States -> unsanitised RDKit molecules (argmax types; GDSS's charge rule; no correction)."""
        return [graph_to_mol(a, b) for a, b in decode_graphs(self._state(samples, "samples"))]

    def decode_smiles(self, samples: dict[str, Tensor]) -> list[str | None]:
        """States -> canonical SMILES as decoded (None where RDKit does not sanitise the molecule as it is)."""
        return [mol_to_smiles(m) for m in self.decode(samples)]

    def _mols(self, x: Any, what: str) -> list:
        if isinstance(x, (list, tuple)):
            from energyflow.domains.molecule.chem import _rdkit

            Chem = _rdkit()
            mols = [Chem.MolFromSmiles(s) if isinstance(s, str) else s for s in x]
            if not mols or any(m is None for m in mols):
                raise InvalidValueError(f"{what} must be a molecule state or a non-empty list of valid SMILES / RDKit mols")
            return mols
        return self.decode(self._state(x, what))

    def metrics(self, samples: Any, reference: Any = None, fcd: bool = True) -> dict[str, float]:
        """Validity (as decoded, and after GDSS's correction), uniqueness, novelty, FCD, type distances.

        Args:
            samples: a state, or a list of SMILES or RDKit molecules.
            reference: SMILES (or a state) of the reference set; default the test split.
            fcd (bool): also the Fréchet ChemNet distance (``fcd_torch``; a few seconds
                per thousand molecules).

        Returns:
            dict[str, float]: see :func:`energyflow.domains.molecule.metrics.molecule_metrics`.
        """
        from energyflow.domains.molecule.metrics import molecule_metrics

        mols = self._mols(samples, "samples")
        if reference is None:
            ref = self.test_smiles
        elif isinstance(reference, dict):
            ref = [s for s in self.decode_smiles(self._state(reference, "reference")) if s is not None]
        else:
            ref = list(reference)
        return {k: float(v) for k, v in molecule_metrics(mols, self.train_smiles, ref, fcd=fcd).items()}

    def save_samples(self, samples: Any, path: str | os.PathLike[str]) -> str:
        """Writes the decoded molecules as SMILES, one per line with its status; returns a summary.

        A line is ``SMILES<TAB>valid`` for a molecule RDKit sanitises as decoded, or
        ``SMILES<TAB>corrected`` for one that needed GDSS's valency correction (its
        largest fragment). With a ``.pt`` path, the states are saved there as tensors
        and the SMILES go next to them (``.smi``).
        """
        from energyflow.domains.molecule.metrics import correct_mol

        path = Path(path)
        state = self._state(samples, "samples")
        if path.suffix == ".pt":
            super().save_samples(state, path)
            path = path.with_suffix(".smi")
        lines, valid = [], 0
        for mol in self.decode(state):
            smi = mol_to_smiles(mol)
            if smi is not None:
                valid += 1
                lines.append(f"{smi}\tvalid")
            else:
                fixed, _ = correct_mol(mol)
                lines.append(f"{mol_to_smiles(fixed) if fixed is not None else ''}\tcorrected")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, path)
        return f"{len(lines)} molecules ({valid} valid as decoded) as SMILES in {path.name}"

    def plot(self, samples: Any, reference: Any = None, ax: Any = None, max_mols: int = 24, ncol: int = 6) -> "Figure":
        """A grid of drawn molecules (RDKit's drawing): the valid samples, their SMILES beneath."""
        import matplotlib.pyplot as plt
        from rdkit.Chem import Draw

        mols = self._mols(samples, "samples")
        smiles = [mol_to_smiles(m) for m in mols]
        from energyflow.domains.molecule.chem import _rdkit

        Chem = _rdkit()
        valid = [(Chem.MolFromSmiles(s), s) for s in smiles if s is not None]
        shown = valid[:max_mols]
        if not shown:
            from energyflow.domains.base import PlotUnavailableError

            raise PlotUnavailableError("no sample decodes to a valid molecule; nothing to draw")
        img = Draw.MolsToGridImage([m for m, _ in shown], molsPerRow=ncol, subImgSize=(200, 200),
                                   legends=[s for _, s in shown])
        rows = -(-len(shown) // ncol)
        fig, axis = plt.subplots(figsize=(2.0 * ncol, 2.0 * rows + 0.4))
        axis.imshow(np.asarray(img))
        axis.set_axis_off()
        axis.set_title(f"{len(valid)} of {len(mols)} samples valid as decoded ({self.dataset}); the first {len(shown)} drawn")
        fig.tight_layout()
        return fig
