"""Which models a round uses: π_{t-1} (policy) and π_{t-2} (reference) in the chain π_{-1}, π_0, π_1, …
of a run, and the one-model slot the round's stages share (never two models in memory at once)."""

from __future__ import annotations

from pathlib import Path

from dicekit import rundir
from dicekit.config import RoundConfig


class OneModel:
    """Holds at most one loaded model (π_{t-1} and π_{t-2} are never both in memory)."""

    def __init__(self, dtype: str):
        self.dtype, self.spec, self.pair = dtype, None, None

    def get(self, spec: str):
        if self.spec != spec:
            from dicekit.models import load_model

            self.pair = None
            self.pair = load_model(spec, dtype=self.dtype)
            self.spec = spec
        return self.pair

    def release(self) -> None:
        """Free the held model (before training loads its own copy)."""
        self.spec, self.pair = None, None


def models_for_round(cfg: RoundConfig, t: int) -> tuple[str, str]:
    """(policy π_{t-1}, reference π_{t-2}) specs for round t."""
    run = Path(cfg.run_dir)
    policy = cfg.policy if t == 1 else str(rundir.round_dir(run, t - 1) / "model")
    if t == 1:
        reference = cfg.reference
    elif t == 2:
        reference = cfg.policy
    else:
        reference = str(rundir.round_dir(run, t - 2) / "model")
    return policy, reference
