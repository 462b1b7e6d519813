"""The image domain: 8x8 digits (offline) and a local CIFAR-10, their networks and metrics.

Modules, each importing only those before it (no cycles, no matplotlib at import time):

- :mod:`~energyflow.domains.image.data`: the fixed digits split and the CIFAR-10 reader;
- :mod:`~energyflow.domains.image.networks`: the scalar potential networks (the CPU
  convnet and the paper's UNet + ViT);
- :mod:`~energyflow.domains.image.classifier`: the cached digit classifier behind the
  digits metrics (it trains on :func:`~energyflow.domains.image.data.load_digits_split`);
- :mod:`~energyflow.domains.image.domain`: :class:`ImageDomain`.

Example:
    >>> from energyflow.domains.image import ImageDomain, load_digits_split
    >>> ImageDomain("digits").space.event_shape, load_digits_split().test_images.shape[0]
    ((1, 8, 8), 359)
"""

from __future__ import annotations

from energyflow.domains.image.classifier import (
    FEATURE_DIM,
    RECIPE,
    DigitClassifier,
    classifier_frechet_distance,
    digit_features,
    get_digit_classifier,
    predict_digits,
    train_digit_classifier,
)
from energyflow.domains.image.data import (
    CIFAR10_DIRNAME,
    DATASETS,
    DigitsSplit,
    canonical_dataset,
    load_cifar10,
    load_digits_split,
)
from energyflow.domains.image.domain import ImageDomain
from energyflow.domains.image.networks import (
    CIFAR10_POTENTIAL_DEFAULTS,
    ConvPotential,
    UNetViTPotential,
    cifar10_potential,
    count_parameters,
)

__all__ = [
    "CIFAR10_DIRNAME",
    "CIFAR10_POTENTIAL_DEFAULTS",
    "DATASETS",
    "FEATURE_DIM",
    "RECIPE",
    "ConvPotential",
    "DigitClassifier",
    "DigitsSplit",
    "ImageDomain",
    "UNetViTPotential",
    "canonical_dataset",
    "cifar10_potential",
    "classifier_frechet_distance",
    "count_parameters",
    "digit_features",
    "get_digit_classifier",
    "load_cifar10",
    "load_digits_split",
    "predict_digits",
    "train_digit_classifier",
]
