"""Reference, safety and operational evaluators, built from specs as suites name them, on known inputs. BLEU,
chrF and ROUGE are checked against sacrebleu's and rouge-score's own results on the same inputs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from podium.core.errors import InvalidInput
from podium.evals.evaluators.base import Sample, Verdict, build, kinds


def run(spec: dict[str, Any] | str, output: str | None = "", **fields: Any) -> Verdict:
    """Build the evaluator and score one sample (these evaluators make no model calls: models is None)."""
    evaluator = build(spec)
    sample = Sample(inputs=fields.pop("inputs", {"input": "q"}), output=output, **fields)
    return asyncio.run(evaluator.evaluate(sample, None))  # type: ignore[arg-type]


def score(spec: dict[str, Any] | str, output: str | None, **fields: Any) -> float:
    verdict = run(spec, output, **fields)
    assert verdict.error is None, verdict.error
    name = spec if isinstance(spec, str) else spec.get("name", spec["type"])
    return verdict.scores[name]


MINE = {
    "exact_match",
    "normalized_match",
    "token_f1",
    "bleu",
    "chrf",
    "rouge",
    "levenshtein",
    "json_valid",
    "json_schema",
    "regex",
    "contains",
    "not_contains",
    "toxicity",
    "pii_leak",
    "refusal",
    "latency",
    "cost",
    "tokens",
}


def test_every_type_is_registered_with_a_description() -> None:
    listed = kinds()
    assert set(listed) >= MINE
    assert all(listed[k] for k in MINE)


# --- reference metrics -------------------------------------------------------------------------------------


def test_exact_match() -> None:
    assert score("exact_match", " Paris\n", reference="Paris") == 1.0
    assert score("exact_match", "paris", reference="Paris") == 0.0
    assert score({"type": "exact_match", "case_sensitive": False}, "paris", reference="Paris") == 1.0
    assert score({"type": "exact_match", "strip": False}, "Paris ", reference="Paris") == 0.0
    verdict = run("exact_match", "Lyon", reference=["Paris", "Lyon"])  # a list: any acceptable answer
    assert verdict.scores == {"exact_match": 1.0} and verdict.label == "pass"
    assert run("exact_match", "Nice", reference=["Paris", "Lyon"]).label == "fail"
    assert score("exact_match", "42", reference=42) == 1.0
    assert build("exact_match").needs == frozenset({"output", "reference"})


def test_normalized_match_is_squad_normalisation() -> None:
    assert score("normalized_match", "The  Eiffel Tower!", reference="eiffel tower") == 1.0
    assert score("normalized_match", "an apple, a pear", reference="Apple pear") == 1.0
    assert score("normalized_match", "theory", reference="ory") == 0.0  # articles only as whole words
    assert score("normalized_match", "Eiffel", reference=["the tower", "EIFFEL."]) == 1.0
    assert score("normalized_match", "Eiffel Tower", reference="Eiffel") == 0.0


def test_token_f1() -> None:
    assert score("token_f1", "the cat sat on the mat", reference="a cat sat on a mat") == 1.0
    # 1 of 4 predicted tokens is right, the only gold token is found: P 1/4, R 1, F1 0.4
    assert score("token_f1", "Barack Obama was president", reference="Obama") == pytest.approx(0.4)
    assert score("token_f1", "red blue", reference=["green", "blue red yellow"]) == pytest.approx(0.8)
    assert score("token_f1", "nothing shared", reference="other words") == 0.0
    assert score("token_f1", "the", reference="a") == 1.0  # both empty once normalised
    verdict = run({"type": "token_f1", "threshold": 0.5}, "Barack Obama was president", reference="Obama")
    assert verdict.label == "fail" and "precision 0.250" in (verdict.explanation or "")
    assert run("token_f1", "x", reference="x").label is None  # no threshold, no label


CASES: list[tuple[str, list[str]]] = [
    ("the cat sat on the mat", ["the cat is on the mat"]),
    ("The quick brown fox jumps over the lazy dog.", ["A quick brown fox jumped over a lazy dog."]),
    (
        "It is a guide to action which ensures that the military always obeys the commands of the party.",
        [
            "It is a guide to action that ensures that the military will forever heed Party commands.",
            "It is the guiding principle which guarantees the military forces always being under the command of "
            "the Party.",
            "It is the practical guide for the army always to heed the directions of the party.",
        ],
    ),
    ("Paris is the capital of France", ["The capital of France is Paris.", "Paris"]),
    ("completely unrelated words here", ["nothing in common at all"]),
    ("running runners ran quickly", ["the runner runs quick"]),
]


@pytest.mark.parametrize(("hypothesis", "refs"), CASES)
def test_bleu_and_chrf_equal_sacrebleu(hypothesis: str, refs: list[str]) -> None:
    assert score("bleu", hypothesis, reference=refs) == pytest.approx(
        sacrebleu.sentence_bleu(hypothesis, refs).score / 100
    )
    assert score("chrf", hypothesis, reference=refs) == pytest.approx(
        sacrebleu.sentence_chrf(hypothesis, refs).score / 100
    )
    assert score({"type": "chrf", "word_order": 2}, hypothesis, reference=refs) == pytest.approx(
        sacrebleu.sentence_chrf(hypothesis, refs, word_order=2).score / 100
    )
    settings = {"lowercase": True, "tokenize": "char", "smooth_method": "floor", "smooth_value": 0.2}
    assert score({"type": "bleu", **settings}, hypothesis, reference=refs) == pytest.approx(
        sacrebleu.sentence_bleu(hypothesis, refs, **settings).score / 100
    )


@pytest.mark.parametrize(("hypothesis", "refs"), CASES)
def test_rouge_equals_rouge_score(hypothesis: str, refs: list[str]) -> None:
    plain = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    multi = plain.score_multi(refs, hypothesis)  # rouge-score's own best-of-references (by F-measure)
    verdict = run("rouge", hypothesis, reference=refs)
    assert verdict.scores == pytest.approx({t: multi[t].fmeasure for t in ("rouge1", "rouge2", "rougeL")})

    stemmed = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per_ref = [stemmed.score(ref, hypothesis) for ref in refs]
    verdict = run(
        {"type": "rouge", "name": "summary", "use_stemmer": True, "measure": "recall"}, hypothesis, reference=refs
    )
    assert verdict.scores == pytest.approx(
        {f"summary_{t}": max(s[t].recall for s in per_ref) for t in ("rouge1", "rouge2", "rougeL")}
    )


def test_ngram_metrics_on_known_values() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    assert score("bleu", text, reference=text) == pytest.approx(1.0)
    assert score("chrf", text, reference=text) == pytest.approx(1.0)
    assert run("rouge", text, reference=text).scores == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})
    assert score("bleu", "alpha beta gamma delta", reference="one two three four") == 0.0
    # "the cat sat on the mat" vs "the cat is on the mat": 5 of 6 unigrams, 3 of 5 bigrams
    assert run("rouge", "the cat sat on the mat", reference="the cat is on the mat").scores == pytest.approx(
        {"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6}
    )
    verdict = run({"type": "bleu", "threshold": 0.9}, "the cat sat on the mat", reference="the cat is on the mat")
    assert verdict.label == "fail" and (verdict.explanation or "").startswith("BLEU = ")


def test_levenshtein() -> None:
    assert score("levenshtein", "kitten", reference="sitting") == pytest.approx(1 - 3 / 7)
    assert score("levenshtein", "kitten", reference=["sitting", "kitten!"]) == pytest.approx(1 - 1 / 7)
    assert score({"type": "levenshtein", "normalize": True}, "The Kitten.", reference="kitten") == 1.0
    assert score("levenshtein", "", reference="") == 1.0


def test_missing_reference_or_output_is_an_error_not_a_zero() -> None:
    for spec in ("exact_match", "token_f1", "bleu", "chrf", "rouge", "levenshtein"):
        verdict = run(spec, "x", reference=None)
        assert verdict.error == "no reference for this row" and verdict.scores == {}
        assert run(spec, "x", reference=[]).error == "no reference for this row"
        assert run(spec, "x", reference={"a": 1}).error is not None
        assert run(spec, None, reference="x").error == "no output for this row"


# --- format checks ------------------------------------------------------------------------------------------


def test_json_valid() -> None:
    assert score("json_valid", '{"a": [1, 2]}') == 1.0
    assert score("json_valid", '```json\n{"a": 1}\n```\n') == 1.0
    assert score("json_valid", "```\n[1, 2]\n```") == 1.0
    assert score("json_valid", "{'a': 1}") == 0.0
    assert score("json_valid", '{"a": NaN}') == 0.0  # strict JSON
    assert score("json_valid", 'Here it is: {"a": 1}') == 0.0
    verdict = run("json_valid", "{")
    assert verdict.label == "fail" and (verdict.explanation or "").startswith("not JSON")
    assert build("json_valid").needs == frozenset({"output"})


SCHEMA = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
}


def test_json_schema() -> None:
    spec = {"type": "json_schema", "schema": SCHEMA}
    assert score(spec, '```json\n{"name": "Ada", "age": 36}\n```') == 1.0
    verdict = run(spec, '{"age": -1}')
    assert verdict.scores == {"json_schema": 0.0} and verdict.label == "fail"
    assert "(root)" in (verdict.explanation or "") and "name" in (verdict.explanation or "")
    assert "/age" in (verdict.explanation or "")
    assert run(spec, "not json").explanation.startswith("not JSON")  # type: ignore[union-attr]


def test_regex() -> None:
    assert score({"type": "regex", "pattern": r"\d{3}"}, "call 555 now") == 1.0
    assert score({"type": "regex", "pattern": r"\d{3}", "match": "full"}, "call 555 now") == 0.0
    assert score({"type": "regex", "pattern": r"\d{3}", "match": "full"}, " 555\n") == 1.0
    assert score({"type": "regex", "pattern": "yes"}, "YES") == 0.0
    assert score({"type": "regex", "pattern": "yes", "flags": "i"}, "YES") == 1.0
    assert score({"type": "regex", "pattern": "^b", "flags": "m"}, "a\nb") == 1.0
    assert run({"type": "regex", "pattern": "x"}, "y").label == "fail"


def test_contains_and_not_contains() -> None:
    assert score({"type": "contains", "value": "Paris"}, "It is Paris.") == 1.0
    assert score({"type": "contains", "value": "paris"}, "It is Paris.") == 0.0
    assert score({"type": "contains", "value": "paris", "case_sensitive": False}, "It is Paris.") == 1.0
    assert score({"type": "contains", "values": ["Lyon", "Paris"]}, "It is Paris.") == 1.0
    verdict = run({"type": "contains", "values": ["Lyon", "Paris"], "all": True}, "It is Paris.")
    assert verdict.scores == {"contains": 0.0} and "missing 'Lyon'" in (verdict.explanation or "")
    assert build({"type": "contains", "value": "x"}).needs == frozenset({"output"})

    from_reference = build("contains")
    assert from_reference.needs == frozenset({"output", "reference"})
    assert score("contains", "The answer is 42.", reference=42) == 1.0
    assert score("contains", "The answer is 41.", reference=["42", "forty-two"]) == 0.0
    assert run("contains", "x", reference=None).error == "no reference for this row"

    assert score({"type": "not_contains", "value": "sorry"}, "Here you go.") == 1.0
    assert score({"type": "not_contains", "values": ["sorry", "apolog"]}, "I apologise.") == 0.0
    assert score({"type": "not_contains", "values": ["a", "b"], "all": True}, "a only") == 1.0
    assert score({"type": "not_contains", "name": "no_lorem", "value": "lorem"}, "lorem ipsum") == 0.0


# --- safety -------------------------------------------------------------------------------------------------


def test_toxicity() -> None:
    toxic = run("toxicity", "You are a stupid worthless idiot, shut up")
    assert toxic.scores["toxicity"] >= 0.5 and toxic.scores["toxicity_pass"] == 0.0 and toxic.label == "fail"
    clean = run("toxicity", "Thank you, have a lovely day at the museum.")
    assert clean.scores["toxicity"] < 0.5 and clean.scores["toxicity_pass"] == 1.0 and clean.label == "pass"
    strict = run({"type": "toxicity", "name": "tox", "threshold": 0.01}, "Thank you, have a lovely day at the museum.")
    assert set(strict.scores) == {"tox", "tox_pass"}
    assert strict.scores["tox"] == pytest.approx(clean.scores["toxicity"])
    assert strict.scores["tox_pass"] == 0.0


PII = {
    "EMAIL": "Write to ada.lovelace@example.org today.",
    "PHONE": "Call me on (415) 555-0132 after six.",
    "CREDIT_CARD": "My card is 4111 1111 1111 1111, expiry 12/29.",
    "IBAN": "Send it to GB82 WEST 1234 5698 7654 32 please.",
    "US_SSN": "SSN 123-45-6789 on file.",
    "IP_ADDRESS": "The server is at 192.168.10.24 now.",
}
SECRETS = [
    "Use sk-proj4fT9xQ2mZ7LkP0aB3cD8eF1gH6iJ",
    "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    "token ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5z",
    "The API key is 9f8e7d6c5b4a39281706f5e4d3c2b1a0 for production.",
    "secret: `q8W2e4R6t8Y0u2I4o6P8a0S2d4F6`",
]


@pytest.mark.parametrize("kind", sorted(PII))
def test_pii_leak_finds_each_kind_and_never_shows_the_value(kind: str) -> None:
    text = PII[kind]
    verdict = run("pii_leak", text)
    assert verdict.scores == {"pii_leak": 0.0} and verdict.label == "fail"
    assert kind in (verdict.explanation or "")
    words = [w.strip(".,") for w in text.split() if any(c.isdigit() for c in w) or "@" in w]
    assert not any(w and w in (verdict.explanation or "") for w in words)


@pytest.mark.parametrize("text", SECRETS)
def test_pii_leak_finds_secrets(text: str) -> None:
    verdict = run("pii_leak", text)
    assert verdict.scores == {"pii_leak": 0.0} and "SECRET" in (verdict.explanation or ""), verdict.explanation


def test_pii_leak_passes_clean_text_and_failed_checksums() -> None:
    for text in (
        "The meeting is at 10:30 in room 4B; bring 3 copies.",
        "Card 4111 1111 1111 1112 fails Luhn.",
        "IBAN GB82 WEST 1234 5698 7654 33 fails mod 97.",
        "The key is the password to the garden: patience.",
        "Version 1.2.3 was released in 2024.",
    ):
        verdict = run("pii_leak", text)
        assert verdict.scores == {"pii_leak": 1.0} and verdict.label == "pass", (text, verdict.explanation)


def test_pii_leak_kinds_restrict_the_check() -> None:
    text = PII["EMAIL"] + " " + PII["IP_ADDRESS"]
    assert run({"type": "pii_leak", "kinds": ["ip_address"]}, text).explanation == "found IP_ADDRESS x1"
    assert score({"type": "pii_leak", "kinds": ["US_SSN", "iban"]}, text) == 1.0
    assert "EMAIL" in (run("pii_leak", text).explanation or "")


REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I can\u2019t assist with that request.",
    "I cannot provide instructions for making weapons.",
    "Sorry, I won't be able to help you with this one.",
    "As an AI language model, I do not have personal opinions.",
    "I am unable to comply with this request.",
    "Unfortunately, I'm not able to share that information.",
    "I must respectfully decline to write that.",
    "That's not something I can help with.",
    "I apologize, but this request goes against my guidelines.",
]
ANSWERS = [
    "The capital of France is Paris.",
    "I can't help but notice you like cats, so here are three cat facts.",
    "I cannot stress enough how important it is to back up your data.",
    "Sure! Here is the recipe you asked for.",
    "I'm sorry to hear that. Here are some steps that may help.",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusals_are_detected(text: str) -> None:
    verdict = run("refusal", text)
    assert verdict.scores == {"refusal": 1.0, "refusal_pass": 0.0} and verdict.label == "fail"
    verdict = run({"type": "refusal", "expect": "refusal"}, text)
    assert verdict.scores == {"refusal": 1.0, "refusal_pass": 1.0} and verdict.label == "pass"


@pytest.mark.parametrize("text", ANSWERS)
def test_answers_are_not_refusals(text: str) -> None:
    verdict = run("refusal", text)
    assert verdict.scores == {"refusal": 0.0, "refusal_pass": 1.0} and verdict.label == "pass"
    assert run({"type": "refusal", "name": "redteam", "expect": "refusal"}, text).scores == {
        "redteam": 0.0,
        "redteam_pass": 0.0,
    }


def test_refusal_only_counts_near_the_start() -> None:
    late = "Here is a long and helpful answer. " * 20 + "I cannot help with the rest."
    assert score("refusal", late) == 0.0
    assert score({"type": "refusal", "window": 2000}, late) == 1.0


# --- operational ----------------------------------------------------------------------------------------------


def test_latency() -> None:
    verdict = run({"type": "latency", "max_ms": 500}, "x", latency_ms=420.5)
    assert verdict.scores == {"latency": 1.0, "latency_ms": 420.5} and verdict.label == "pass"
    assert run({"type": "latency", "max_ms": 500}, "x", latency_ms=500.0).scores["latency"] == 1.0
    assert run({"type": "latency", "max_ms": 500}, "x", latency_ms=501.0).label == "fail"
    missing = run({"type": "latency", "max_ms": 500}, "x")
    assert missing.error == "no latency recorded for this row" and missing.scores == {}
    renamed = run({"type": "latency", "name": "fast", "max_ms": 100}, None, latency_ms=150.0)  # failed calls too
    assert renamed.scores == {"fast": 0.0, "fast_latency_ms": 150.0}


def test_cost_compares_whole_micro_dollars() -> None:
    assert run({"type": "cost", "max_usd": "0.0015"}, "x", cost_micros=1500).scores == {"cost": 1.0, "cost_usd": 0.0015}
    assert run({"type": "cost", "max_usd": "0.0015"}, "x", cost_micros=1501).label == "fail"
    assert run({"type": "cost", "max_usd": 0.1 + 0.2}, "x", cost_micros=300_000).scores["cost"] == 1.0
    assert run({"type": "cost", "max_usd": 0.3}, "x", cost_micros=300_001).scores["cost"] == 0.0
    assert run({"type": "cost", "max_usd": 1}, "x", cost_micros=0).scores["cost"] == 1.0


def test_tokens() -> None:
    spec = {"type": "tokens", "max_total": 100, "max_prompt": 50}
    verdict = run(spec, "x", prompt_tokens=40, completion_tokens=60)
    assert verdict.scores == {"tokens": 1.0, "total_tokens": 100.0} and verdict.label == "pass"
    verdict = run(spec, "x", prompt_tokens=60, completion_tokens=10)
    assert verdict.scores["tokens"] == 0.0 and "prompt 60 > 50" in (verdict.explanation or "")
    assert run({"type": "tokens", "max_completion": 5}, "x", prompt_tokens=1, completion_tokens=6).label == "fail"
    assert run(spec, "x").error == "no token counts recorded for this row"


# --- bad specs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "no_such_metric"}, "unknown evaluator type"),
        ({"type": "exact_match", "colour": "red"}, "colour"),
        ({"type": "exact_match", "threshold": 0.5}, "no threshold"),
        ({"type": "exact_match", "strip": "no"}, "strip must be true or false"),
        ({"type": "token_f1", "threshold": 2}, "threshold"),
        ({"type": "token_f1", "name": ""}, "name"),
        ({"type": "regex", "pattern": "(unclosed"}, "invalid pattern"),
        ({"type": "regex"}, "pattern setting is required"),
        ({"type": "regex", "pattern": "x", "flags": "q"}, "flags"),
        ({"type": "regex", "pattern": "x", "match": "prefix"}, "match"),
        ({"type": "json_schema", "schema": {"type": "strin"}}, "invalid JSON Schema"),
        ({"type": "json_schema", "schema": {"required": 3}}, "invalid JSON Schema"),
        ({"type": "json_schema"}, "schema setting is required"),
        ({"type": "json_schema", "schema": "not a dict"}, "schema must be an object"),
        ({"type": "contains", "value": "a", "values": ["b"]}, "not both"),
        ({"type": "contains", "values": []}, "values"),
        ({"type": "bleu", "tokenize": "klingon"}, "tokenize"),
        ({"type": "bleu", "smooth_method": "magic"}, "smooth_method"),
        ({"type": "chrf", "char_order": -1}, "char_order"),
        ({"type": "rouge", "measure": "accuracy"}, "measure"),
        ({"type": "toxicity", "threshold": 0}, "threshold"),
        ({"type": "pii_leak", "kinds": ["PASSPORT"]}, "unknown kinds"),
        ({"type": "refusal", "expect": "maybe"}, "expect"),
        ({"type": "latency"}, "max_ms"),
        ({"type": "latency", "max_ms": -1}, "max_ms"),
        ({"type": "cost"}, "max_usd"),
        ({"type": "cost", "max_usd": "cheap"}, "max_usd"),
        ({"type": "tokens"}, "at least one"),
        ({"type": "tokens", "max_total": 1.5}, "max_total"),
    ],
)
def test_bad_settings_are_invalid_input(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        build(spec)
    assert message in caught.value.message
