"""A graph-shaped pytree state (node features, adjacency, mask) through compile and every sampler.

Target: U = (|x|^2 + |A|_F^2) / 2 on the product of the node-masked and the symmetric
masked spaces, masks per sample read from the state. Exactly: every free feature entry
~ N(0, T), every free adjacency entry (i < j among real nodes) ~ N(0, T / 2), everything
else 0, masks unchanged. 2000 chains with random masks; final states are independent
draws. The variance of a variance estimate from m draws is 2 var^2 / m; m is about
2000 * 9 features and 2000 * 3.3 adjacency entries, so se ~1 % and 2 %: the tests allow
6 se. Negative control: the same samplers with the adjacency declared Euclidean (noise
not projected) run the free entries at twice the variance and must fail.
"""

from __future__ import annotations

import pytest
import torch
from graph_helpers import GraphNet, Quadratic, graph_space, random_graphs, random_masks

import energyflow as ef
from energyflow.spaces import Euclidean, NodeMasked, ProductSpace

T = 0.5
CHAINS = 2000


def _start(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = random_masks(CHAINS, g)
    return {"x": torch.full((CHAINS, 4, 2), 2.0), "adj": torch.full((CHAINS, 4, 4), 2.0), "mask": mask}


SAMPLERS = {
    "langevin": lambda: ef.Langevin(step_size=0.05, num_steps=150, schedule=T),
    "mala": lambda: ef.MALA(step_size=0.2, num_steps=120, temperature=T),
    "hmc": lambda: ef.HMC(step_size=0.4, num_leapfrog=4, num_steps=40, temperature=T),
    "mala_adapted": lambda: ef.MALA(num_warmup=100, num_steps=60, temperature=T),
}


def _free_entries(out: dict, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pair = mask.unsqueeze(1) & mask.unsqueeze(2)
    upper = torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1)
    return out["x"][mask], out["adj"][pair & upper]


def _run(name: str, space) -> tuple[dict, dict]:
    field = ef.compile(Quadratic(), space=space)
    x0 = _start()
    out = SAMPLERS[name]().run(field, x0, generator=torch.Generator().manual_seed(1))
    return x0, out.samples


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_keeps_the_structure_and_samples_the_law(name):
    x0, s = _run(name, graph_space())
    mask = x0["mask"]
    assert torch.equal(s["mask"], mask)  # carried unchanged
    assert torch.equal(s["adj"], s["adj"].transpose(1, 2))
    pair = mask.unsqueeze(1) & mask.unsqueeze(2)
    assert float(s["adj"][~pair].abs().max()) == 0.0 and float(s["x"][~mask].abs().max()) == 0.0
    assert float(torch.diagonal(s["adj"], dim1=1, dim2=2).abs().max()) == 0.0
    feats, edges = _free_entries(s, mask)
    assert abs(float(feats.var()) / T - 1.0) < 0.06
    assert abs(float(edges.var()) / (T / 2) - 1.0) < 0.12
    assert abs(float(feats.mean())) < 0.05 and abs(float(edges.mean())) < 0.05


@pytest.mark.parametrize("name", ["langevin", "mala", "hmc"])
def test_negative_control_a_euclidean_adjacency_runs_hot(name):
    wrong = ProductSpace({"x": NodeMasked(4, 2, mask="mask"), "adj": Euclidean((4, 4))})
    x0, s = _run(name, wrong)
    _, edges = _free_entries(s, x0["mask"])
    assert abs(float(edges.var()) / (T / 2) - 1.0) > 0.5  # about 2x: the unprojected noise


def test_gradient_flow_reaches_the_mode_on_the_space():
    field = ef.compile(Quadratic(), space=graph_space())
    out = ef.GradientFlow(step_size=0.1, num_steps=200).run(field, _start())
    assert float(out.samples["x"].abs().max()) < 1e-6 and float(out.samples["adj"].abs().max()) < 1e-6


def test_field_gradient_has_the_state_structure_and_lies_on_the_space():
    g = torch.Generator().manual_seed(0)
    state = random_graphs(8, g)
    field = ef.compile(ef.Potential(GraphNet()), space=graph_space())
    e, grad = field.energy_and_grad(state)
    assert e.shape == (8,) and set(grad) == {"x", "adj", "mask"} and grad["mask"] is state["mask"]
    assert torch.allclose(grad["adj"], grad["adj"].transpose(1, 2))
    pair = state["mask"].unsqueeze(1) & state["mask"].unsqueeze(2)
    assert float(grad["adj"][~pair].abs().max()) == 0.0 and float(grad["x"][~state["mask"]].abs().max()) == 0.0


def test_guided_langevin_on_a_pytree_state():
    field = ef.compile(Quadratic(), space=graph_space())

    class EdgeCount(ef.Energy):  # observation-like term on the endpoint estimate
        def forward(self, s):
            return (s["adj"].sum((1, 2)) - 2.0) ** 2

    sampler = ef.GuidedLangevin(ef.Langevin(step_size=0.05, num_steps=20, schedule=0.1), EdgeCount(), weight=0.1)
    out = sampler.run(field, _start(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.samples["adj"], out.samples["adj"].transpose(1, 2))


def test_pyro_nuts_refuses_a_pytree_state():
    field = ef.compile(Quadratic(), space=graph_space())
    with pytest.raises(ValueError, match="PyroNUTS"):
        ef.PyroNUTS(num_samples=2, warmup_steps=2).run(field, _start())


def test_bad_pytree_states_are_refused_with_the_leaf_named():
    field = ef.compile(Quadratic(), space=graph_space())
    s = _start()
    with pytest.raises(ValueError, match="'adj'"):
        field.energy({"x": s["x"], "mask": s["mask"]})
    with pytest.raises(ValueError, match="batch"):
        field.energy({**s, "mask": s["mask"][:3]})
    bad = {**s, "x": s["x"].clone()}
    bad["x"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        field.energy(bad)
