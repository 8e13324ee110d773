"""The ground truth: quality(prompt, response) ∈ [0, 1], computed by a program.

The prompt text is parsed back into its :class:`~dicekit.world.tasks.Task`; the response is read as
its *content words* — every word that is not filler (openers/closers such as "Sure!" or "I hope
this helps."), lower-cased, punctuation ignored. Junk words count as content (as wrong items), so
garbage is penalised; filler is free, so verbosity is neither rewarded nor punished by the truth.

* list:     min(n, |distinct members other than the excluded ones|) / max(n, #items)
* combo:    (min(n1, |distinct members of c1|) + min(n2, |distinct members of c2|)) / max(n1 + n2, #items)
* opposite: |antonyms of the prompt words present (as a multiset)| / max(n, #items)
* kind:     |kinds of the prompt words present (as a multiset)| / max(n, #items)

All order-free. Dividing by max(n, #items) makes extra items cost as much as missing ones. An empty
answer scores 0.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from dicekit.world.tasks import CATEGORIES, CATEGORY_OF, FILLER_WORDS, OPPOSITE, PLURAL, SINGULAR, Task

_VERB = "(?:Name|List|Give me)"
_PATTERNS = (
    ("combo", re.compile(rf"^{_VERB} (\d+) (\w+) and (\d+) (\w+)\.$")),
    ("list", re.compile(rf"^{_VERB} (\d+) (\w+)(?: other than (\w+)(?: and (\w+))?)?\.$")),
    ("opposite", re.compile(r"^Give the opposite of each word: (.+)\.$")),
    ("kind", re.compile(r"^Say what kind of thing each word is: (.+)\.$")),
)
_WORD = re.compile(r"[A-Za-z0-9]+")


@lru_cache(maxsize=65536)
def parse_prompt(prompt: str) -> Task:
    """The task a world prompt asks for; ValueError for text that is not a world prompt."""
    text = prompt.strip()
    for family, pattern in _PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        if family == "list":
            n, category = int(m.group(1)), m.group(2)
            exclude = tuple(w for w in (m.group(3), m.group(4)) if w)
            if category in CATEGORIES:
                return Task("list", text, category=category, n=n, exclude=exclude)
        elif family == "combo":
            c1, c2 = PLURAL.get(m.group(2), m.group(2)), PLURAL.get(m.group(4), m.group(4))
            if c1 in CATEGORIES and c2 in CATEGORIES and c1 != c2:
                return Task("combo", text, category=c1, n=int(m.group(1)), category2=c2, n2=int(m.group(3)))
        else:
            words = _words(m.group(1))
            known = OPPOSITE if family == "opposite" else CATEGORY_OF
            if words and all(w in known for w in words):
                return Task(family, text, words=words)
    raise ValueError(f"not a prompt of the task world: {prompt[:80]!r}")


def _words(listing: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in listing.split(",") if w.strip())


def content_words(response: str) -> list[str]:
    """The response's answer words: lower-cased words that are not filler, in order."""
    return [w for w in (x.lower() for x in _WORD.findall(response)) if w not in FILLER_WORDS]


def score(task: Task, response: str) -> float:
    """Quality of ``response`` for ``task`` in [0, 1] (see the module docstring)."""
    items = content_words(response)
    if not items:
        return 0.0
    if task.family == "list":
        valid = {w for w in items if CATEGORY_OF.get(w) == task.category and w not in task.exclude}
        return min(task.n, len(valid)) / max(task.n, len(items))
    if task.family == "combo":
        hits = sum(min(n, len({w for w in items if CATEGORY_OF.get(w) == c}))
                   for c, n in ((task.category, task.n), (task.category2, task.n2)))
        return hits / max(task.n + task.n2, len(items))
    if task.family in ("opposite", "kind"):
        if task.family == "opposite":
            target = Counter(OPPOSITE[w] for w in task.words)
        else:
            target = Counter(SINGULAR[CATEGORY_OF[w]] for w in task.words)
        hits = sum((Counter(items) & target).values())
        return hits / max(len(task.words), len(items))
    raise ValueError(f"unknown family {task.family!r}")


def quality(prompt: str, response: str) -> float:
    """The oracle: quality of ``response`` to the world prompt ``prompt``, in [0, 1]."""
    return score(parse_prompt(prompt), response)
