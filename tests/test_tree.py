"""The pytree helpers: coordinates move, carried leaves (masks) pass through."""

from __future__ import annotations

import pytest
import torch

from energyflow import tree
from energyflow.errors import InvalidValueError


def _state(b=3):
    return {"x": torch.arange(b * 2, dtype=torch.float32).reshape(b, 2), "adj": torch.ones(b, 2, 2),
            "mask": torch.ones(b, 2, dtype=torch.bool), "count": torch.full((b,), 2)}


def test_map_touches_coordinates_only():
    s = _state()
    out = tree.map(lambda a: a * 0.0, s)
    assert out["x"].abs().sum() == 0 and out["adj"].abs().sum() == 0
    assert out["mask"] is s["mask"] and out["count"] is s["count"]
    assert {id(c) for c in tree.coordinates(s)} == {id(s["x"]), id(s["adj"])}


def test_tensor_is_a_one_leaf_tree():
    x = torch.randn(4, 3)
    assert torch.equal(tree.map(lambda a: 2 * a, x), 2 * x)
    assert tree.batch_size(x) == 4 and torch.equal(tree.ravel(x), x)
    assert torch.equal(tree.unravel(tree.ravel(x), x), x)


def test_ravel_unravel_roundtrip_and_where_cat_index():
    s = _state()
    flat = tree.ravel(s)
    assert flat.shape == (3, 2 + 4)
    back = tree.unravel(flat, s)
    assert torch.equal(back["x"], s["x"]) and torch.equal(back["adj"], s["adj"]) and back["mask"] is s["mask"]
    z = tree.zeros_like(s)
    w = tree.where(torch.tensor([True, False, True]), s, z)
    assert w["x"][1].abs().sum() == 0 and torch.equal(w["x"][0], s["x"][0])
    both = tree.cat([s, tree.index(s, slice(0, 1))])
    assert tree.batch_size(both) == 4 and both["mask"].shape == (4, 2)


def test_isfinite_is_per_sample():
    s = _state()
    s["adj"][1, 0, 0] = float("nan")
    assert tree.isfinite(s).tolist() == [True, False, True]


def test_structure_and_batch_mismatches_are_refused():
    s = _state()
    with pytest.raises(InvalidValueError, match="different structure"):
        tree.map(torch.add, s, {"x": s["x"]})
    with pytest.raises(InvalidValueError, match="batch"):
        tree.batch_size({"x": torch.zeros(2, 1), "y": torch.zeros(3, 1)})
