"""Pure numpy: length-regularised rewards, the α* search, best-vs-worst pairs, replay mixing.

Implements the paper's Eq. 5–6 and its experience replay (Sec. 3.2):

* ``reward_lr = reward - alpha * length`` (Eq. 5), with ``reward = logp_policy - logp_ref`` the raw
  log-ratio (the paper's r is β times it, so the paper's α is β times ours — as the official code).
* For a given α, per prompt: chosen = argmax, rejected = argmin of ``reward_lr`` over the prompt's
  valid samples. Ties break towards the lowest ``sample_id`` (deterministic). A pair is *degenerate*
  and dropped when its two scores are equal or its two responses have identical token IDs.
* α* = the grid value minimising ``|mean(length(chosen) - length(rejected))|`` over the pairs that α
  selects (Eq. 6). ``mode="grid"`` scans the whole grid (ties → the smallest α);
  ``mode="first_worsening"`` reproduces the official code (sail-sg/dice 865aa6d,
  ``generate_lc_paired_set.optimize_alpha``), which walks the grid upwards, stops at the first α
  whose |mean| is larger than the smallest seen so far, and returns the argmin over the values it
  walked — on a plateau of equal |mean|, the FIRST α of the plateau.
* Replay (γ = ``replay_ratio``): the fraction of a round's pairs taken from the offline dataset, from
  prompts the generated pairs do not use. Two ways to count them: :func:`replay_counts` (dicekit's
  default: keep every generated pair, add offline ones to reach γ) and :func:`replay_counts_official`
  (``create_mix_paired_set``: the generated part is capped by ⌊|offline|·(1 − γ)⌋, both parts
  truncated to integers). Deliberate deviation: γ = 1 (offline only) is allowed; the official code
  crashes there.

Vectorisation: samples are packed into a (prompts × K) matrix, and many α values are evaluated at
once as an (alphas × prompts × K) array; the sweep skips cells whose pair provably cannot change
(see :func:`sweep`). No Python loop over prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def reward_lr(reward, length, alpha: float):
    """Length-regularised implicit reward, Eq. 5: ``reward - alpha * length`` (elementwise)."""
    return np.asarray(reward, dtype=np.float64) - alpha * np.asarray(length, dtype=np.float64)


def alpha_grid(start: float, stop: float, step: float) -> np.ndarray:
    """Inclusive grid ``start, start+step, ..., stop`` computed without float drift (rounded to 12 dp)."""
    if step <= 0 or stop < start:
        raise ValueError(f"bad alpha grid ({start}, {stop}, {step})")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(n), 12)


@dataclass(frozen=True)
class Groups:
    """Samples packed per prompt: row g = one prompt, column k = its k-th valid sample.

    ``reward``/``length``: (G, K) float64, padded with nan / 0. ``row``: (G, K) int64 index of the
    sample in the caller's flat arrays (-1 for padding); within a row samples are ordered by
    ``sample_id`` so ``argmax``'s first-hit rule is the lowest-sample_id tie-break. ``dup``: (G, K)
    int64 key equal for samples with identical token IDs. ``prompt_index``: (G,) the caller's group key.
    """

    reward: np.ndarray
    length: np.ndarray
    row: np.ndarray
    dup: np.ndarray
    prompt_index: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.row >= 0


def pack(prompt_index, sample_id, reward, length, dup=None) -> Groups:
    """Pack flat per-sample arrays (valid samples only) into a :class:`Groups` matrix."""
    prompt_index = np.asarray(prompt_index)
    sample_id = np.asarray(sample_id, dtype=np.int64)
    reward = np.asarray(reward, dtype=np.float64)
    length = np.asarray(length, dtype=np.float64)
    n = len(reward)
    dup = np.arange(n, dtype=np.int64) if dup is None else np.asarray(dup, dtype=np.int64)
    if not (len(prompt_index) == len(sample_id) == len(length) == len(dup) == n):
        raise ValueError("pack: arrays of different lengths")
    if n == 0:
        empty = np.zeros((0, 0))
        return Groups(empty, empty, empty.astype(np.int64), empty.astype(np.int64), prompt_index[:0])
    keys, group = np.unique(prompt_index, return_inverse=True)
    order = np.lexsort((sample_id, group))
    g_sorted = group[order]
    starts = np.searchsorted(g_sorted, np.arange(len(keys)))
    col = np.arange(n) - starts[g_sorted]
    shape = (len(keys), int(col.max()) + 1)
    R = np.full(shape, np.nan)
    L = np.zeros(shape)
    row = np.full(shape, -1, dtype=np.int64)
    D = np.full(shape, -1, dtype=np.int64)
    R[g_sorted, col] = reward[order]
    L[g_sorted, col] = length[order]
    row[g_sorted, col] = order
    D[g_sorted, col] = dup[order]
    return Groups(R, L, row, D, keys)


@dataclass(frozen=True)
class Selection:
    """Best-vs-worst pairs of one α. Column indices into :class:`Groups`, one entry per prompt."""

    chosen_col: np.ndarray  # (G,)
    rejected_col: np.ndarray  # (G,)
    keep: np.ndarray  # (G,) bool: False for degenerate pairs
    chosen_score: np.ndarray
    rejected_score: np.ndarray

    @property
    def n_degenerate(self) -> int:
        return int((~self.keep).sum())


def _select_many(groups: Groups, alphas: np.ndarray):
    """Chosen/rejected columns and scores for each α: arrays of shape (A, G).

    Padding slots hold a copy of the row's first sample, so one score array serves both argmax and
    argmin: a copy can never win a first-hit tie against the original in column 0.
    """
    pad = ~groups.mask
    R = np.where(pad, groups.reward[:, :1], groups.reward)
    L = np.where(pad, groups.length[:, :1], groups.length)
    s = R[None] - alphas[:, None, None] * L[None]
    c = s.argmax(axis=2)
    r = s.argmin(axis=2)
    rows = np.arange(R.shape[0])[None]
    a = alphas[:, None]
    c_score = R[rows, c] - a * L[rows, c]
    r_score = R[rows, r] - a * L[rows, r]
    same = groups.dup[rows, c] == groups.dup[rows, r]
    keep = (c_score > r_score) & ~same
    return c, r, keep, c_score, r_score


def select(groups: Groups, alpha: float) -> Selection:
    """Best-vs-worst pair per prompt at one α (Eq. 5 scores, deterministic tie-break)."""
    if groups.reward.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return Selection(z, z, z.astype(bool), z.astype(float), z.astype(float))
    c, r, keep, cs, rs = _select_many(groups, np.array([float(alpha)]))
    return Selection(c[0], r[0], keep[0], cs[0], rs[0])


def _pair_stats(groups: Groups, alphas: np.ndarray, sub: np.ndarray | None = None):
    """Per (α, prompt): length(chosen) - length(rejected) and the keep flag (dense evaluation)."""
    g = groups if sub is None else Groups(*(x[sub] for x in (groups.reward, groups.length, groups.row, groups.dup, groups.prompt_index)))
    c, r, keep, _, _ = _select_many(g, alphas)
    rows = np.arange(g.reward.shape[0])[None]
    return c, r, keep, g.length[rows, c] - g.length[rows, r]


def sweep(groups: Groups, alphas, coarse_step: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Mean length(chosen) - length(rejected) over kept pairs, and the number kept, for each α.

    Exact, and much cheaper than evaluating every (α, prompt, sample) cell: argmax_k(R_k - α·L_k)
    walks the vertices of the upper envelope of the lines R_k - α·L_k monotonically as α grows (it
    never returns to a vertex it left), and the argmin walks the lower envelope likewise. So a
    prompt whose chosen and rejected samples are the same at two grid points keeps that pair at
    every α in between. The grid is evaluated densely every ``coarse_step`` points, and in between
    only for the prompts whose pair changed. ``alphas`` must be increasing. A grid value keeping no
    pair gets a mean of nan.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    A = len(alphas)
    mean = np.full(A, np.nan)
    count = np.zeros(A, dtype=np.int64)
    if groups.reward.size == 0 or A == 0:
        return mean, count
    if np.any(np.diff(alphas) <= 0):
        raise ValueError("alpha grid must be strictly increasing")
    knots = np.unique(np.r_[np.arange(0, A, coarse_step), A - 1])
    c0, r0, keep0, diff0 = _pair_stats(groups, alphas[knots])
    total = np.zeros(A)
    total[knots] = np.where(keep0, diff0, 0.0).sum(axis=1)
    count[knots] = keep0.sum(axis=1)
    for j in range(len(knots) - 1):
        inner = np.arange(knots[j] + 1, knots[j + 1])
        if len(inner) == 0:
            continue
        changed = (c0[j] != c0[j + 1]) | (r0[j] != r0[j + 1]) | (keep0[j] != keep0[j + 1])
        still = ~changed
        total[inner] = np.where(keep0[j] & still, diff0[j], 0.0).sum()
        count[inner] = (keep0[j] & still).sum()
        if changed.any():
            _, _, keep, diff = _pair_stats(groups, alphas[inner], np.flatnonzero(changed))
            total[inner] += np.where(keep, diff, 0.0).sum(axis=1)
            count[inner] += keep.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean, count


def sweep_dense(groups: Groups, alphas) -> tuple[np.ndarray, np.ndarray]:
    """Reference for :func:`sweep`: every (α, prompt, sample) cell evaluated (used by tests)."""
    alphas = np.asarray(alphas, dtype=np.float64)
    _, _, keep, diff = _pair_stats(groups, alphas)
    n = keep.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(keep, diff, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    return mean, n


def search_alpha(groups: Groups, alphas, mode: str = "grid") -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """α* (Eq. 6). Returns ``(alpha_star, alphas_tried, mean_len_diff, n_pairs)``.

    ``mode="grid"``: argmin of |mean| over the whole grid (first minimum on ties; nan ignored).
    ``mode="first_worsening"``: the official code's walk — stop at the first α whose |mean| exceeds
    the smallest |mean| so far and return the first α reaching that smallest value (np.argmin over
    the walked values); only the α values it evaluated, the worsening one included, are returned.
    A grid value keeping no pair (nan) is skipped; the official code has no such case.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    if mode not in ("grid", "first_worsening"):
        raise ValueError(f"unknown alpha search mode {mode!r}")
    mean, count = sweep(groups, alphas)
    absm = np.abs(mean)
    if np.all(np.isnan(absm)):
        return float(alphas[0]), alphas, mean, count
    if mode == "grid":
        best = int(np.nanargmin(absm))
        return float(alphas[best]), alphas, mean, count
    best, walked = None, len(alphas)
    for i, a in enumerate(absm):
        if np.isnan(a):
            continue  # no pair at this α: neither a candidate nor a worsening
        if best is None or a < absm[best]:
            best = i
        elif a > absm[best]:
            walked = i + 1  # the official walk evaluates the worsening α, then stops
            break
    return float(alphas[best]), alphas[:walked], mean[:walked], count[:walked]


def replay_counts(n_generated: int, n_offline_available: int, gamma: float, max_pairs: int | None = None) -> tuple[int, int]:
    """How many generated and offline pairs a round trains on, for replay ratio γ.

    The mix keeps all generated pairs and adds offline ones so that they are a fraction γ of the
    total: n_off = round(n_gen · γ / (1 − γ)), capped by what is available (then n_gen is cut to
    keep the ratio). γ = 1: offline pairs only (``max_pairs`` or all available). ``max_pairs``
    caps the total, scaling both parts. Worked example: 100 generated, γ = 0.25 → 33 offline.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"replay_ratio must be in [0, 1], got {gamma}")
    if gamma == 1.0:
        n_off = n_offline_available if max_pairs is None else min(max_pairs, n_offline_available)
        return 0, n_off
    n_gen = n_generated
    n_off = int(round(n_gen * gamma / (1.0 - gamma)))
    if n_off > n_offline_available:
        n_off = n_offline_available
        n_gen = min(n_gen, int(round(n_off * (1.0 - gamma) / gamma))) if gamma > 0 else n_gen
    if max_pairs is not None and n_gen + n_off > max_pairs:
        n_off = int(round(max_pairs * gamma))
        n_gen = max_pairs - n_off
    return n_gen, n_off


def replay_counts_official(n_generated: int, n_offline_total: int, n_offline_available: int, gamma: float,
                           max_pairs: int | None = None) -> tuple[int, int]:
    """The official mix (sail-sg/dice 865aa6d, ``generate_lc_paired_set.create_mix_paired_set``):
    ``n_gen = min(int(n_offline_total·(1 − γ)), n_generated)`` and ``n_off = int(γ·n_gen / (1 − γ))``,
    where ``n_offline_total`` is the whole offline set (prompts used by generated pairs included).

    The demo's round 1 (400 generated, 600 offline, γ = 0.5): official 300 + 300, dicekit 400 + 400.

    >>> replay_counts_official(400, 600, 600, 0.5), replay_counts(400, 600, 0.5)
    ((300, 300), (400, 400))

    Where the official code crashes, dicekit does not: γ = 1 is offline only (as
    :func:`replay_counts`), and when fewer offline pairs come from unused prompts than ``n_off`` (an
    assertion / pandas error there) ``n_off`` is cut to those available. ``max_pairs`` caps the total
    as in :func:`replay_counts`.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"replay_ratio must be in [0, 1], got {gamma}")
    if gamma == 1.0:
        return replay_counts(n_generated, n_offline_available, gamma, max_pairs)
    n_gen = min(int(n_offline_total * (1 - gamma)), n_generated) if gamma > 0 else n_generated
    n_off = min(int(gamma * n_gen / (1 - gamma)), n_offline_available)
    if max_pairs is not None and n_gen + n_off > max_pairs:
        n_off = int(round(max_pairs * gamma))
        n_gen = max_pairs - n_off
    return n_gen, n_off


def draw_offline(offline_prompt_keys, used_prompt_keys, n: int, seed) -> np.ndarray:
    """Indices of ``n`` offline pairs drawn without replacement, seeded (an int or a list of ints),
    from prompts not in ``used_prompt_keys``. Raises ValueError if fewer than ``n`` are eligible."""
    keys = np.asarray(offline_prompt_keys, dtype=object)
    used = set(used_prompt_keys)
    eligible = np.array([i for i, k in enumerate(keys) if k not in used], dtype=np.int64)
    if n > len(eligible):
        raise ValueError(f"asked for {n} offline pairs but only {len(eligible)} are from unused prompts")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(eligible, size=n, replace=False))


# ----------------------------------------------------------------------------- samples tables
# The round, the plots, the run readers and the diagnostic pack a samples table (one row per
# sample: prompt_id, sample_id, reward, n_chars, n_tokens, valid, response_ids) the same way, here.


def response_chars(text: str) -> int:
    """A response's length in characters (``n_chars``: the α unit and the min/max_chars filters), with
    leading and trailing whitespace not counted — the official code stores ``text.strip()`` and
    measures ``len`` of it (sail-sg/dice 865aa6d, ``generate_responses.py``). The token IDs and the
    stored ``response`` text are kept as sampled; only the count ignores the surrounding whitespace.

    >>> response_chars("  Hello.\\n\\n"), response_chars("\\n \\t")
    (6, 0)
    """
    return len(text.strip())


def sample_lengths(samples, unit: str) -> np.ndarray:
    """Each sample's length in ``unit`` as float64: ``chars`` → ``n_chars``, ``tokens`` → ``n_tokens``."""
    if unit not in ("chars", "tokens"):
        from dicekit.errors import UserError

        raise UserError(f"length_unit must be 'chars' or 'tokens', got {unit!r}")
    return samples["n_chars" if unit == "chars" else "n_tokens"].to_numpy(dtype=np.float64)


def pack_valid(samples, unit: str):
    """(valid samples, their :class:`Groups`), as a round packs them: only rows whose ``valid`` is
    true; two samples of a prompt with identical response token IDs (the response text when the table
    has no ``response_ids``) share a dup key, so a pair of them is degenerate."""
    import pandas as pd

    valid = samples[samples["valid"].astype(bool)].reset_index(drop=True)
    if "response_ids" in valid:
        key = valid["response_ids"].map(lambda x: ",".join(map(str, x)))
    else:
        key = valid["response"].astype(str)
    dup = pd.factorize(valid["prompt_id"].astype(str) + "\x1f" + key)[0]
    groups = pack(valid["prompt_id"].to_numpy(), valid["sample_id"].to_numpy(), valid["reward"].to_numpy(),
                  sample_lengths(valid, unit), dup)
    return valid, groups


def selected_rows(valid, groups: Groups, alpha: float):
    """(chosen rows, rejected rows, Selection, kept group indices) of the best-vs-worst pairs at α:
    the rows of ``valid`` (from :func:`pack_valid`) of each kept pair, in prompt order."""
    sel = select(groups, alpha)
    g = np.flatnonzero(sel.keep)
    chosen = valid.iloc[groups.row[g, sel.chosen_col[g]]].reset_index(drop=True)
    rejected = valid.iloc[groups.row[g, sel.rejected_col[g]]].reset_index(drop=True)
    return chosen, rejected, sel, g
