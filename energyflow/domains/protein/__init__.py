"""The protein domain (issue 13): AAV capsid design in a sequence VAE's latent space.

* :mod:`.data`: the AAV task files and ground truth (shipped), tokens, normalised fitness;
* :mod:`.models`: the fitness CNN (the oracle and the guidance predictor) and the sequence
  VAE, trained once and cached;
* :mod:`.domain`: :class:`ProteinDomain` (registered as ``"protein"``): the VAE's latent
  means as data, argmax decoding, sequence files, a latent plot;
* :mod:`.metrics`: GGS's fitness, diversity and novelty (Levenshtein by rapidfuzz);
* :mod:`.design`: design with the DSL, ``V + observe(fitness | predictor(decode(z))) +
  repulsion``, GGS's selection and the per-seed table.
"""

from energyflow.domains.protein.data import ALPHABET, TASKS, load_ground_truth, load_task, normalise
from energyflow.domains.protein.domain import ProteinDomain, write_sequences
from energyflow.domains.protein.models import FitnessCNN, SequenceVAE, train_oracle, train_predictor, train_vae

__all__ = ["ALPHABET", "FitnessCNN", "ProteinDomain", "SequenceVAE", "TASKS", "load_ground_truth", "load_task",
           "normalise", "train_oracle", "train_predictor", "train_vae", "write_sequences"]
