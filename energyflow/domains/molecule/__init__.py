"""The molecule domain (issue 12): QM9 and the user's SMILES as relaxed atom and bond types.

* :mod:`.chem`: SMILES <-> (atom types C/N/O/F, kekulised bond orders) with RDKit;
* :mod:`.data`: QM9 from the ``qm9pack`` wheel (EDM's split), RDKit's NCI sample, a
  user's SMILES;
* :mod:`.domain`: :class:`MoleculeDomain` (registered as ``"molecule"``), the signed
  one-hot encoding, argmax decoding, SMILES output and drawings;
* :mod:`.metrics`: validity without and with GDSS's correction, uniqueness, novelty,
  FCD (``fcd_torch``) and type distances.

The default potential is the graph domain's
:class:`~energyflow.domains.graph.networks.PPGNPotential` on node features and edge
channels.
"""

from energyflow.domains.molecule.chem import ATOMS, BONDS, graph_to_mol, mol_to_smiles, smiles_to_graph
from energyflow.domains.molecule.data import MOLECULE_DATASETS, MoleculeSplit, load_molecules, split_smiles
from energyflow.domains.molecule.domain import MoleculeDomain, decode_graphs, encode_arrays, read_smiles_file

__all__ = ["ATOMS", "BONDS", "MOLECULE_DATASETS", "MoleculeDomain", "MoleculeSplit", "decode_graphs", "encode_arrays",
           "graph_to_mol", "load_molecules", "mol_to_smiles", "read_smiles_file", "smiles_to_graph", "split_smiles"]
