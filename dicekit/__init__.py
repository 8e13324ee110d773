"""dicekit: DICE — bootstrapping language models with DPO implicit rewards."""

__version__ = "0.1.0"
