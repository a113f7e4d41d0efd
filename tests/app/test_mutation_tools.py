"""The mutation tools' own logic (make mutate / mutate-sample): what they count and draw."""

from __future__ import annotations

from collections import Counter

from tools.mutation_sample import sample
from tools.mutation_summary import rate

NAMES = {
    **{f"bark_core.stages.x_f__mutmut_{i}": "not checked" for i in range(50)},
    "bark_core.stages.x_f__mutmut_50": "killed",
    "bark_core.sampling.x_g__mutmut_1": "not checked",
}


def test_a_sample_draws_only_unjudged_mutants_of_the_pattern_and_repeats_with_its_seed() -> None:
    drawn = sample(NAMES, "bark_core.stages*", 10, seed=3)
    assert len(drawn) == len(set(drawn)) == 10
    assert all(n.startswith("bark_core.stages.") and NAMES[n] == "not checked" for n in drawn)
    assert drawn == sample(NAMES, "bark_core.stages*", 10, seed=3)
    assert drawn != sample(NAMES, "bark_core.stages*", 10, seed=4)
    assert len(sample(NAMES, "bark_core.stages*", 500, seed=0)) == 50  # no more than there are


def test_the_kill_rate_counts_judged_mutants_only() -> None:
    counts = Counter({"killed": 6, "timeout": 2, "survived": 2, "not checked": 90})
    assert rate(counts) == "60.0% killed (6/10), 80.0% with timeouts"
    assert rate(Counter({"not checked": 5})) == "n/a"
