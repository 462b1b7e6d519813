"""A bridge to Pyro's NUTS through its ``potential_fn`` escape hatch.

The whole batch of chains is one state ``x`` of shape ``(B, *event)`` whose potential
is ``sum_b U(x_b, T) / T`` (the product of the per-chain targets, or the joint target
when interaction terms couple the chains). Pyro draws from the global torch RNG, so the
run is seeded from ``generator`` inside ``torch.random.fork_rng`` and leaves the
caller's global RNG state untouched.

Example:
    >>> import torch, energyflow as ef
    >>> field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
    >>> out = ef.PyroNUTS(num_samples=20, warmup_steps=20).run(
    ...     field, torch.zeros(4, 2), generator=torch.Generator().manual_seed(0))
    >>> out.samples.shape, out.trajectory.shape
    (torch.Size([4, 2]), torch.Size([20, 4, 2]))
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from energyflow.errors import InvalidValueError
from energyflow.field import Field, FieldError
from energyflow.samplers._config import positive
from energyflow.diagnostics import warn_transitions
from energyflow.samplers.base import SampleResult, find_model, prepare
from energyflow.spaces import Euclidean
from energyflow.validation import integer, real


@attrs.frozen
class PyroNUTS:
    """No-U-Turn sampling by ``pyro.infer.mcmc.NUTS``.

    Args:
        num_samples (int): draws kept after warm-up.
        warmup_steps (int): adaptation steps (step size and diagonal mass).
        temperature (float): T (> 0); the target is exp(-U(x, T) / T).
        max_tree_depth (int): NUTS tree depth limit.
        target_accept_prob (float): dual-averaging target.
    """

    num_samples: int = attrs.field(default=200, converter=integer(), validator=positive)
    warmup_steps: int = attrs.field(default=200, converter=integer())
    temperature: float = attrs.field(default=1.0, converter=real(), validator=positive)
    max_tree_depth: int = attrs.field(default=8, converter=integer(), validator=positive)
    target_accept_prob: float = attrs.field(default=0.8, converter=real())

    def __attrs_post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise InvalidValueError("PyroNUTS.warmup_steps must be >= 0")
        if not 0.0 < self.target_accept_prob < 1.0:
            raise InvalidValueError("PyroNUTS.target_accept_prob must lie in (0, 1)")

    def run(
        self,
        field: Field,
        x0: Tensor,
        *,
        generator: torch.Generator | None = None,
        record_every: int | None = None,
    ) -> SampleResult:
        """Runs NUTS from ``x0`` of shape ``(B, *event)``; ``trajectory`` holds every draw.

        ``draws`` holds them too, ``(B, num_samples, *event)``, with ``sample_stats`` per draw
        (``acceptance_rate``, ``step_size``, ``n_steps``, ``tree_depth``, ``diverging``,
        ``lp``); the batch is one NUTS chain of the product target, so every stat but
        ``lp`` is shared by the ``B`` chains. Divergences after warm-up are warned of.
        """
        from pyro.infer.mcmc import MCMC, NUTS

        T = self.temperature
        x, space = prepare(field, x0, T, generator)
        if not isinstance(space, Euclidean):
            raise FieldError(
                f"PyroNUTS samples unconstrained R^d, but the field's space is {space!r}: its trajectories would "
                "leave the constraint set; sample it with Langevin, MALA or HMC, which project onto the space"
            )
        evals0 = field.num_grad_evals

        def potential_fn(params: dict[str, Tensor]) -> Tensor:
            if params["x"].requires_grad:  # Pyro differentiates this call: one gradient evaluation
                field.num_grad_evals += 1
            return field.expr.total(params["x"], T).sum() / T

        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item()) if generator is not None else None
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            kernel = NUTS(
                potential_fn=potential_fn,
                max_tree_depth=self.max_tree_depth,
                target_accept_prob=self.target_accept_prob,
                adapt_step_size=True,
                adapt_mass_matrix=True,
            )
            mean_accept: list[float] = []
            per_draw: dict[str, list] = {"acceptance_rate": [], "step_size": [], "n_steps": [], "diverging": []}
            seen = {"grads": field.num_grad_evals, "divergences": 0}

            def record(kernel, samples, stage, i) -> None:  # the kernel resets its statistics when done
                if stage != "Sample":
                    seen["grads"] = field.num_grad_evals
                    return
                # Pyro keeps only the running mean of the acceptance probability: recover this one from it.
                before = mean_accept[0] if mean_accept else 0.0
                mean_accept[:] = [float(kernel._mean_accept_prob)]
                per_draw["acceptance_rate"].append(mean_accept[0] * (i + 1) - before * i)
                per_draw["step_size"].append(float(kernel.step_size))
                per_draw["n_steps"].append(field.num_grad_evals - seen["grads"])  # one gradient per leapfrog step
                per_draw["diverging"].append(len(kernel._divergences) > seen["divergences"])
                seen["grads"], seen["divergences"] = field.num_grad_evals, len(kernel._divergences)

            mcmc = MCMC(
                kernel,
                num_samples=self.num_samples,
                warmup_steps=self.warmup_steps,
                initial_params={"x": x.clone()},
                disable_progbar=True,
                hook_fn=record,
            )
            mcmc.run()
        draws = mcmc.get_samples()["x"].detach()  # (num_samples, B, *event)
        diag = mcmc.diagnostics()
        divergences = diag.get("divergences", {}).get("chain 0", [])
        # Pyro's "acceptance rate" counts the iterations that moved, which NUTS nearly always
        # does; what its dual averaging targets, and what Stan and NumPyro report, is the mean
        # acceptance probability over the post-warm-up iterations (kept by the kernel).
        accept = mean_accept[0] if mean_accept else float("nan")
        every = record_every or 1
        with torch.no_grad():
            energies = torch.stack([field.expr.total(d, T) for d in draws])  # (S, B)
        final = draws[-1]
        B, S = final.shape[0], draws.shape[0]

        def chains(v) -> Tensor:  # one NUTS trajectory moves all chains: a per-draw stat, shared, (B, S)
            return torch.as_tensor(v).unsqueeze(0).expand(B, S)

        n_steps = torch.as_tensor(per_draw["n_steps"], dtype=torch.int32)
        stats = {
            "acceptance_rate": chains(torch.as_tensor(per_draw["acceptance_rate"], dtype=final.dtype).clamp(0, 1)),
            "step_size": chains(torch.as_tensor(per_draw["step_size"], dtype=torch.float64)),
            "n_steps": chains(n_steps),
            # a tree of depth d has between 2^(d-1) and 2^d - 1 leapfrog steps
            "tree_depth": chains(torch.floor(torch.log2(n_steps.clamp(min=1).double())).to(torch.int32) + 1),
            "diverging": chains(torch.as_tensor(per_draw["diverging"], dtype=torch.bool)),
            "lp": (-energies / T).T,
        }
        out = SampleResult(
            samples=final,
            energy=energies[-1],
            energy_trace=energies.mean(-1),
            grad_norm_trace=torch.full((len(draws),), float("nan"), dtype=final.dtype),
            trajectory=draws[::every],
            acceptance_rate=torch.full((final.shape[0],), float(accept), dtype=final.dtype),
            num_divergences=len(divergences),
            num_grad_evals=field.num_grad_evals - evals0,
            info={"step_size": float(kernel.step_size), "temperature": T, "num_transitions": S},
            draws=draws.movedim(0, 1),
            sample_stats=stats,
            model=find_model(field),
        )
        warn_transitions(out, "PyroNUTS")
        return out
