"""Sticky percentage bucketing (DESIGN.md section 5): formula, range, uniformity, ramps."""

from __future__ import annotations

import hashlib
import itertools
import math

import pytest

from gateway.routing.bucketing import BUCKETS, bucket_of, in_rollout

N = 100_000
SUBJECTS = [f"user-{i}" for i in range(N)]


def reference_bucket(route: str, salt: str, subject: str) -> int:
    """DESIGN.md s5 written independently: hex digits and integer division, not bytes and shifts."""
    head = hashlib.sha256(f"{route}.{salt}.{subject}".encode()).hexdigest()[:16]
    return int(head, 16) * 100_000 // 2**64


def sigma_bound(n: int, p: float, z: float = 5.0) -> float:
    """z standard deviations of a Binomial(n, p) count.

    Bucketing is deterministic, so these tests either always pass or always fail; the bound says
    that an ideal uniform hash would land outside it with probability < 1e-6 per check, while a
    biased formula (wrong shift, truncated digest, reused salt) lands far outside it.
    """
    return z * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def buckets() -> list[int]:
    return [bucket_of("support-triage", "support-triage", s) for s in SUBJECTS]


def test_bucket_matches_pinned_values_computed_with_sha256sum() -> None:
    """Two buckets pinned from `printf ... | sha256sum` and big-integer arithmetic by hand."""
    assert bucket_of("support-triage", "support-triage", "user-42") == 75323
    assert bucket_of("support-triage", "s1", "alice") == 75037


@pytest.mark.parametrize(
    ("route", "salt", "subject"),
    [
        ("support-triage", "support-triage", "user-1"),
        ("r", "", ""),
        ("route.with.dots", "salt", "subject with spaces"),
        ("émoji-route", "sel", "ユーザー"),
    ],
)
def test_bucket_equals_independent_formula(route: str, salt: str, subject: str) -> None:
    """bucket_of follows the formula (first 8 bytes of sha256(route.salt.subject)) * 1e5 >> 64."""
    assert bucket_of(route, salt, subject) == reference_bucket(route, salt, subject)


def test_bucket_agrees_with_independent_formula_on_many_subjects(buckets: list[int]) -> None:
    """The formula holds over a thousand subjects, not just a few hand-picked ones."""
    for subject, bucket in zip(SUBJECTS[:1000], buckets[:1000], strict=True):
        assert bucket == reference_bucket("support-triage", "support-triage", subject)


def test_buckets_lie_in_range_and_reach_both_ends(buckets: list[int]) -> None:
    """Every bucket is in [0, 100000), and the whole range is used (no lost high bits)."""
    assert BUCKETS == 100_000
    assert min(buckets) >= 0
    assert max(buckets) < BUCKETS
    # with 100k uniform draws the extremes are within ~1 bucket of the ends; 100 is generous
    assert min(buckets) < 100
    assert max(buckets) > BUCKETS - 100


def test_buckets_are_uniform_over_100_bins_by_chi_square(buckets: list[int]) -> None:
    """Chi-square over 100 equal bins stays below the 1e-5 upper quantile of chi2(99).

    scipy is not a dependency, so the quantile uses the Wilson-Hilferty approximation
    chi2_q(k) ~ k * (1 - 2/(9k) + z * sqrt(2/(9k)))**3, accurate to well under 1% at k = 99.
    """
    counts = [0] * 100
    for b in buckets:
        counts[b * 100 // BUCKETS] += 1
    expected = N / 100
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    k = 99
    z = 4.265  # one-sided standard normal quantile for 1e-5
    bound = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3
    assert chi2 < bound, (chi2, bound)


def test_each_decile_holds_a_tenth_of_subjects(buckets: list[int]) -> None:
    """Each decile holds 10000 +- 5 sigma of Binomial(100000, 0.1) (about +-474, i.e. 4.7%)."""
    counts = [0] * 10
    for b in buckets:
        counts[b // 10_000] += 1
    tolerance = sigma_bound(N, 0.1)
    for decile, count in enumerate(counts):
        assert abs(count - N / 10) < tolerance, (decile, count)


def test_bucket_is_sticky_for_the_same_input() -> None:
    """The same route, salt and subject always give the same bucket (no hidden state)."""
    first = [bucket_of("r", "salt", s) for s in SUBJECTS[:500]]
    again = [bucket_of("r", "salt", s) for s in SUBJECTS[:500]]
    assert first == again
    assert len(set(first)) > 450  # and they are not all one value


def test_in_rollout_is_bucket_below_weight() -> None:
    """in_rollout is true iff bucket < weight: edges at 0, weight-1, weight and 100000."""
    assert not in_rollout(0, 0)
    assert in_rollout(0, 1)
    assert in_rollout(9_999, 10_000)
    assert not in_rollout(10_000, 10_000)
    assert in_rollout(99_999, 100_000)


def test_raising_the_weight_only_adds_subjects(buckets: list[int]) -> None:
    """A ramp never reshuffles: the set in at w1 is a subset of the set in at w2 > w1."""
    weights = [0, 1, 1_000, 10_000, 25_000, 50_000, 75_000, 99_999, 100_000]
    sets = [
        {s for s, b in zip(SUBJECTS, buckets, strict=True) if in_rollout(b, w)} for w in weights
    ]
    assert sets[0] == set()
    assert sets[-1] == set(SUBJECTS)
    for smaller, larger in itertools.pairwise(sets):
        assert smaller <= larger
        assert len(smaller) < len(larger) or smaller == larger


@pytest.mark.parametrize("weight", [10_000, 50_000])
def test_share_in_rollout_is_close_to_weight(buckets: list[int], weight: int) -> None:
    """At 10% and 50% the share of subjects in is the weight within 5 sigma of a binomial."""
    p = weight / BUCKETS
    inside = sum(in_rollout(b, weight) for b in buckets)
    assert abs(inside - N * p) < sigma_bound(N, p), inside


def pearson(xs: list[int], ys: list[int]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    vx = sum((x - mx) ** 2 for x in xs)
    vy = sum((y - my) ** 2 for y in ys)
    return cov / math.sqrt(vx * vy)


@pytest.mark.parametrize(
    ("other_route", "other_salt"),
    [("other-route", "other-route"), ("support-triage", "rollout-2")],
    ids=["different-route", "different-salt"],
)
def test_routes_and_salts_bucket_independently(
    buckets: list[int], other_route: str, other_salt: str
) -> None:
    """Another route, or the same route with a new salt, gives uncorrelated buckets.

    Under independence Pearson's r over n pairs has standard deviation about 1/sqrt(n), and the
    share of subjects in at 50% on both sides is 25% +- sqrt(0.25 * 0.75 / n).
    """
    n = 20_000
    mine = buckets[:n]
    other = [bucket_of(other_route, other_salt, s) for s in SUBJECTS[:n]]
    assert abs(pearson(mine, other)) < 5 / math.sqrt(n)
    both = sum(a < 50_000 and b < 50_000 for a, b in zip(mine, other, strict=True))
    assert abs(both - n * 0.25) < sigma_bound(n, 0.25)
