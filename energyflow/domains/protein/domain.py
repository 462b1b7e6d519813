"""The protein domain: AAV sequences as the latent means of a sequence VAE.

A state is a latent vector ``(B, 16)`` (Euclidean). The data are the encoder means of a
task's distinct sequences (the VAE is trained once per task and cached,
:func:`~energyflow.domains.protein.models.train_vae`); a fixed ``holdout`` fraction of
them is the held-out reference and never trains the potential. Decoding is the argmax
of the VAE decoder's logits. The default potential is an MLP on the latent.

Example:
    >>> import torch
    >>> d = ProteinDomain("medium", vae_steps=20, cache=False)
    >>> d.space.event_shape, d.train_data().shape[1], len(d.decode(d.test_data(2))[0])
    ((16,), 16, 28)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from energyflow import metrics as _metrics
from energyflow.domains.base import Domain, mlp_potential, subset
from energyflow.domains.protein import data as _data
from energyflow.domains.protein.metrics import novelty
from energyflow.domains.protein.models import SequenceVAE, train_vae
from energyflow.errors import InvalidValueError
from energyflow.spaces import Euclidean

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["ProteinDomain", "write_sequences"]


def write_sequences(path: str | os.PathLike[str], sequences: list[str], columns: dict[str, Any] | None = None) -> Path:
    """Writes sequences atomically: FASTA for ``.fasta``/``.fa``, else CSV (``sequence`` plus ``columns``)."""
    path = Path(path)
    columns = {k: list(v) for k, v in (columns or {}).items()}
    for k, v in columns.items():
        if len(v) != len(sequences):
            raise InvalidValueError(f"column {k!r} has {len(v)} values for {len(sequences)} sequences")

    def fmt(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)

    if path.suffix.lower() in (".fasta", ".fa"):
        lines = []
        for i, s in enumerate(sequences):
            extra = " ".join(f"{k}={fmt(v[i])}" for k, v in columns.items())
            lines += [f">design_{i}" + (f" {extra}" if extra else ""), s]
    else:
        lines = [",".join(["sequence", *columns])]
        lines += [",".join([s, *(fmt(v[i]) for v in columns.values())]) for i, s in enumerate(sequences)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


class ProteinDomain(Domain):
    """AAV capsid sequences of a GGS design task, in the latent space of a sequence VAE.

    Args:
        dataset (str): ``"medium"`` or ``"hard"`` (the task file).
        path (str | None): the user's sequences instead (CSV with a ``sequence`` column,
            FASTA, or one per line; one length, a multiple of 4; ``train --data FILE``);
            their VAE is cached under a hash of the sequences. Design needs a task.
        holdout (float): fraction of the sequences held out as the reference set.
        vae_steps (int | None), vae_beta (float | None): override the VAE recipe
            (:data:`~energyflow.domains.protein.models.VAE_RECIPE`).
        seed (int): the holdout split.
        cache (bool): cache the VAE on disk.
    """

    name = "protein"
    options = ("dataset", "path", "holdout", "vae_steps", "vae_beta", "seed")
    network_options = ("hidden", "depth")

    def __init__(self, dataset: str = "medium", path: str | None = None, holdout: float = 0.1,
                 vae_steps: int | None = None, vae_beta: float | None = None, seed: int = 0,
                 cache: bool = True) -> None:
        if not isinstance(holdout, (int, float)) or isinstance(holdout, bool) or not 0 < float(holdout) < 1:
            raise InvalidValueError(f"holdout must lie in (0, 1), got {holdout!r}")
        self.dataset = str(dataset)
        if path is not None:
            self.sequences = _data.read_sequences(path)
            self.vae: SequenceVAE = train_vae(self.sequences, steps=vae_steps, beta=vae_beta, cache=cache)
            self.task: str | None = None
        else:
            self.sequences = _data.load_task(self.dataset)
            self.vae = train_vae(self.dataset, steps=vae_steps, beta=vae_beta, cache=cache)
            self.task = self.dataset
        with torch.no_grad():
            latents = self.vae.encode(self.sequences.tokens())[0].float()
        perm = torch.from_numpy(np.random.RandomState(int(seed)).permutation(len(latents)))
        k = max(1, int(round(len(latents) * float(holdout))))
        if len(latents) - k < 2:
            raise InvalidValueError(f"{len(latents)} sequences are too few for a holdout of {holdout}")
        self._test, self._train = latents[perm[:k]], latents[perm[k:]]
        self.space = Euclidean(self.vae.latent_dim)

    # -- data ---------------------------------------------------------------------------------

    def sample_data(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        idx = torch.randint(len(self._train), (n,), generator=generator, device=generator.device if generator else None)
        x = self._train[idx.cpu()]
        return x.to(device) if device is not None else x

    def train_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        return subset(self._train, n, generator, "the protein training latents", "sequences")

    def test_data(self, n: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        return subset(self._test, n, generator, "the protein held-out latents", "sequences")

    def default_network(self, hidden: int = 256, depth: int = 3) -> nn.Module:
        """An MLP potential ``latent_dim -> hidden (x depth) -> 1`` with SiLU."""
        return mlp_potential(self.vae.latent_dim, hidden, depth)

    # -- decoding and metrics -----------------------------------------------------------------

    @torch.no_grad()
    def logits(self, samples: Tensor) -> Tensor:
        """The VAE decoder's logits ``(B, L, 20)`` of latents ``(B, latent_dim)``."""
        vae = self.vae.to(samples.device)
        return vae.decode(samples.to(next(vae.parameters()).dtype))

    def decode(self, samples: Tensor) -> list[str]:
        """Latents ``(B, latent_dim)`` -> ``B`` sequences (argmax of the decoder)."""
        if not isinstance(samples, Tensor) or samples.ndim != 2 or samples.shape[1] != self.vae.latent_dim:
            raise InvalidValueError(f"protein states are (B, {self.vae.latent_dim}) latents, got "
                                    f"{getattr(samples, 'shape', type(samples).__name__)}")
        return _data.decode(self.logits(samples).argmax(-1).cpu())

    def metrics(self, samples: Tensor, reference: Tensor | None = None, max_points: int = 2000) -> dict[str, float]:
        """Latent W2 and MMD^2 to the held-out latents; uniqueness and novelty of the decoded sequences.

        Returns:
            dict: ``w2``, ``mmd`` (lower is better), ``unique`` (fraction of distinct decoded
            sequences), ``novelty`` (median Levenshtein distance to the nearest sequence of
            the training file), ``in_training`` (fraction decoded to a training sequence).
        """
        reference = self.test_data() if reference is None else reference
        s, r = samples[:max_points].detach().cpu().double(), reference[:max_points].detach().cpu().double()
        seqs = self.decode(samples[:max_points].detach().cpu().float())
        nov = novelty(seqs, list(self.sequences.sequences))
        return {"w2": _metrics.wasserstein2(s, r), "mmd": _metrics.mmd(s, r),
                "unique": len(set(seqs)) / len(seqs), "novelty": float(np.median(nov)),
                "in_training": float((nov == 0).mean())}

    def save_samples(self, samples: Tensor, path: str | os.PathLike[str]) -> str:
        """``.csv`` / ``.fasta``: the decoded sequences; ``.pt``: the latents, and the sequences beside them (``.csv``)."""
        path = Path(path)
        seqs = self.decode(samples.detach().cpu().float())
        if path.suffix.lower() == ".pt":
            written = super().save_samples(samples, path)
            csv = write_sequences(path.with_suffix(".csv"), seqs)
            return f"{written} (and the sequences in {csv})"
        return f"{len(seqs)} sequences in {write_sequences(path, seqs)}"

    def plot(self, samples: Tensor, reference: Tensor | None = None, ax: Any = None) -> "Figure":
        """Samples and ``reference`` latents (default: the held-out ones) in the plane of the data's two principal components."""
        import matplotlib.pyplot as plt

        reference = self.test_data() if reference is None else reference
        data = torch.cat([self._train, self._test]).double()
        mean = data.mean(0)
        _, _, v = torch.linalg.svd(data - mean, full_matrices=False)
        proj = v[:2].T
        fig, ax = (plt.subplots(figsize=(5, 5)) if ax is None else (ax.figure, ax))
        d2 = ((reference.detach().cpu().double() - mean) @ proj).numpy()
        s2 = ((samples.detach().cpu().double() - mean) @ proj).numpy()
        ax.scatter(d2[:, 0], d2[:, 1], s=4, alpha=0.4, label=f"{self.sequences.name} sequences (reference)")
        ax.scatter(s2[:, 0], s2[:, 1], s=4, alpha=0.6, label="samples")
        ax.set_xlabel("PC 1 of the data latents")
        ax.set_ylabel("PC 2")
        ax.set_title(f"AAV {self.sequences.name}: VAE latents")
        ax.legend(loc="best", markerscale=3)
        return fig

