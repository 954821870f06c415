"""Reference metrics: the output compared with the row's reference answer (one string, or a list of acceptable
ones: the output is scored against the best), and format checks of the output alone (JSON, JSON Schema, regex,
contains).

The n-gram metrics are the reference implementations, not re-implementations, so the numbers match published
ones: BLEU and chrF from `sacrebleu`, ROUGE from Google's `rouge-score`, edit distance from `rapidfuzz`. They
live in the optional `podium[evals]` extra and are imported when an evaluator using them is built.
"""

from __future__ import annotations

import importlib
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from podium.evals.evaluators.base import Models, Sample, Verdict, register

if TYPE_CHECKING:
    from jsonschema_rs import Validator
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.chrf import CHRF

OUTPUT = frozenset({"output"})
OUTPUT_AND_REFERENCE = frozenset({"output", "reference"})

# --- shared by the evaluator modules --------------------------------------------------------------------


def require_module(module: str, what: str) -> Any:
    """Import an optional dependency, or say how to install it (a `ValueError`, so `build` reports it as a bad
    setting of the evaluator instead of a crash)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{what} needs the {module!r} package: install podium[evals]") from None


def check_name(name: object) -> str:
    """The `name` setting: a non-empty string (it names the scores)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string")
    return name


def check_threshold(value: object, setting: str = "threshold") -> float | None:
    """An optional pass mark for a score in [0, 1]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{setting} must be a number between 0 and 1")
    return float(value)


def check_flag(value: object, setting: str) -> bool:
    """A boolean setting (YAML `yes`/`no` arrive as booleans; strings like "no" are refused, not truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{setting} must be true or false")
    return value


def pass_label(score: float, threshold: float | None) -> str | None:
    """`pass`/`fail` against the threshold, or no label when there is none."""
    if threshold is None:
        return None
    return "pass" if score >= threshold else "fail"


def references(reference: Any) -> list[str] | str:
    """The row's acceptable answers as strings, or an error message when there are none."""
    if reference is None:
        return "no reference for this row"
    if isinstance(reference, str):
        return [reference]
    if isinstance(reference, bool | int | float):
        return [str(reference)]
    if isinstance(reference, list | tuple):
        found = [str(r) if isinstance(r, bool | int | float) else r for r in reference if r is not None]
        if not all(isinstance(r, str) for r in found):
            return "the reference must be a string or a list of strings"
        return found or "no reference for this row"
    return "the reference must be a string or a list of strings"


# --- SQuAD normalisation --------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation, drop the articles a/an/the, collapse spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def token_f1(prediction: str, truth: str) -> tuple[float, float, float]:
    """SQuAD token F1 (with precision and recall) over normalised tokens; two empty answers agree fully."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not pred or not gold:
        same = float(pred == gold)
        return same, same, same
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall), precision, recall


# --- output against reference ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class ReferenceMetric:
    """Base of the single-score metrics of output against reference: each reference scored with `score`, the
    best kept. `threshold` (optional) turns the score into a pass/fail label."""

    name: str = "reference"
    threshold: float | None = None
    needs: frozenset[str] = field(default=OUTPUT_AND_REFERENCE, init=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        self.threshold = check_threshold(self.threshold)

    def score(self, output: str, reference: str) -> float:
        """The score of the output against one reference."""
        raise NotImplementedError

    def explain(self, output: str, reference: str, score: float) -> str:
        """A short explanation of the best score."""
        return f"{self.name} {score:.3f}"

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        if sample.output is None:
            return Verdict(error="no output for this row")
        refs = references(sample.reference)
        if isinstance(refs, str):
            return Verdict(error=refs)
        best, best_ref = max(((self.score(sample.output, r), r) for r in refs), key=lambda pair: pair[0])
        return Verdict(
            {self.name: best},
            label=pass_label(best, self.threshold),
            explanation=self.explain(sample.output, best_ref, best),
        )


def _match_threshold(threshold: float | None) -> float:
    """Match scores are 1 or 0, labelled pass or fail: a threshold setting would mean nothing."""
    if threshold is not None:
        raise ValueError("a match scores 1 or 0 and takes no threshold")
    return 1.0


@dataclass(kw_only=True)
class ExactMatch(ReferenceMetric):
    """1 when the output equals a reference (surrounding whitespace ignored unless `strip` is false)."""

    name: str = "exact_match"
    strip: bool = True
    case_sensitive: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.strip = check_flag(self.strip, "strip")
        self.case_sensitive = check_flag(self.case_sensitive, "case_sensitive")
        self.threshold = _match_threshold(self.threshold)

    def _prepare(self, text: str) -> str:
        text = text.strip() if self.strip else text
        return text if self.case_sensitive else text.casefold()

    def score(self, output: str, reference: str) -> float:
        return float(self._prepare(output) == self._prepare(reference))

    def explain(self, output: str, reference: str, score: float) -> str:
        return "the output equals a reference" if score else "the output equals no reference"


@dataclass(kw_only=True)
class NormalizedMatch(ReferenceMetric):
    """1 when the output equals a reference after SQuAD normalisation."""

    name: str = "normalized_match"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.threshold = _match_threshold(self.threshold)

    def score(self, output: str, reference: str) -> float:
        return float(normalize_answer(output) == normalize_answer(reference))

    def explain(self, output: str, reference: str, score: float) -> str:
        if score:
            return "the normalised output equals a reference"
        return f"normalised output {normalize_answer(output)[:80]!r} equals no reference"


@dataclass(kw_only=True)
class TokenF1(ReferenceMetric):
    """SQuAD token F1 of the output against the best reference."""

    name: str = "token_f1"

    def score(self, output: str, reference: str) -> float:
        return token_f1(output, reference)[0]

    def explain(self, output: str, reference: str, score: float) -> str:
        _, precision, recall = token_f1(output, reference)
        return f"token F1 {score:.3f} (precision {precision:.3f}, recall {recall:.3f})"


@dataclass(kw_only=True)
class Levenshtein(ReferenceMetric):
    """Normalised Levenshtein similarity (1 - distance / longer length) to the closest reference."""

    name: str = "levenshtein"
    normalize: bool = False  # compare SQuAD-normalised texts
    _similarity: Callable[[str, str], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.normalize = check_flag(self.normalize, "normalize")
        self._similarity = require_module("rapidfuzz.distance.Levenshtein", "levenshtein").normalized_similarity

    def score(self, output: str, reference: str) -> float:
        if self.normalize:
            output, reference = normalize_answer(output), normalize_answer(reference)
        return float(self._similarity(output, reference))

    def explain(self, output: str, reference: str, score: float) -> str:
        return f"edit similarity {score:.3f} to the closest reference"


@dataclass(kw_only=True)
class Bleu:
    """Sentence BLEU from sacrebleu against all the references at once (BLEU's own multi-reference form),
    divided by 100. Settings are sacrebleu's `sentence_bleu` ones."""

    name: str = "bleu"
    threshold: float | None = None
    tokenize: str = "13a"
    lowercase: bool = False
    smooth_method: str = "exp"
    smooth_value: float | None = None
    use_effective_order: bool = True
    needs: frozenset[str] = field(default=OUTPUT_AND_REFERENCE, init=False)
    _metric: BLEU = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        self.threshold = check_threshold(self.threshold)
        metrics = require_module("sacrebleu.metrics", "bleu")
        if self.tokenize not in metrics.BLEU.TOKENIZERS:
            raise ValueError(f"tokenize must be one of {', '.join(metrics.BLEU.TOKENIZERS)}")
        if self.smooth_method not in metrics.BLEU.SMOOTH_DEFAULTS:
            raise ValueError(f"smooth_method must be one of {', '.join(metrics.BLEU.SMOOTH_DEFAULTS)}")
        if self.smooth_value is not None and (
            isinstance(self.smooth_value, bool) or not isinstance(self.smooth_value, int | float)
        ):
            raise ValueError("smooth_value must be a number")
        try:  # what sacrebleu.sentence_bleu does, once instead of per row
            self._metric = metrics.BLEU(
                lowercase=check_flag(self.lowercase, "lowercase"),
                tokenize=self.tokenize,
                smooth_method=self.smooth_method,
                smooth_value=self.smooth_value,
                effective_order=check_flag(self.use_effective_order, "use_effective_order"),
            )
        except ImportError as exc:  # tokenizers like ja-mecab need packages of their own
            raise ValueError(f"tokenize {self.tokenize!r}: {exc}") from None

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        return sentence_verdict(self._metric, self.name, self.threshold, sample)


@dataclass(kw_only=True)
class Chrf:
    """Sentence chrF from sacrebleu (chrF++ with `word_order: 2`) against the best reference, divided by 100.
    Settings are sacrebleu's `sentence_chrf` ones."""

    name: str = "chrf"
    threshold: float | None = None
    char_order: int = 6
    word_order: int = 0
    beta: int = 2
    lowercase: bool = False
    remove_whitespace: bool = True
    eps_smoothing: bool = False
    needs: frozenset[str] = field(default=OUTPUT_AND_REFERENCE, init=False)
    _metric: CHRF = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        self.threshold = check_threshold(self.threshold)
        metrics = require_module("sacrebleu.metrics", "chrf")
        for setting, low in (("char_order", 0), ("word_order", 0), ("beta", 1)):
            value = getattr(self, setting)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{setting} must be an integer of at least {low}")
        if self.char_order + self.word_order == 0:
            raise ValueError("char_order and word_order cannot both be 0")
        self._metric = metrics.CHRF(
            char_order=self.char_order,
            word_order=self.word_order,
            beta=self.beta,
            lowercase=check_flag(self.lowercase, "lowercase"),
            whitespace=not check_flag(self.remove_whitespace, "remove_whitespace"),
            eps_smoothing=check_flag(self.eps_smoothing, "eps_smoothing"),
        )

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        return sentence_verdict(self._metric, self.name, self.threshold, sample)


def sentence_verdict(metric: Any, name: str, threshold: float | None, sample: Sample) -> Verdict:
    """A sacrebleu metric's sentence score of the output against every reference, divided by 100."""
    if sample.output is None:
        return Verdict(error="no output for this row")
    refs = references(sample.reference)
    if isinstance(refs, str):
        return Verdict(error=refs)
    result = metric.sentence_score(sample.output, refs)
    score = result.score / 100
    return Verdict({name: score}, label=pass_label(score, threshold), explanation=str(result))


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@dataclass(kw_only=True)
class Rouge:
    """ROUGE-1, ROUGE-2 and ROUGE-L from Google's rouge-score, each against its best reference. The scores are
    `rouge1`, `rouge2`, `rougeL`, prefixed `<name>_` when the evaluator is given a name."""

    name: str = "rouge"
    measure: Literal["fmeasure", "precision", "recall"] = "fmeasure"
    use_stemmer: bool = False
    needs: frozenset[str] = field(default=OUTPUT_AND_REFERENCE, init=False)
    _scorer: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        if self.measure not in ("fmeasure", "precision", "recall"):
            raise ValueError("measure must be fmeasure, precision or recall")
        scorer = require_module("rouge_score.rouge_scorer", "rouge")
        self._scorer = scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=check_flag(self.use_stemmer, "use_stemmer"))

    def score_names(self) -> dict[str, str]:
        """The name of each ROUGE type's score."""
        prefix = "" if self.name == "rouge" else f"{self.name}_"
        return {t: prefix + t for t in ROUGE_TYPES}

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        if sample.output is None:
            return Verdict(error="no output for this row")
        refs = references(sample.reference)
        if isinstance(refs, str):
            return Verdict(error=refs)
        per_ref = [self._scorer.score(ref, sample.output) for ref in refs]  # score(target, prediction)
        names = self.score_names()
        scores = {names[t]: max(float(getattr(s[t], self.measure)) for s in per_ref) for t in ROUGE_TYPES}
        shown = ", ".join(f"{t} {scores[names[t]]:.3f}" for t in ROUGE_TYPES)
        return Verdict(scores, explanation=f"{self.measure}: {shown}")


# --- checks of the output alone ---------------------------------------------------------------------------

_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_-]{0,20}[ \t]*\n(.*?)\n?[ \t]*```\s*\Z", re.DOTALL)


def parse_json(text: str) -> tuple[Any, str | None]:
    """The JSON value in the text (a fence around the whole text, such as ```json, is dropped) and no error, or
    None and why it does not parse. Strict JSON: no NaN, no trailing commas."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError as exc:
        return None, str(exc)


@dataclass(kw_only=True)
class JsonValid:
    """1 when the output parses as JSON."""

    name: str = "json_valid"
    needs: frozenset[str] = field(default=OUTPUT, init=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        if sample.output is None:
            return Verdict(error="no output for this row")
        _, error = parse_json(sample.output)
        if error is not None:
            return Verdict({self.name: 0.0}, label="fail", explanation=f"not JSON: {error}")
        return Verdict({self.name: 1.0}, label="pass", explanation="valid JSON")


def _pointer(path: Sequence[str | int]) -> str:
    """A JSON Pointer of an instance path (`/items/0/name`), `(root)` for the whole document."""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path) if path else "(root)"


@dataclass(kw_only=True)
class JsonSchema:
    """1 when the output parses as JSON and matches `schema` (a JSON Schema, checked when the evaluator is
    built); the explanation lists the first errors."""

    name: str = "json_schema"
    schema: dict[str, Any] | None = None
    max_errors: int = 3
    needs: frozenset[str] = field(default=OUTPUT, init=False)
    _validator: Validator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        if self.schema is None:
            raise ValueError("the schema setting is required (a JSON Schema object)")
        if not isinstance(self.schema, dict):
            raise ValueError("schema must be an object (a JSON Schema)")
        if isinstance(self.max_errors, bool) or not isinstance(self.max_errors, int) or self.max_errors < 1:
            raise ValueError("max_errors must be a positive integer")
        from podium.core.jsonschemas import compile_schema  # imported on use, as the other evaluators' libraries

        try:
            self._validator = compile_schema(self.schema)
        except ValueError as exc:
            raise ValueError(f"invalid JSON Schema: {exc}") from None

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        if sample.output is None:
            return Verdict(error="no output for this row")
        value, error = parse_json(sample.output)
        if error is not None:
            return Verdict({self.name: 0.0}, label="fail", explanation=f"not JSON: {error}")
        errors = []
        for found in self._validator.iter_errors(value):
            errors.append(f"{_pointer(found.instance_path)}: {found.message}")
            if len(errors) > self.max_errors:
                break
        if not errors:
            return Verdict({self.name: 1.0}, label="pass", explanation="matches the schema")
        shown = "; ".join(errors[: self.max_errors]) + ("; ..." if len(errors) > self.max_errors else "")
        return Verdict({self.name: 0.0}, label="fail", explanation=f"does not match the schema: {shown}")


_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}


@dataclass(kw_only=True)
class Regex:
    """1 when `pattern` is found in the output (`match: full`: when it matches the whole output, surrounding
    whitespace ignored). `flags` are letters: i (ignore case), m (multiline), s (dot matches newline),
    x (verbose), a (ASCII)."""

    name: str = "regex"
    pattern: str | None = None
    flags: str = ""
    match: Literal["search", "full"] = "search"
    needs: frozenset[str] = field(default=OUTPUT, init=False)
    _compiled: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError("the pattern setting is required (a regular expression)")
        if not isinstance(self.flags, str) or any(f not in _REGEX_FLAGS for f in self.flags):
            raise ValueError(f"flags must be letters among {''.join(_REGEX_FLAGS)}")
        if self.match not in ("search", "full"):
            raise ValueError("match must be search or full")
        bits = 0
        for letter in self.flags:
            bits |= _REGEX_FLAGS[letter]
        try:
            self._compiled = re.compile(self.pattern, bits)
        except re.error as exc:
            raise ValueError(f"invalid pattern {self.pattern!r}: {exc}") from None

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        if sample.output is None:
            return Verdict(error="no output for this row")
        if self.match == "full":
            found = self._compiled.fullmatch(sample.output.strip()) is not None
        else:
            found = self._compiled.search(sample.output) is not None
        if self.match == "full":
            explanation = f"the pattern {'matches' if found else 'does not match'} the whole output"
        else:
            explanation = f"the pattern is {'found' if found else 'not found'} in the output"
        return Verdict({self.name: float(found)}, label="pass" if found else "fail", explanation=explanation)


@dataclass(kw_only=True)
class Contains:
    """1 when the output contains `value` (or any of `values`; all of them with `all: true`). Without a value
    the row's reference is used (one string, or a list of acceptable strings)."""

    name: str = "contains"
    value: str | None = None
    values: list[str] | None = None
    all: bool = False
    case_sensitive: bool = True
    needs: frozenset[str] = field(default=OUTPUT, init=False)
    negate: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.name = check_name(self.name)
        self.all = check_flag(self.all, "all")
        self.case_sensitive = check_flag(self.case_sensitive, "case_sensitive")
        if self.value is not None and self.values is not None:
            raise ValueError("give value or values, not both")
        if self.value is not None and (not isinstance(self.value, str) or not self.value):
            raise ValueError("value must be a non-empty string")
        if self.values is not None and (
            not isinstance(self.values, list)
            or not self.values
            or not all(isinstance(v, str) and v for v in self.values)
        ):
            raise ValueError("values must be a non-empty list of non-empty strings")
        if self.value is None and self.values is None:
            self.needs = OUTPUT_AND_REFERENCE

    def wanted(self, sample: Sample) -> list[str] | str:
        """The strings to look for, or an error message."""
        if self.value is not None:
            return [self.value]
        if self.values is not None:
            return self.values
        refs = references(sample.reference)
        if isinstance(refs, list) and not all(refs):
            return "the reference is an empty string"
        return refs

    async def evaluate(self, sample: Sample, models: Models) -> Verdict:
        if sample.output is None:
            return Verdict(error="no output for this row")
        wanted = self.wanted(sample)
        if isinstance(wanted, str):
            return Verdict(error=wanted)
        output = sample.output if self.case_sensitive else sample.output.casefold()
        present = [w for w in wanted if (w if self.case_sensitive else w.casefold()) in output]
        contains = len(present) == len(wanted) if self.all else bool(present)
        passed = contains != self.negate
        missing = [w for w in wanted if w not in present]
        if present and missing:
            explanation = f"found {_quoted(present)}; missing {_quoted(missing)}"
        elif present:
            explanation = f"found {_quoted(present)}"
        else:
            explanation = f"found none of {_quoted(wanted)}"
        return Verdict({self.name: float(passed)}, label="pass" if passed else "fail", explanation=explanation)


def _quoted(values: list[str], limit: int = 5) -> str:
    """A short listing of strings for an explanation."""
    shown = ", ".join(repr(v[:60]) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


@dataclass(kw_only=True)
class NotContains(Contains):
    """1 when the output does not contain `value` (none of `values`; with `all: true`, not all of them): the
    exact opposite of `contains` with the same settings."""

    name: str = "not_contains"
    negate: bool = field(default=True, init=False)


register("exact_match", ExactMatch, "1 when the output equals a reference answer")
register("normalized_match", NormalizedMatch, "1 when the output equals a reference after SQuAD normalisation")
register("token_f1", TokenF1, "SQuAD token F1 of the output against the reference answer")
register("bleu", Bleu, "sentence BLEU (sacrebleu) against the reference answers, 0 to 1")
register("chrf", Chrf, "sentence chrF / chrF++ (sacrebleu) against the reference answers, 0 to 1")
register("rouge", Rouge, "ROUGE-1, ROUGE-2 and ROUGE-L (rouge-score) against the reference answers")
register("levenshtein", Levenshtein, "normalised Levenshtein similarity to the closest reference answer")
register("json_valid", JsonValid, "1 when the output parses as JSON")
register("json_schema", JsonSchema, "1 when the output is JSON matching a JSON Schema")
register("regex", Regex, "1 when a regular expression matches the output")
register("contains", Contains, "1 when the output contains a string (or the reference answer)")
register("not_contains", NotContains, "1 when the output does not contain a string")
