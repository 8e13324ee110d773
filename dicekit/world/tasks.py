"""The task world: instruction families whose answers a program can check, and seeded splits.

Four families, each asking for a short comma-separated list of words from a closed vocabulary, so
quality is *lexical*: it is decided by which words appear (a small model can learn that), never by
free-form prose. Every answer has several independent decision points, so quality is graded
(few exact ties between two answers) rather than right/wrong.

* ``list``      "Name 3 fruits." / "List 3 fruits other than plum and pear." — distinct members of a
                category, none of the excluded ones.
* ``combo``     "Give me 2 fruits and 1 animal." — the right number of members of each of two categories.
* ``opposite``  "Give the opposite of each word: hot, big." — the antonym of each word.
* ``kind``      "Say what kind of thing each word is: dog, tea." — "animal, drink".

Every family is scored order-free, and every decision is an association between prompt words and
answer words — what a tiny model learns quickly. Two families tried first were dropped for that
reason: "Repeat these words: …" (positional copying needs induction circuits; 0.25 sampled quality
after 1,600 SFT steps) and "Which of these are animals: …?" (copy-if-member; 0.28–0.35).

A response is ``[opener] content. [closer]``: the openers and closers ("Sure!", "I hope this helps.")
are *filler* — words disjoint from every content word, which the oracle ignores and human-like
annotators like (they make a response longer). Filler is the world's verbosity: the length that the
paper's α must stop the implicit reward from rewarding.

Demonstrations (the SFT data of π_{-1}) are of mixed quality and length: each decision is wrong with
a family-specific probability and filler is added at random, so an SFT model is competent but
imperfect and its samples differ in both quality and length.

Splits are disjoint by prompt text: a prompt's split is fixed by a hash of its text, so no eval
prompt is ever trained on. Pure Python; every random choice comes from a seeded numpy Generator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": ("apple", "pear", "plum", "grape", "lemon", "mango", "peach", "cherry"),
    "animals": ("dog", "cat", "horse", "cow", "sheep", "goat", "rabbit", "mouse"),
    "colors": ("red", "blue", "green", "yellow", "purple", "pink", "brown", "black"),
    "tools": ("hammer", "saw", "drill", "wrench", "shovel", "rake", "chisel", "pliers"),
    "vehicles": ("car", "bus", "truck", "train", "boat", "bike", "plane", "tram"),
    "drinks": ("tea", "coffee", "milk", "juice", "water", "soda", "cocoa", "cider"),
}
CATEGORY_OF = {w: c for c, ws in CATEGORIES.items() for w in ws}
NOUNS: tuple[str, ...] = tuple(w for ws in CATEGORIES.values() for w in ws)

# 12 pairs: with 20 the SFT model's sampled "opposite" quality swung between 0.29 and 0.55 across
# seeds at the recipe's step budget (the other families were stable); fewer facts to memorise.
_ANTONYM_PAIRS = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("high", "low"), ("long", "short"),
    ("happy", "sad"), ("wet", "dry"), ("hard", "soft"), ("loud", "quiet"), ("rich", "poor"),
    ("young", "old"), ("full", "empty"),
)
OPPOSITE = {a: b for a, b in _ANTONYM_PAIRS} | {b: a for a, b in _ANTONYM_PAIRS}
ADJECTIVES: tuple[str, ...] = tuple(w for pair in _ANTONYM_PAIRS for w in pair)

OPENERS: tuple[str, ...] = ("Sure!", "Of course!", "Here you go.", "Glad to help!")
CLOSERS: tuple[str, ...] = ("I hope this helps.", "Let me know if you need more.", "Have a nice day!",
                            "Thanks for asking.")
FILLER_WORDS = frozenset(w.strip("!.,?").lower() for p in OPENERS + CLOSERS for w in p.split())

FAMILIES: tuple[str, ...] = ("list", "combo", "opposite", "kind")
SPLITS: tuple[str, ...] = ("sft", "offline", "dice", "eval")
# share of the prompt space (by text hash) owned by each split, in percent
_SPLIT_SHARE = {"sft": 40, "offline": 20, "dice": 20, "eval": 20}


@dataclass(frozen=True)
class Task:
    """One instruction and what it asks for (enough for the oracle to score any response)."""

    family: str
    prompt: str
    words: tuple[str, ...] = ()  # the words the prompt lists (opposite, kind)
    category: str = ""  # list, combo
    n: int = 0  # list, combo: how many items (of ``category``)
    exclude: tuple[str, ...] = ()  # list: items that must not be named
    category2: str = ""  # combo: the second category
    n2: int = 0  # combo: how many items of ``category2``

    @property
    def prompt_id(self) -> str:
        return prompt_id(self.prompt)


def prompt_id(prompt: str) -> str:
    """A stable id from the prompt text, so splits and files agree on it."""
    return "w-" + hashlib.sha1(prompt.encode()).hexdigest()[:12]


def split_of(prompt: str) -> str:
    """The split that owns a prompt text (deterministic, independent of any seed)."""
    bucket = int(hashlib.sha1(("split:" + prompt).encode()).hexdigest()[:8], 16) % 100
    edge = 0
    for name in SPLITS:
        edge += _SPLIT_SHARE[name]
        if bucket < edge:
            return name
    raise AssertionError("split shares must sum to 100")


def _join(words) -> str:
    return ", ".join(words)


# ----------------------------------------------------------------------------- prompts


def make_task(family: str, rng: np.random.Generator) -> Task:
    """A random task of ``family``."""
    verb = str(rng.choice(VERBS))
    if family == "list":
        category = str(rng.choice(list(CATEGORIES)))
        n = int(rng.integers(2, 5))
        k = int(rng.choice(3, p=[0.3, 0.4, 0.3]))  # how many items are excluded
        exclude = tuple(str(w) for w in rng.choice(CATEGORIES[category], size=k, replace=False))
        tail = f" other than {' and '.join(exclude)}" if exclude else ""
        return Task("list", f"{verb} {n} {category}{tail}.", category=category, n=n, exclude=exclude)
    if family == "combo":
        c1, c2 = (str(c) for c in rng.choice(list(CATEGORIES), size=2, replace=False))
        n1, n2 = (int(x) for x in _COMBO_COUNTS[int(rng.integers(len(_COMBO_COUNTS)))])
        return Task("combo", f"{verb} {n1} {_noun(c1, n1)} and {n2} {_noun(c2, n2)}.", category=c1, n=n1,
                    category2=c2, n2=n2)
    if family == "opposite":
        n = int(rng.integers(1, 4))
        pairs = rng.choice(len(_ANTONYM_PAIRS), size=n, replace=False)
        words = tuple(_ANTONYM_PAIRS[i][int(rng.integers(2))] for i in pairs)
        return Task("opposite", f"Give the opposite of each word: {_join(words)}.", words=words)
    if family == "kind":
        n = int(rng.integers(1, 4))
        words = tuple(str(w) for w in rng.choice(NOUNS, size=n, replace=False))
        return Task("kind", f"Say what kind of thing each word is: {_join(words)}.", words=words)
    raise ValueError(f"unknown family {family!r}")


VERBS: tuple[str, ...] = ("Name", "List", "Give me")
_COMBO_COUNTS = ((1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1))
SINGULAR = {"fruits": "fruit", "animals": "animal", "colors": "color", "tools": "tool", "vehicles": "vehicle",
            "drinks": "drink"}
PLURAL = {v: k for k, v in SINGULAR.items()}
KINDS: tuple[str, ...] = tuple(SINGULAR.values())


def _noun(category: str, n: int) -> str:
    return category if n != 1 else SINGULAR[category]


def sample_tasks(split: str, n: int, seed: int, distinct: bool = True) -> list[Task]:
    """``n`` tasks whose prompts belong to ``split``, the families taking turns, in a seeded order.

    ``distinct``: no prompt twice (a family whose prompt space in the split runs out leaves its turn
    to the others); otherwise prompts may repeat (SFT data: several demonstrations per prompt)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split), 7])
    out: list[Task] = []
    seen: set[str] = set()
    exhausted: set[str] = set()
    turn = 0
    while len(out) < n and len(exhausted) < len(FAMILIES):
        family = FAMILIES[turn % len(FAMILIES)]
        turn += 1
        if family in exhausted:
            continue
        for _ in range(2000):
            task = make_task(family, rng)
            if split_of(task.prompt) == split and not (distinct and task.prompt in seen):
                seen.add(task.prompt)
                out.append(task)
                break
        else:
            exhausted.add(family)
    return out


# ----------------------------------------------------------------------------- answers


def correct_content(task: Task, rng: np.random.Generator | None = None) -> list[str]:
    """A fully correct list of answer words (random where several are correct)."""
    rng = rng or np.random.default_rng(0)
    if task.family == "list":
        pool = [w for w in CATEGORIES[task.category] if w not in task.exclude]
        return [str(w) for w in rng.choice(pool, size=task.n, replace=False)]
    if task.family == "combo":
        first = rng.choice(CATEGORIES[task.category], size=task.n, replace=False)
        second = rng.choice(CATEGORIES[task.category2], size=task.n2, replace=False)
        return [str(w) for w in first] + [str(w) for w in second]
    if task.family == "opposite":
        return [OPPOSITE[w] for w in task.words]
    if task.family == "kind":
        return [SINGULAR[CATEGORY_OF[w]] for w in task.words]
    raise ValueError(f"unknown family {task.family!r}")


@dataclass(frozen=True)
class DemoStyle:
    """How careless and how chatty a demonstrator is (the SFT data's mix of quality and length)."""

    error: float = 0.25  # probability that one decision point is wrong
    opener: float = 0.5  # probability of an opening filler phrase
    closer: float = 0.5  # probability of a closing filler phrase


def noisy_content(task: Task, rng: np.random.Generator, error: float) -> list[str]:
    """The answer words of a demonstrator who gets each decision wrong with probability ``error``."""
    words = correct_content(task, rng)
    if task.family in ("list", "combo"):
        wanted = {task.category, task.category2}
        pool = [w for w in NOUNS if CATEGORY_OF[w] not in wanted]
        out: list[str] = []
        for w in words:
            if rng.random() < error:
                kind = rng.random()
                if kind < 0.3 and task.exclude:
                    w = str(rng.choice(task.exclude))
                elif kind < 0.4 and out:
                    w = str(rng.choice(out))
                else:
                    w = str(rng.choice(pool))
            out.append(w)
        if rng.random() < error / 4:  # a wrong count: one item too many or too few
            if rng.random() < 0.5 or len(out) <= 1:
                spare = [w for w in CATEGORIES[task.category] if w not in out and w not in task.exclude]
                if task.family == "combo":
                    spare += [w for w in CATEGORIES[task.category2] if w not in out]
                out.append(str(rng.choice(spare)))
            else:
                out.pop()
        return out
    if task.family == "opposite":
        out = []
        for w, right in zip(task.words, words):
            if rng.random() < error:
                kind = rng.random()
                right = w if kind < 0.3 else str(rng.choice([a for a in ADJECTIVES if a != right]))
            out.append(right)
        return out
    if task.family == "kind":
        out = []
        for w, right in zip(task.words, words):
            if rng.random() < error:
                right = str(rng.choice([k for k in KINDS if k != right]))
            out.append(right)
        return out
    raise ValueError(f"unknown family {task.family!r}")


def render(content: list[str], opener: str = "", closer: str = "") -> str:
    """``[opener] w1, w2, w3. [closer]`` — the canonical response text (the tokenizer round-trips it)."""
    body = _join(content) + "."
    return " ".join(p for p in (opener, body, closer) if p)


def demonstration(task: Task, rng: np.random.Generator, style: DemoStyle = DemoStyle()) -> str:
    """One demonstration response of mixed quality and length."""
    content = noisy_content(task, rng, style.error)
    opener = str(rng.choice(OPENERS)) if rng.random() < style.opener else ""
    closer = str(rng.choice(CLOSERS)) if rng.random() < style.closer else ""
    return render(content, opener, closer)


def vocabulary_text() -> list[str]:
    """Text covering every word the world can produce (for training the tokenizer)."""
    cats = list(CATEGORIES)
    lines = [f"Name {n} {c} other than {CATEGORIES[c][0]}." for n in range(1, 6) for c in cats]
    lines += [f"Name 1 {SINGULAR[c]} and 1 {SINGULAR[c]}." for c in cats]
    lines += [f"Give the opposite of each word: {_join(ADJECTIVES)}.", f"Give me 1 {SINGULAR[cats[0]]}.",
              f"Say what kind of thing each word is: {_join(NOUNS)}.", f"List {_join(KINDS)}."]
    lines += [render(list(NOUNS) + list(ADJECTIVES), o, c) for o in OPENERS for c in CLOSERS]
    return lines
