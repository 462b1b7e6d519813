"""Train Energy Matching on a 2-D toy set from Python, then sample and evaluate.

The CLI equivalent: energyflow train --domain toy --dataset checkerboard --steps 2000 --out runs/checker
Run: python examples/train_toy.py
"""

from pathlib import Path

import torch

from energyflow.training import Trainer, resolve_config

cfg = resolve_config(
    "toy",
    overrides=dict(dataset="checkerboard", source="gaussian", steps=2000, phase1_steps=1800, lr=1e-3,
                   num_langevin_steps=100, eval_every=1000),
)
run_dir = Path("runs/example_checkerboard")
# A second run of this script continues the first (a Trainer never overwrites a run).
trainer = Trainer(cfg, run_dir, resume=(run_dir / "checkpoints" / "last.pt").exists())
result = trainer.fit(callback=lambda r: r["step"] % 500 == 0 and print(r))
print("metrics:", result.eval_metrics)
print("plots:", [str(p) for p in result.plots])
samples = trainer.sample(1000, generator=torch.Generator().manual_seed(1)).samples
print("sample mean:", samples.mean(0).tolist())
