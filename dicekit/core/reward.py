"""The implicit reward — the one definition used by the scorer, the pair builder, the trainer logs,
the diagnostics and the readers (torch-free, so pure readers can import it).

``implicit_reward(logp_policy, logp_ref) = logp_policy − logp_ref``: the raw log-ratio of the paper's
Eq. 3 without β (the official code stores it this way; the paper's r is β times it).
"""

from __future__ import annotations

import numpy as np


def implicit_reward(logp_policy, logp_ref):
    """Raw implicit reward log π_policy(y|x) − log π_ref(y|x) (nats; summed over response tokens).

    Works elementwise on floats, numpy arrays, pandas Series and torch tensors. Multiply by β for the
    paper's r.
    """
    if isinstance(logp_policy, (list, tuple)):
        logp_policy, logp_ref = np.asarray(logp_policy, dtype=np.float64), np.asarray(logp_ref, dtype=np.float64)
    return logp_policy - logp_ref
