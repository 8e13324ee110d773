"""The world's oracle, annotators and judge on hand-checked examples (milliseconds)."""

import numpy as np
import pytest

from dicekit.evals.judges import Comparison
from dicekit.world import tasks
from dicekit.world.annotators import Annotators, label_rate
from dicekit.world.judge import OracleJudge
from dicekit.world.oracle import content_words, parse_prompt, quality


@pytest.mark.parametrize("prompt,response,expected", [
    # list: distinct valid items / max(n, #items)
    ("Name 3 fruits.", "apple, pear, plum.", 1.0),
    ("Name 3 fruits.", "Sure! apple, pear, plum. I hope this helps.", 1.0),  # filler is free
    ("Name 3 fruits.", "apple, dog, plum.", 2 / 3),  # one item of another category
    ("Name 3 fruits.", "apple, apple, plum.", 2 / 3),  # a duplicate counts once
    ("Name 3 fruits.", "apple, pear, plum, lemon.", 3 / 4),  # one too many: min(3, 4 valid) / max(3, 4)
    ("Name 3 fruits other than plum.", "apple, pear, plum.", 2 / 3),  # the excluded item
    ("List 2 fruits other than plum and pear.", "pear, apple.", 1 / 2),
    ("Give me 2 fruits other than plum and pear.", "Sure! apple, lemon.", 1.0),
    ("Name 2 tools.", "Sure!", 0.0),  # filler only = no answer
    # combo: per-category capped counts / max(n1 + n2, #items)
    ("Name 2 fruits and 1 animal.", "apple, pear, dog.", 1.0),
    ("Give me 1 fruit and 1 animal.", "apple, dog.", 1.0),
    ("Name 2 fruits and 1 animal.", "dog, apple, pear.", 1.0),  # order-free
    ("Name 2 fruits and 1 animal.", "apple, apple, dog.", 2 / 3),  # a duplicate counts once
    ("Name 2 fruits and 1 animal.", "apple, pear, plum, dog.", 3 / 4),  # a third fruit is one too many
    ("Name 1 tool and 2 drinks.", "saw, tea, dog.", 2 / 3),
    # opposite: antonyms present (multiset) / max(n, #items)
    ("Give the opposite of each word: hot, big.", "cold, small.", 1.0),
    ("Give the opposite of each word: hot, big.", "small, cold.", 1.0),  # order-free
    ("Give the opposite of each word: hot, big.", "cold, big.", 0.5),  # copied the word
    ("Give the opposite of each word: hot, big.", "cold, cold.", 0.5),  # one antonym twice
    ("Give the opposite of each word: hot, big.", "cold.", 0.5),  # one missing
    ("Give the opposite of each word: hot.", "cold, small.", 0.5),  # one extra
    # kind: kinds present (multiset) / max(n, #items)
    ("Say what kind of thing each word is: dog, tea.", "animal, drink.", 1.0),
    ("Say what kind of thing each word is: dog, tea.", "drink, animal.", 1.0),
    ("Say what kind of thing each word is: dog, tea, cat.", "animal, drink, drink.", 2 / 3),
    ("Say what kind of thing each word is: dog, tea.", "dog, tea.", 0.0),  # echoed the words
    ("Say what kind of thing each word is: dog, tea.", "Name Name Name", 0.0),  # junk
])
def test_quality_hand_checked(prompt, response, expected):
    assert quality(prompt, response) == pytest.approx(expected)


def test_correct_answers_score_one_and_demonstrations_are_mixed():
    rng = np.random.default_rng(0)
    qs = []
    for family in tasks.FAMILIES:
        for _ in range(50):
            task = tasks.make_task(family, rng)
            assert quality(task.prompt, tasks.render(tasks.correct_content(task, rng))) == 1.0
            qs.append(quality(task.prompt, tasks.demonstration(task, rng)))
    qs = np.array(qs)
    assert 0.6 < qs.mean() < 0.9 and (qs == 1.0).mean() > 0.3 and (qs < 1.0).mean() > 0.2


def test_filler_and_content_vocabularies_are_disjoint():
    content = set(tasks.NOUNS) | set(tasks.ADJECTIVES)
    assert not content & tasks.FILLER_WORDS
    assert content_words("Of course! dog, cat. Have a nice day!") == ["dog", "cat"]


def test_parse_prompt_round_trips_every_family_and_rejects_others():
    rng = np.random.default_rng(1)
    for family in tasks.FAMILIES:
        task = tasks.make_task(family, rng)
        assert parse_prompt(task.prompt) == task
    with pytest.raises(ValueError):
        parse_prompt("Write a poem about the sea.")
    with pytest.raises(ValueError):
        parse_prompt("Name 3 planets.")
    with pytest.raises(ValueError):
        parse_prompt("Name 1 fruit and 2 fruits.")


def test_splits_are_disjoint_and_seeded():
    a = {s: tasks.sample_tasks(s, 40, seed=3) for s in tasks.SPLITS}
    for s, ts in a.items():
        assert len(ts) == 40 and all(tasks.split_of(t.prompt) == s for t in ts)
        assert {t.family for t in ts} == set(tasks.FAMILIES)
    prompts = [t.prompt for ts in a.values() for t in ts]
    assert len(prompts) == len(set(prompts))
    assert [t.prompt for t in tasks.sample_tasks("eval", 40, seed=3)] == [t.prompt for t in a["eval"]]
    assert [t.prompt for t in tasks.sample_tasks("eval", 40, seed=4)] != [t.prompt for t in a["eval"]]


def test_annotator_probability_worked_by_hand():
    """q_a = 1, q_b = 2/3, equal length (18 characters): logit = (1/3)/0.1 = 3.33, σ = 0.9656.
    Equal quality, a 18 chars longer ("I hope this helps." + space = 19): logit = 1.0·19/20 = 0.95, σ = 0.7211."""
    ann = Annotators(tau=0.1, verbosity=1.0, length_scale=20.0)
    p = "Name 3 fruits."
    assert ann.prob_first(p, "apple, pear, plum.", "apple, pear, goat.") == pytest.approx(0.96555, abs=1e-4)
    assert ann.prob_first(p, "apple, pear, plum. I hope this helps.", "apple, pear, plum.") == pytest.approx(0.72111, abs=1e-4)


def test_verbosity_bias_prefers_the_longer_of_equal_answers():
    p = "Name 3 fruits."
    short, long_ = "apple, pear, plum.", "Sure! apple, pear, plum. I hope this helps."
    # 25 characters longer: P = σ(1.0 · 25 / 20) = σ(1.25) = 0.777
    assert label_rate(Annotators(verbosity=1.0, seed=5), p, long_, short, 2000) > 0.72
    assert abs(label_rate(Annotators(verbosity=0.0, seed=5), p, long_, short, 2000) - 0.5) < 0.05
    # quality still dominates a moderate length gain
    assert label_rate(Annotators(verbosity=1.0, seed=5), p, "apple, pear, plum.", "Sure! apple, dog, plum.", 2000) > 0.7


def test_labels_are_seeded_and_order_free():
    ann = Annotators(seed=9)
    p, a, b = "Name 2 tools.", "saw, rake.", "Sure! saw, dog."
    first = [ann.prefers_first(p, a, b, (i,)) for i in range(50)]
    assert first == [Annotators(seed=9).prefers_first(p, a, b, (i,)) for i in range(50)]
    assert first != [Annotators(seed=10).prefers_first(p, a, b, (i,)) for i in range(50)]


def test_best_and_worst():
    ann = Annotators(tau=0.01, verbosity=0.0, seed=0)  # nearly noiseless: the oracle's order
    p = "Name 3 fruits."
    rs = ["apple, dog, cat.", "apple, pear, plum.", "apple, pear, dog.", "apple, pear, plum."]
    assert ann.best_and_worst(p, rs) == (1, 0)
    assert ann.best_and_worst(p, ["apple.", "apple."]) is None


def test_oracle_judge_preferences():
    judge = OracleJudge()
    p = "Name 2 tools."
    items = [Comparison(p, "saw, dog.", "saw, rake."), Comparison(p, "saw, rake.", "saw, dog."),
             Comparison(p, "saw, rake.", "Sure! rake, saw."), Comparison("Tell me a joke.", "a", "b")]
    assert judge.judge(items) == [2.0, 1.0, 1.5, None]
    assert judge.name


def test_prompt_with_words_outside_the_world_is_not_a_world_prompt():
    import pytest

    from dicekit.world.judge import OracleJudge
    from dicekit.evals.judges import Comparison
    from dicekit.world.oracle import quality

    with pytest.raises(ValueError):
        quality("Give the opposite of each word: closed, hot.", "open, cold")
    assert OracleJudge().judge([Comparison("Give the opposite of each word: closed.", "a", "b")]) == [None]
