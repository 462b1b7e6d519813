"""The fitness CNN and the sequence VAE, their reconstruction score, the predictor cache, a tiny VAE fit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from energyflow.cache import load_payload
from energyflow.domains.protein import data as D
from energyflow.domains.protein import models as M
from energyflow.errors import InvalidValueError

stats = pytest.importorskip("scipy.stats")


def _tokens(n: int, length: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randint(20, (n, length), generator=torch.Generator().manual_seed(seed))


def _small_cnn(**kw) -> M.FitnessCNN:
    torch.manual_seed(0)
    return M.FitnessCNN(channels=8, hidden=16, **kw)


# -- FitnessCNN ------------------------------------------------------------------------------


def test_fitness_cnn_reads_tokens_and_their_one_hot_floats_identically():
    cnn = M.FitnessCNN()  # GGS's sizes
    tokens = _tokens(5)
    out = cnn(tokens)
    assert out.shape == (5,)
    assert torch.equal(out, cnn(F.one_hot(tokens, 20).float()))  # the same arithmetic: bit-identical


def test_fitness_cnn_is_ggs_architecture_and_scales_by_the_training_moments():
    cnn = _small_cnn(mean=2.0, std=3.0).double()
    tokens = _tokens(6, seed=1)
    x = F.one_hot(tokens, 20).double()
    # Independently: a width-5 window dotted with the conv kernel, per-position Linear + ReLU,
    # the max over positions, then the head.
    windows = x.unfold(1, 5, 1)  # (B, L - 4, 20, 5)
    h = torch.einsum("bpak,cak->bpc", windows, cnn.conv.weight) + cnn.conv.bias
    h = torch.relu(h @ cnn.embed.weight.T + cnn.embed.bias).amax(1)
    z = (h @ cnn.head.weight.T + cnn.head.bias).squeeze(-1)
    # float64 throughout: the two orders of summation agree to ~1e-15; 1e-12 leaves room.
    torch.testing.assert_close(cnn.standardised(tokens), z, rtol=0, atol=1e-12)
    torch.testing.assert_close(cnn(tokens), 2.0 + 3.0 * z, rtol=0, atol=1e-12)
    assert cnn.config() == {"channels": 8, "hidden": 16, "kernel_size": 5}


@pytest.mark.parametrize("x", [torch.zeros(4, 3, 20), torch.zeros(4, 28, 19), torch.zeros(4, 28),
                               torch.zeros(28, dtype=torch.long), torch.zeros(2, 4, 28, 20)],
                         ids=["too-short", "19-channels", "2-D-floats", "1-D-tokens", "4-D"])
def test_fitness_cnn_refuses_a_wrong_shape(x):
    with pytest.raises(InvalidValueError, match="FitnessCNN takes"):
        _small_cnn()(x)


def test_gradient_flows_to_probability_inputs():
    cnn = _small_cnn().double()
    logits = torch.randn(3, 28, 20, generator=torch.Generator().manual_seed(2), dtype=torch.float64,
                         requires_grad=True)
    cnn(torch.softmax(logits, -1)).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # And it is the right gradient: finite differences in float64 (ReLU kinks and argmax switches
    # are not within 1e-6 of a random point with this fixed seed).
    probe = logits.detach()[:1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda lg: cnn(torch.softmax(lg, -1)), (probe,), eps=1e-6, atol=1e-6)


# -- SequenceVAE -----------------------------------------------------------------------------


def test_sequence_vae_shapes_and_reparameterised_draw():
    torch.manual_seed(0)
    vae = M.SequenceVAE()
    tokens = _tokens(3)
    mu, logvar = vae.encode(tokens)
    assert mu.shape == logvar.shape == (3, 16)
    assert vae.decode(mu).shape == (3, 28, 20)
    logits, mu2, logvar2 = vae(tokens, generator=torch.Generator().manual_seed(5))
    noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    # The same draw through the same ops.
    torch.testing.assert_close(logits, vae.decode(mu + noise * torch.exp(0.5 * logvar)))
    assert torch.equal(mu2, mu) and torch.equal(logvar2, logvar)
    short = M.SequenceVAE(seq_len=8, latent_dim=3, embedding=4, width=8)
    assert short.decode(short.encode(_tokens(2, 8))[0]).shape == (2, 8, 20)
    assert short.config() == {"seq_len": 8, "latent_dim": 3, "embedding": 4, "width": 8}


@pytest.mark.parametrize("seq_len", [30, 26, 2, 0])
def test_sequence_vae_refuses_a_length_not_a_multiple_of_4(seq_len):
    with pytest.raises(InvalidValueError, match="multiple of 4"):
        M.SequenceVAE(seq_len=seq_len)


def test_sequence_vae_refuses_wrong_inputs():
    vae = M.SequenceVAE(seq_len=8, latent_dim=3, embedding=4, width=8)
    for bad in (_tokens(2, 12), _tokens(2, 8).float(), _tokens(1, 8)[0]):
        with pytest.raises(InvalidValueError, match="encode takes"):
            vae.encode(bad)
    for bad in (torch.zeros(2, 4), torch.zeros(3)):
        with pytest.raises(InvalidValueError, match="decode takes"):
            vae.decode(bad)
    with pytest.raises(InvalidValueError, match="width"):
        M.SequenceVAE(width=6)


class _ZeroBlindVAE:
    """A VAE-like stub: the latent is the tokens themselves and decoding gets every 0 (A) wrong (reads 1)."""

    def encode(self, tokens):
        return tokens, None

    def decode(self, z):
        return F.one_hot(torch.where(z == 0, 1, z), 20).float()


def test_reconstruction_counts_exact_sequences_and_residues():
    tokens = torch.tensor([[1, 2, 3], [0, 2, 3], [5, 5, 5], [0, 0, 4], [7, 8, 9]])
    # Rows without a 0 are exact: 3 of 5; residues other than 0: 12 of 15. batch_size 2 splits 2 + 2 + 1.
    for batch_size in (2, 2048):
        assert M.reconstruction(_ZeroBlindVAE(), tokens, batch_size) == {"exact": 0.6, "per_residue": 0.8}
    empty = M.reconstruction(_ZeroBlindVAE(), tokens[:0])
    assert np.isnan(empty["exact"]) and np.isnan(empty["per_residue"])


def test_reconstruction_of_a_real_vae_is_a_pair_of_fractions():
    torch.manual_seed(0)
    vae = M.SequenceVAE(seq_len=8, latent_dim=3, embedding=4, width=8).eval()
    tokens = _tokens(40, 8)
    r = M.reconstruction(vae, tokens, batch_size=7)
    hits = vae.decode(vae.encode(tokens)[0]).argmax(-1) == tokens
    assert r == {"exact": float(hits.all(1).double().mean()), "per_residue": float(hits.double().mean())}
    assert 0 <= r["exact"] <= r["per_residue"] <= 1


# -- the predictor and its cache --------------------------------------------------------------


@pytest.fixture(scope="module")
def small_outside() -> D.SequenceSet:
    """200 ground-truth sequences outside the medium file, 40 above its best score (for spearman_top)."""
    medium = D.load_task("medium")
    out = M._outside(medium)
    top = np.flatnonzero(out.scores > medium.scores.max())[:40]
    rest = np.flatnonzero(out.scores <= medium.scores.max())[:160]
    pick = np.concatenate([top, rest])
    assert len(top) == 40 and len(rest) == 160
    return D.SequenceSet(tuple(out.sequences[i] for i in pick), out.scores[pick], "small outside")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """The one full train_predictor call (scores ~40k ground-truth sequences: ~15 s on one thread)."""
    cache = tmp_path_factory.mktemp("aav-cache")
    return cache, M.train_predictor("medium", steps=3, cache_dir=cache)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _boom(*args, **kwargs):
    raise AssertionError("retrained (or re-scored) a model the cache holds")


def test_train_predictor_writes_one_file_and_scores_outside_the_task(predictor):
    cache, model = predictor
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("aav-predictor-medium-") and files[0].endswith(".pt")
    assert set(model.metrics) == {"spearman_outside", "mae_outside", "spearman_top", "n_train", "n_outside"}
    # Every medium sequence is in the ground truth, so 42,340 - 2,111 lie outside.
    assert model.metrics["n_train"] == 2111 and model.metrics["n_outside"] == 42340 - 2111
    assert -1 <= model.metrics["spearman_outside"] <= 1 and -1 <= model.metrics["spearman_top"] <= 1
    assert model.metrics["mae_outside"] > 0
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_a_second_call_loads_the_cache_without_training(predictor, monkeypatch):
    cache, first = predictor
    monkeypatch.setattr(M, "_fit_cnn", _boom)
    monkeypatch.setattr(M, "_outside", _boom)
    again = M.train_predictor("medium", steps=3, cache_dir=cache)
    assert again is not first and _same_weights(again, first)
    assert again.metrics == first.metrics and again.config() == first.config()
    assert not again.training and not any(p.requires_grad for p in again.parameters())
    assert len(list(cache.iterdir())) == 1
    # The control: the patch does bite when the cache is bypassed.
    with pytest.raises(AssertionError, match="retrained"):
        M.train_predictor("medium", steps=3, cache_dir=cache, retrain=True)


def test_predictor_metrics_are_spearman_and_mae_on_the_outside_set(small_outside, monkeypatch):
    monkeypatch.setattr(M, "_outside", lambda task: small_outside)
    model = M.train_predictor("medium", steps=3, cache=False)
    pred = M.predict(model, small_outside.tokens())
    y = small_outside.scores
    top = y > D.load_task("medium").scores.max()
    # scipy's Spearman and numpy's MAE on the same predictions: agreement to rounding (1e-12).
    assert model.metrics["spearman_outside"] == pytest.approx(stats.spearmanr(pred, y)[0], abs=1e-12)
    assert model.metrics["spearman_top"] == pytest.approx(stats.spearmanr(pred[top], y[top])[0], abs=1e-12)
    assert model.metrics["mae_outside"] == pytest.approx(np.abs(pred - y).mean(), abs=1e-12)
    assert model.metrics["n_outside"] == 200


def test_a_different_recipe_is_a_different_cache_file(predictor, small_outside, tmp_path, monkeypatch):
    cache, first = predictor
    (original,) = cache.iterdir()
    shutil.copy(original, tmp_path / original.name)
    monkeypatch.setattr(M, "_outside", lambda task: small_outside)
    four = M.train_predictor("medium", steps=4, cache_dir=tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert len(names) == 2 and original.name in names
    assert not _same_weights(four, first)  # one more optimiser step


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign-weights"])
def test_a_damaged_cache_file_is_retrained_not_fatal(predictor, small_outside, tmp_path, monkeypatch, damage):
    cache, first = predictor
    (original,) = cache.iterdir()
    path = tmp_path / original.name
    if damage == "garbage":
        path.write_bytes(b"\x00\xffnot a checkpoint" * 64)
    elif damage == "truncated":
        path.write_bytes(original.read_bytes()[: original.stat().st_size // 2])
    else:  # the right key, but weights of another shape: load_state_dict fails
        payload = torch.load(original, weights_only=True)
        payload["state_dict"] = M.FitnessCNN(channels=4, hidden=4).state_dict()
        torch.save(payload, path)
    monkeypatch.setattr(M, "_outside", lambda task: small_outside)
    again = M.train_predictor("medium", steps=3, cache_dir=tmp_path)
    assert _same_weights(again, first)  # the seeded recipe retrains the same network
    assert again.metrics["n_outside"] == 200  # retrained (scored on the patched set), not loaded
    payload = load_payload(path, path.name.rsplit("-", 1)[1][:-3])
    assert payload is not None and torch.equal(payload["state_dict"]["head.weight"], first.head.weight)


def test_train_predictor_refuses_bad_options():
    with pytest.raises(InvalidValueError, match="unknown option.*epochs"):
        M.train_predictor("medium", epochs=3, cache=False)
    for bad in ({"steps": 0}, {"steps": -1}, {"batch_size": 0}, {"steps": 2.5}, {"steps": True}):
        with pytest.raises(InvalidValueError):
            M.train_predictor("medium", cache=False, **bad)
    with pytest.raises(InvalidValueError, match="easy"):
        M.train_predictor("easy", cache=False)


def test_cache_false_writes_nothing(small_outside, tmp_path, monkeypatch):
    monkeypatch.setenv("ENERGYFLOW_CACHE", str(tmp_path))
    monkeypatch.setattr(M, "_outside", lambda task: small_outside)
    M.train_predictor("medium", steps=2, batch_size=16, cache=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("which", ["predictor", "vae"])
def test_ten_steps_train(which, small_outside, monkeypatch):
    monkeypatch.setattr(M, "_outside", lambda task: small_outside)
    if which == "predictor":
        M.train_predictor("medium", steps=10, batch_size=8, cache=False)
    else:
        medium = D.load_task("medium")
        data = D.SequenceSet(medium.sequences[:16], medium.scores[:16], "tiny")
        M.fit_vae(data, {**M.VAE_RECIPE, "steps": 10, "batch_size": 8, "width": 8, "embedding": 4})


# -- a tiny VAE fit ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vae():
    medium = D.load_task("medium")
    data = D.SequenceSet(medium.sequences[:64], medium.scores[:64], "first 64")
    heldout = D.SequenceSet(medium.sequences[64:164], medium.scores[64:164], "next 100")
    recipe = {**M.VAE_RECIPE, "steps": 30}
    return data, heldout, recipe, M.fit_vae(data, recipe, heldout)


def test_fit_vae_reports_its_reconstruction_in_range(tiny_vae):
    data, heldout, _, vae = tiny_vae
    m = vae.metrics
    assert set(m) == {"train_exact", "train_per_residue", "latent_std", "latent_absmax", "n_train",
                      "heldout_exact", "heldout_per_residue"}
    assert m["n_train"] == 64
    for split in ("train", "heldout"):
        assert 0 <= m[f"{split}_exact"] <= m[f"{split}_per_residue"] <= 1
    assert M.reconstruction(vae, data.tokens()) == {"exact": m["train_exact"],
                                                    "per_residue": m["train_per_residue"]}
    assert M.reconstruction(vae, heldout.tokens()) == {"exact": m["heldout_exact"],
                                                       "per_residue": m["heldout_per_residue"]}
    mu = vae.encode(data.tokens())[0].detach()
    assert m["latent_absmax"] == pytest.approx(float(mu.abs().max()), rel=1e-6)  # float32 -> float
    assert 0 < m["latent_std"] <= m["latent_absmax"] and np.isfinite(m["latent_std"])
    # 30 steps learn at least the per-position residue frequencies: measured 0.23 per residue,
    # against 1/20 by chance and 0.056 for the untrained network of the same seed.
    assert m["train_per_residue"] > 0.15
    assert not vae.training


def test_fit_vae_is_reproducible_and_without_heldout_reports_only_training(tiny_vae):
    data, _, recipe, vae = tiny_vae
    again = M.fit_vae(data, recipe)
    assert _same_weights(again, vae)
    assert "heldout_exact" not in again.metrics and again.metrics["train_exact"] == vae.metrics["train_exact"]
