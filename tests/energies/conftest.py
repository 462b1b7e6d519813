"""Fixtures shared by the energy tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def float64_default():
    """float64 as the default dtype for the test (Pyro models build their tensors with it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
