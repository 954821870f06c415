"""The pure parts of evals: bootstrap intervals and the paired permutation test (checked against hand-computed
p values and against scipy), comparing two runs (pairing by index, direction of each score, regressions first),
counterfactual term swaps and the bias report, and the JUnit XML of the CI gate."""

from __future__ import annotations

import difflib
import itertools
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from podium.core.errors import InvalidInput
from podium.evals.bias import bias_report, builtin_lists, counterfactuals, load_lists, swap
from podium.evals.compare import RowResult, compare, default_higher_is_better
from podium.evals.junit import Check, junit_text, write_junit
from podium.evals.stats import bootstrap_ci, paired_test

# --- bootstrap -------------------------------------------------------------------------------------------------


def test_bootstrap_contains_the_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(7)
    small = bootstrap_ci(rng.normal(10, 2, 20).tolist())
    large = bootstrap_ci(rng.normal(10, 2, 2000).tolist())
    for ci in (small, large):
        assert ci.low is not None and ci.high is not None and ci.mean is not None
        assert ci.low < ci.mean < ci.high
    assert small.n == 20 and large.n == 2000
    small_width = small.high - small.low  # type: ignore[operator]
    large_width = large.high - large.low  # type: ignore[operator]
    # the width shrinks like 1/sqrt(n): 10x here, so well under a third
    assert large_width < small_width / 3
    # and is about 2 * 1.96 * sd / sqrt(n)
    assert large_width == pytest.approx(2 * 1.96 * 2 / np.sqrt(2000), rel=0.15)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = [0.1, 0.5, 0.9, 0.3, 0.7, 1.0, 0.0, 0.2]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_edges() -> None:
    empty = bootstrap_ci([])
    assert (empty.n, empty.mean, empty.low, empty.high) == (0, None, None, None)
    one = bootstrap_ci([4.5])
    assert (one.n, one.mean, one.low, one.high) == (1, 4.5, 4.5, 4.5)
    same = bootstrap_ci([2.0] * 10)
    assert (same.low, same.high) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, float("nan")])


def test_bootstrap_matches_scipy_percentile_bootstrap() -> None:
    stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(11).exponential(1.0, 60)
    ours = bootstrap_ci(values.tolist(), draws=20_000)
    theirs = stats.bootstrap(
        (values,), np.mean, method="percentile", n_resamples=20_000, random_state=np.random.default_rng(1)
    ).confidence_interval
    # different random draws: agree to within Monte Carlo noise
    assert ours.low == pytest.approx(theirs.low, abs=0.03)
    assert ours.high == pytest.approx(theirs.high, abs=0.03)


# --- paired test -----------------------------------------------------------------------------------------------


def test_obvious_improvement_is_significant() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.6, 50)
    b = a + rng.uniform(0.1, 0.3, 50)
    b[:3] = a[:3] - 0.05  # three rows got worse
    b[3] = a[3]  # one tie
    test = paired_test(a.tolist(), b.tolist())
    assert test.p_value < 0.01
    assert (test.n, test.wins, test.losses, test.ties) == (50, 46, 3, 1)
    assert test.mean_delta == pytest.approx(float((b - a).mean()))
    assert test.mean_a == pytest.approx(float(a.mean()))
    assert test.mean_b == pytest.approx(float(b.mean()))
    assert test.low is not None and test.high is not None
    assert 0 < test.low < test.mean_delta < test.high
    assert "Monte Carlo" in test.method
    # p = (count + 1) / (draws + 1): never 0
    assert test.p_value >= 1 / 10_001


def test_lower_is_better_swaps_wins_and_losses() -> None:
    a = [100.0, 200.0, 300.0, 400.0]
    b = [90.0, 150.0, 310.0, 400.0]
    up = paired_test(a, b)
    down = paired_test(a, b, higher_is_better=False)
    assert (up.wins, up.losses, up.ties) == (1, 2, 1)
    assert (down.wins, down.losses, down.ties) == (2, 1, 1)
    assert up.p_value == down.p_value


def test_identical_runs() -> None:
    a = [0.2, 0.4, 0.6, 0.8] * 10
    test = paired_test(a, list(a))
    assert test.p_value == 1.0
    assert (test.wins, test.losses, test.ties) == (0, 0, 40)
    assert test.mean_delta == 0.0
    # float noise inside the tie tolerance is a tie, not evidence
    noisy = paired_test(a, [x + 1e-12 for x in a])
    assert noisy.p_value == 1.0 and noisy.ties == 40


def test_small_n_exact_against_hand_computation() -> None:
    # differences 1, 2, 3, 4, -1: sum 9. Of the 32 sign assignments, |sum| >= 9 needs the flipped magnitudes to
    # total at most 1: none flipped (11), either 1 flipped (9, 9); and the mirror images: 6 / 32.
    test = paired_test([0, 0, 0, 0, 1], [1, 2, 3, 4, 0])
    assert test.p_value == pytest.approx(6 / 32)
    assert "exact" in test.method
    assert (test.wins, test.losses) == (4, 1)
    # all four differences positive: only all-plus and all-minus reach |sum| = 10
    assert paired_test([0, 0, 0, 0], [1, 2, 3, 4]).p_value == pytest.approx(2 / 16)
    # ties drop out of the enumeration: the same p value with zero differences added
    assert paired_test([0, 0, 0, 0, 1, 5, 5], [1, 2, 3, 4, 0, 5, 5]).p_value == pytest.approx(6 / 32)


def test_exact_matches_brute_force_enumeration() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(0, 1, 10)
    b = a + rng.normal(0.3, 1, 10)
    d = b - a
    observed = abs(d.sum())
    hits = sum(abs(np.dot(signs, d)) >= observed - 1e-12 for signs in itertools.product((1, -1), repeat=10))
    assert paired_test(a.tolist(), b.tolist()).p_value == pytest.approx(hits / 1024)


def test_matches_scipy_permutation_test() -> None:
    stats = pytest.importorskip("scipy.stats")

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(y - x, axis=axis)

    rng = np.random.default_rng(42)
    for n, shift in ((12, 0.4), (18, 0.35)):
        a = rng.normal(0, 1, n)
        b = a + rng.normal(shift, 1, n)
        exact = stats.permutation_test(
            (a, b), mean_diff, permutation_type="samples", vectorized=True, n_resamples=np.inf
        ).pvalue
        ours = paired_test(a.tolist(), b.tolist(), draws=40_000)
        if n <= 16:
            assert "exact" in ours.method
            assert ours.p_value == pytest.approx(exact, rel=1e-9)
        else:  # Monte Carlo against scipy's exact enumeration: within a few standard errors
            assert "Monte Carlo" in ours.method
            assert ours.p_value == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 40_000) + 1e-4)


def test_close_to_wilcoxon_on_a_clear_shift() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 80)
    b = a + rng.normal(0.25, 1, 80)
    ours = paired_test(a.tolist(), b.tolist(), draws=20_000).p_value
    wilcoxon = stats.wilcoxon(b - a).pvalue
    # different tests of the same hypothesis: same order of magnitude and the same verdict at 5%
    assert (ours < 0.05) == (wilcoxon < 0.05)
    assert 0.2 < ours / wilcoxon < 5


def test_paired_test_is_deterministic_and_checks_lengths() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.normal(0, 1, 30).tolist(), rng.normal(0.2, 1, 30).tolist()
    assert paired_test(a, b, seed=1) == paired_test(a, b, seed=1)
    with pytest.raises(ValueError, match="length"):
        paired_test([1.0, 2.0], [1.0])
    empty = paired_test([], [])
    assert empty.n == 0 and empty.p_value == 1.0 and empty.mean_delta is None


# --- compare ---------------------------------------------------------------------------------------------------


def _row(index: int, scores: dict[str, float], output: str | None = "out", error: str | None = None) -> RowResult:
    return RowResult(index=index, inputs={"q": f"question {index}"}, output=output, scores=scores, error=error)


def test_score_directions() -> None:
    for name in ("latency_ms", "cost_usd", "toxicity", "perplexity", "judge_ms", "prompt_tokens", "total_usd"):
        assert not default_higher_is_better(name), name
    for name in ("accuracy", "rouge", "faithfulness", "tokens_ratio"):
        assert default_higher_is_better(name), name


def test_compare_pairs_by_index_and_orders_regressions_first() -> None:
    a = [
        _row(0, {"accuracy": 1.0, "latency_ms": 100.0}),
        _row(1, {"accuracy": 1.0, "latency_ms": 100.0}),
        _row(2, {"accuracy": 0.0, "latency_ms": 100.0}),
        _row(3, {"accuracy": 0.5, "latency_ms": 100.0}),
        _row(4, {"accuracy": 0.5, "latency_ms": 100.0}),
        _row(7, {"accuracy": 1.0}),  # only in A
    ]
    b = [  # shuffled: pairing is by index, not position
        _row(4, {"accuracy": 0.5, "latency_ms": 150.0}, output="slow"),  # latency worse by 50
        _row(3, {"accuracy": 0.5, "latency_ms": 100.0}),  # unchanged
        _row(2, {"accuracy": 1.0, "latency_ms": 80.0}),  # better on both
        _row(1, {"accuracy": 0.0, "latency_ms": 100.0}, output="wrong"),  # accuracy worse by 1
        _row(0, {"accuracy": 1.0, "latency_ms": 40.0}),  # latency better
        _row(8, {"accuracy": 1.0}),  # only in B
        _row(9, {}, output=None, error="timeout"),  # only in B
    ]
    result = compare(a, b)
    assert (result.rows_a, result.rows_b, result.paired, result.unpaired) == (6, 7, 5, 3)
    assert (result.only_a, result.only_b) == ([7], [8, 9])
    # latency_ms counts as worse when higher: row 4's worst is -50, row 1's -1
    assert [r.index for r in result.rows] == [4, 1, 3, 0, 2]
    by_index = {r.index: r for r in result.rows}
    assert by_index[4].regressed == ["latency_ms"] and by_index[4].worst == -50.0
    assert by_index[4].deltas == {"accuracy": 0.0, "latency_ms": 50.0}
    assert by_index[1].regressed == ["accuracy"] and by_index[1].output_b == "wrong"
    assert by_index[3].regressed == [] and by_index[3].improved == []
    assert by_index[2].improved == ["accuracy", "latency_ms"]
    assert by_index[0].improved == ["latency_ms"] and by_index[0].best == 60.0
    assert by_index[1].inputs == {"q": "question 1"}
    metrics = {m.name: m for m in result.metrics}
    assert set(metrics) == {"accuracy", "latency_ms"}
    assert metrics["accuracy"].higher_is_better and not metrics["latency_ms"].higher_is_better
    assert metrics["accuracy"].test.n == 5  # rows 7, 8, 9 left out
    assert (metrics["latency_ms"].test.wins, metrics["latency_ms"].test.losses) == (2, 1)
    assert not metrics["accuracy"].significant


def test_compare_direction_override_and_significance() -> None:
    a = [_row(i, {"score": 0.0, "length": 10.0}) for i in range(30)]
    b = [_row(i, {"score": 1.0, "length": 20.0}) for i in range(30)]
    result = compare(a, b, higher_is_better={"length": False})
    metrics = {m.name: m for m in result.metrics}
    assert metrics["score"].significant and metrics["score"].test.wins == 30
    assert metrics["length"].significant and metrics["length"].test.losses == 30
    # every row regressed on length and improved on score: a regression is listed first
    assert all(r.regressed == ["length"] and r.improved == ["score"] for r in result.rows)
    assert [r.index for r in result.rows] == list(range(30))


def test_compare_skips_missing_scores_and_refuses_duplicate_indexes() -> None:
    a = [_row(0, {"x": 1.0}), _row(1, {"x": 1.0}), _row(2, {"y": 3.0})]
    b = [_row(0, {"x": 2.0}), _row(1, {}, output=None, error="boom"), _row(2, {"z": 1.0})]
    result = compare(a, b)
    assert [m.name for m in result.metrics] == ["x"]
    assert result.metrics[0].test.n == 1
    errored = next(r for r in result.rows if r.index == 1)
    assert errored.deltas == {} and errored.error_b == "boom" and errored.worst == 0.0
    with pytest.raises(ValueError, match="twice"):
        compare([_row(0, {}), _row(0, {})], [])


# --- bias: swaps -----------------------------------------------------------------------------------------------


def test_swap_is_simultaneous_and_keeps_case() -> None:
    gender = load_lists()
    assert swap("He gave her his book.", gender) == (
        "She gave him her book.",
        [("He", "She"), ("her", "him"), ("his", "her")],
    )
    assert swap("she said he said", gender)[0] == "he said she said"
    assert swap("HE is HER BROTHER", gender)[0] == "SHE is HIS SISTER"
    assert swap("The King and the queen", gender)[0] == "The Queen and the king"
    # whole words only
    assert swap("The theme: hero worship in Chelsea", gender)[0] == "The theme: heroine worship in Chelsea"
    assert swap("nothing to change", gender) == ("nothing to change", [])


def test_her_and_his_ambiguity_rule() -> None:
    gender = load_lists()
    assert swap("I saw her.", gender)[0] == "I saw him."
    assert swap("She loves her own car", gender)[0] == "He loves his own car"
    assert swap("her car and his", gender)[0] == "his car and hers"
    assert swap("Tell her that the book is hers", gender)[0] == "Tell him that the book is his"


def test_builtin_lists_load_and_hold_enough_terms() -> None:
    assert {"gender", "names", "groups"} <= set(builtin_lists())
    gender, names, groups = load_lists(("gender", "names", "groups"))
    assert (gender.name, names.name, groups.name) == ("gender", "names", "groups")
    assert len(names.pairs) >= 20
    flat = [n.lower() for pair in names.pairs for n in pair]
    assert len(flat) == len(set(flat)), "a name listed twice would keep only its first mapping"
    assert any(len(group) > 2 for group in groups.pairs)
    both = [gender, names, groups]
    text, swaps = swap("James is a Christian from the African American community; Mary is Hindu.", both)
    assert text == "Mary is a Muslim from the Asian American community; James is Buddhist."
    assert ("African American", "Asian American") in swaps


def test_group_of_more_than_two_is_a_cycle(tmp_path: Path) -> None:
    path = tmp_path / "colours.yaml"
    path.write_text("name: colours\ndescription: test\npairs:\n  - [red, green, blue]\n  - [Dr, Prof]\n")
    lists = load_lists((), [path])
    assert swap("red green blue DR prof", lists)[0] == "green blue red PROF dr"


def test_user_list_extends_the_builtin_ones(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("description: jobs\npairs:\n  - [nurse, engineer]\n  - [New York, Lagos]\n")
    lists = load_lists(("gender",), [path])
    assert [t.name for t in lists] == ["gender", "jobs"]  # a missing name defaults to the file's stem
    assert swap("He is a nurse in New  York", lists)[0] == "She is a engineer in Lagos"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("pairs: [[he, she]\n", "not valid YAML"),
        ("- he\n- she\n", "must be a mapping"),
        ("name: x\n", "'pairs' must be"),
        ("name: x\npairs: [[he]]\n", "pairs[0] must be a list of at least two"),
        ("name: x\npairs: [[yes, no]]\n", "pairs[0][0]"),
        ("name: x\npairs: [[he, He]]\n", "twice"),
        ("name: x\npair: [[he, she]]\n", "unknown key(s) pair"),
        ("name: [x]\npairs: [[he, she]]\n", "'name' must be"),
    ],
)
def test_bad_list_files_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_lists((), [path])
    assert str(path) in caught.value.message
    assert problem in caught.value.message
    assert caught.value.details["file"] == str(path)


def test_missing_file_and_unknown_builtin_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot be read"):
        load_lists((), [tmp_path / "nope.yaml"])
    with pytest.raises(InvalidInput, match="unknown bias term list 'genders'"):
        load_lists(("genders",))


def test_counterfactuals_only_for_rows_with_swaps() -> None:
    rows = [
        {"question": "What should he study?", "context": "His sister is a doctor.", "id": 1},
        {"question": "What is 2 + 2?", "context": "arithmetic", "id": 2},
        {"question": "Is she kind?", "context": None, "id": 3},
    ]
    out = counterfactuals(rows, ["question", "context"], load_lists())
    assert [c.index for c in out] == [0, 2]
    assert out[0].row == {"question": "What should she study?", "context": "Her brother is a doctor.", "id": 1}
    assert out[0].swaps == [("he", "she"), ("His", "Her"), ("sister", "brother")]
    assert out[1].row == {"question": "Is he kind?", "context": None, "id": 3}
    assert rows[0]["question"] == "What should he study?"  # the input is not modified
    with pytest.raises(InvalidInput, match="answer"):
        counterfactuals(rows, ["answer"], load_lists())


# --- bias: report ----------------------------------------------------------------------------------------------


def test_bias_report_numbers() -> None:
    pairs: list[tuple[dict[str, float], dict[str, float], str | None, str | None]] = [
        ({"quality": 0.9, "toxicity": 0.1}, {"quality": 0.7, "toxicity": 0.1}, "a b c d", "a b c d"),
        ({"quality": 0.8, "toxicity": 0.0}, {"quality": 0.8, "toxicity": 0.3}, "a b c d", "a b x d"),
        ({"quality": 0.6}, {"quality": 0.5}, "one two", None),
        ({"quality": 1.0, "toxicity": 0.2}, {"quality": 0.4, "toxicity": 0.2}, "same", "same"),
    ]
    report = bias_report(pairs)
    assert report.n == 4
    metrics = {m.name: m for m in report.metrics}
    assert metrics["quality"].mean_difference == pytest.approx((-0.2 + 0.0 - 0.1 - 0.6) / 4)
    assert metrics["quality"].test.n == 4 and metrics["quality"].test.losses == 3
    assert metrics["toxicity"].mean_difference == pytest.approx(0.1)
    assert not metrics["toxicity"].higher_is_better and metrics["toxicity"].test.losses == 1
    assert report.outputs_compared == 3 and report.outputs_changed == 1
    assert report.mean_similarity == pytest.approx((1 + 0.75 + 1) / 3)
    ratio = difflib.SequenceMatcher(None, ["a", "b", "c", "d"], ["a", "b", "x", "d"]).ratio()
    assert report.mean_similarity == pytest.approx((2 + ratio) / 3)
    assert [(d.index, d.name) for d in report.largest] == [
        (3, "quality"),
        (1, "toxicity"),
        (0, "quality"),
        (2, "quality"),
    ]
    assert report.largest[0].difference == pytest.approx(-0.6)
    assert (report.largest[0].original, report.largest[0].swapped) == (1.0, 0.4)


def test_bias_report_keeps_the_ten_largest_and_discounts_the_swap_itself() -> None:
    pairs: list[tuple[dict[str, float], dict[str, float], str | None, str | None]] = [
        ({"s": 0.0}, {"s": float(i)}, "He is ready.", "She is ready.") for i in range(15)
    ]
    report = bias_report(pairs)
    assert [d.difference for d in report.largest] == [float(i) for i in range(14, 4, -1)]
    assert report.outputs_changed == 15
    # with the lists, "He" answered as "She" is what the swap asked for, not a change
    fair = bias_report(pairs, lists=load_lists())
    assert fair.outputs_changed == 0 and fair.mean_similarity == 1.0
    assert bias_report([]).n == 0 and bias_report([]).mean_similarity is None


# --- JUnit -----------------------------------------------------------------------------------------------------


CHECKS = [
    Check("accuracy >= 0.8", True, "accuracy 0.85 meets 0.8", 0.85, ">= 0.8"),
    Check("no regression on faithfulness", False, "faithfulness fell by 0.12 (p = 0.003)", -0.12, "no drop", "gate"),
    Check("toxicity <= 0.05", False, "toxicity 0.09 \x00 above <0.05>", 0.09, "<= 0.05"),
]


def test_junit_xml_counts_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "eval.xml"
    write_junit(path, "nightly-qa", CHECKS, 12.5)
    assert [p.name for p in path.parent.iterdir()] == ["eval.xml"]  # no temporary file left behind
    assert path.read_text() == junit_text("nightly-qa", CHECKS, 12.5)
    root = ET.parse(path).getroot()  # noqa: S314 - our own report
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures")) == ("3", "2")
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        "nightly-qa",
        "3",
        "2",
        "0",
    )
    assert suite.get("time") == "12.500"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c.name for c in CHECKS]
    assert [c.get("classname") for c in cases] == ["podium.eval", "gate", "podium.eval"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "faithfulness fell by 0.12 (p = 0.003)"
    assert "threshold: no drop" in (failure.text or "") and "value: -0.12" in (failure.text or "")
    third = cases[2].find("failure")
    assert third is not None and third.get("message") == "toxicity 0.09  above <0.05>"  # NUL dropped


def test_junit_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "eval.xml"
    write_junit(path, "s", CHECKS, 1.0)
    write_junit(path, "s", CHECKS[:1], 1.0)
    root = ET.parse(path).getroot()  # noqa: S314 - our own report
    assert (root.get("tests"), root.get("failures")) == ("1", "0")
    assert sorted(os.listdir(tmp_path)) == ["eval.xml"]
    empty = ET.fromstring(junit_text("empty", [], 0.0).split("\n", 1)[1])  # noqa: S314 - our own report
    assert (empty.get("tests"), empty.get("failures")) == ("0", "0")
