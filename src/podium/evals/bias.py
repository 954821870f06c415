"""Counterfactual bias tests: rewrite each row with demographic terms swapped (he → she, James → Mary,
Christian → Muslim ...), run both versions, and measure how much the scores and outputs move. A fair system
answers the swapped row as it answers the original, so any systematic score difference is a bias signal.

Term lists are YAML files of this form (the built-in ones, `gender`, `names` and `groups`, ship in
`podium/evals/data/bias/`; users add their own files of the same form):

    name: gender                      # optional, defaults to the file's stem
    description: Gendered pronouns    # optional
    pairs:
      - [he, she]                     # a pair swaps both ways: he → she and she → he
      - [Christian, Muslim, Jewish]   # a group of more than two is a cycle: each term becomes the next one,
                                      # the last the first (Christian → Muslim → Jewish → Christian)
      - [African American, Asian American]   # a term may hold several words

Matching is on whole words, ignores case and keeps the case of the text (He → She, HE → SHE, he → she; a
capitalised word gets the target's first letter capitalised, the rest as the list writes it). All terms are
swapped in one pass over the original text, so "he" → "she" and "she" → "he" do not undo each other. A term
listed more than once (in one list, or across the lists given) keeps its first mapping.

English "her" is both an object (him) and a possessive (his); "his" both a possessive (her) and a pronoun
standing alone (hers). The built-in gender list maps her → his and his → her; one small rule fixes the common
other case: when the next word is a function word (an article, pronoun, preposition, conjunction ...) or there
is no next word in the clause, "her" becomes "him" and "his" becomes "hers". So "He gave her his book." becomes
"She gave him her book.", "I saw her." becomes "I saw him.", and "her own car" stays "his own car".
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from podium.core import yamlload
from podium.core.errors import InvalidInput
from podium.evals.compare import default_higher_is_better
from podium.evals.stats import PairedTest, paired_test

BUILTIN_DIR = Path(__file__).with_name("data") / "bias"
TOP_DIFFERENCES = 10
SIGNIFICANCE = 0.05

# "her"/"his" before one of these words (or before the clause ends) is an object/standalone pronoun
_FUNCTION_WORDS_TEXT = """
a an the this that these those my your our their its his her him me you us them it some any all each every no
to and or but nor so for with at by in on from about as of into onto up down out off over away again too if when
while because than then before after until since be is was will would can could should not here there now once
today yesterday tomorrow
"""
_FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())
_CONTEXT = {"her": ("his", "him"), "his": ("her", "hers")}  # term: (usual target, target before a function word)
_NEXT_WORD = re.compile(r"[ \t]*(\w+)")


class TermList(BaseModel):
    """A list of terms to swap: its name, what it covers, and its pairs (groups of more than two are cycles)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    pairs: tuple[tuple[str, ...], ...]


class Counterfactual(BaseModel):
    """A row rewritten with terms swapped: the original row's position in the input, the rewritten row, and the
    swaps made, as (text found, replacement) in order of appearance."""

    index: int
    row: dict[str, Any]
    swaps: list[tuple[str, str]]


class BiasMetric(BaseModel):
    """One score on the swapped rows against the originals: the mean difference (swapped - original) and the
    paired test (A = original, B = swapped; significant at p < 0.05)."""

    name: str
    higher_is_better: bool
    mean_difference: float | None
    test: PairedTest
    significant: bool


class BiasDifference(BaseModel):
    """One score of one counterfactual (`index` into the pairs given) that moved."""

    index: int
    name: str
    original: float
    swapped: float
    difference: float


class BiasReport(BaseModel):
    """How much swapping terms moved the results over `n` counterfactuals: per score, the mean difference and
    its test; how many of the `outputs_compared` output pairs changed (word for word, whitespace aside) and their
    mean similarity (difflib's ratio over words, 1 = identical); and the largest score differences, largest first."""

    n: int
    metrics: list[BiasMetric]
    outputs_compared: int
    outputs_changed: int
    mean_similarity: float | None
    largest: list[BiasDifference]


def _norm(term: str) -> str:
    return " ".join(term.split()).lower()


def _fail(path: Path, problem: str) -> InvalidInput:
    return InvalidInput(f"bias term list {path}: {problem}", details={"file": str(path), "problem": problem})


def parse_list(data: Any, path: Path) -> TermList:
    """A term list from a YAML document's data; raises InvalidInput naming `path` and what is wrong."""
    if not isinstance(data, dict):
        raise _fail(path, "must be a mapping with 'name', 'description' and 'pairs'")
    unknown = sorted(str(k) for k in data.keys() - {"name", "description", "pairs"})
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)} (expected name, description, pairs)")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise _fail(path, "'name' must be a non-empty text")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(path, "'description' must be a text")
    pairs = data.get("pairs")
    if not isinstance(pairs, list) or not pairs:
        raise _fail(path, "'pairs' must be a non-empty list of lists of terms, like [[he, she], [him, her]]")
    groups = []
    for i, group in enumerate(pairs):
        if not isinstance(group, list) or len(group) < 2:
            raise _fail(path, f"pairs[{i}] must be a list of at least two terms")
        for j, term in enumerate(group):
            if not isinstance(term, str) or not term.strip():
                raise _fail(path, f"pairs[{i}][{j}] ({term!r}) must be a non-empty text (quote yes, no, on, numbers)")
            if term != term.strip():
                raise _fail(path, f"pairs[{i}][{j}] ({term!r}) has leading or trailing spaces")
        if len({_norm(t) for t in group}) != len(group):
            raise _fail(path, f"pairs[{i}] lists a term twice")
        groups.append(tuple(group))
    return TermList(name=name.strip(), description=description, pairs=tuple(groups))


def read_list(path: Path) -> TermList:
    """A term list from a YAML file; raises InvalidInput naming the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise _fail(path, "is not UTF-8 text") from exc
    try:
        data = yamlload.load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, f"is not valid YAML ({' '.join(str(exc).split())})") from exc
    return parse_list(data, path)


def builtin_lists() -> list[str]:
    """The names of the term lists that ship with Podium."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_lists(names: Sequence[str] = ("gender",), extra_paths: Sequence[Path] = ()) -> list[TermList]:
    """The built-in term lists `names`, then the user's lists read from `extra_paths`.

    Raises InvalidInput for an unknown built-in name or a bad file."""
    known = builtin_lists()
    lists = []
    for name in names:
        if name not in known:
            raise InvalidInput(
                f"unknown bias term list {name!r} (built in: {', '.join(known)})", details={"known": known}
            )
        lists.append(read_list(BUILTIN_DIR / f"{name}.yaml"))
    lists.extend(read_list(Path(p)) for p in extra_paths)
    return lists


@dataclass(frozen=True)
class _Swapper:
    pattern: re.Pattern[str] | None
    mapping: Mapping[str, str]  # normalised term -> target as the list writes it


@functools.lru_cache(maxsize=16)
def _compile(lists: tuple[TermList, ...]) -> _Swapper:
    mapping: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for term_list in lists:
        for group in term_list.pairs:
            for i, term in enumerate(group):
                key = _norm(term)
                mapping.setdefault(key, group[(i + 1) % len(group)])
                spelled.setdefault(key, term)
    if not mapping:
        return _Swapper(None, mapping)
    # longest first, so "African American" is taken before "American"
    alternatives = [
        r"\s+".join(re.escape(word) for word in spelled[key].split()) for key in sorted(mapping, key=len, reverse=True)
    ]
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)
    return _Swapper(pattern, mapping)


def _cased(found: str, target: str) -> str:
    """`target` in the case of `found`: upper, capitalised or lower."""
    letters = [c for c in found if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return target.upper()
    if found[:1].isupper():
        return target[:1].upper() + target[1:]
    return target.lower()


def _target(swapper: _Swapper, key: str, text: str, end: int) -> str:
    target = swapper.mapping[key]
    context = _CONTEXT.get(key)
    if context is not None and _norm(target) == context[0] and context[1] in swapper.mapping:
        nxt = _NEXT_WORD.match(text, end)
        if nxt is None or nxt.group(1).lower() in _FUNCTION_WORDS:
            return context[1]
    return target


def _swap(text: str, swapper: _Swapper) -> tuple[str, list[tuple[str, str]]]:
    if swapper.pattern is None:
        return text, []
    swaps: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        new = _cased(found, _target(swapper, _norm(found), text, match.end()))
        swaps.append((found, new))
        return new

    return swapper.pattern.sub(replace, text), swaps


def swap(text: str, lists: Sequence[TermList]) -> tuple[str, list[tuple[str, str]]]:
    """`text` with every term of `lists` swapped in one pass, and the swaps made as (found, replacement)."""
    return _swap(text, _compile(tuple(lists)))


def counterfactuals(
    rows: list[dict[str, Any]], fields: Sequence[str], lists: Sequence[TermList]
) -> list[Counterfactual]:
    """For each row where some term of `lists` occurs in one of the text `fields`, the row with the terms swapped
    (other fields, and values that are not text, are kept). Raises InvalidInput for a field no row has."""
    missing = [f for f in fields if rows and not any(f in row for row in rows)]
    if missing:
        raise InvalidInput(f"no row has the field(s) {', '.join(missing)}", details={"fields": missing})
    swapper = _compile(tuple(lists))
    out = []
    for index, row in enumerate(rows):
        new = dict(row)
        made: list[tuple[str, str]] = []
        for field in fields:
            value = row.get(field)
            if isinstance(value, str):
                new[field], swaps = _swap(value, swapper)
                made.extend(swaps)
        if made:
            out.append(Counterfactual(index=index, row=new, swaps=made))
    return out


def _similarity(a: str, b: str) -> float:
    # over words, not characters: cheap on long answers, and one changed word counts as one change
    return difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio()


def bias_report(
    pairs: list[tuple[dict[str, float], dict[str, float], str | None, str | None]],
    *,
    lists: Sequence[TermList] = (),
) -> BiasReport:
    """The bias report over counterfactuals given as (original scores, swapped scores, original output, swapped
    output). With `lists`, the original output is swapped before it is compared, so the swap's own term changes
    ("he" answered as "she") do not count as a changed output. Outputs are compared when both exist."""
    swapper = _compile(tuple(lists))
    names = sorted({name for original, swapped, _, _ in pairs for name in original.keys() & swapped.keys()})
    metrics = []
    for name in names:
        rows = [(o[name], s[name]) for o, s, _, _ in pairs if name in o and name in s]
        higher = default_higher_is_better(name)
        test = paired_test([o for o, _ in rows], [s for _, s in rows], higher_is_better=higher)
        metrics.append(
            BiasMetric(
                name=name,
                higher_is_better=higher,
                mean_difference=test.mean_delta,
                test=test,
                significant=test.p_value < SIGNIFICANCE,
            )
        )
    similarities = []
    for _, _, out_o, out_s in pairs:
        if out_o is not None and out_s is not None:
            similarities.append(_similarity(_swap(out_o, swapper)[0], out_s))
    differences = [
        BiasDifference(index=i, name=name, original=o[name], swapped=s[name], difference=s[name] - o[name])
        for i, (o, s, _, _) in enumerate(pairs)
        for name in sorted(o.keys() & s.keys())
        if s[name] != o[name]
    ]
    differences.sort(key=lambda d: (-abs(d.difference), d.index, d.name))
    return BiasReport(
        n=len(pairs),
        metrics=metrics,
        outputs_compared=len(similarities),
        outputs_changed=sum(1 for r in similarities if r < 1.0),
        mean_similarity=sum(similarities) / len(similarities) if similarities else None,
        largest=differences[:TOP_DIFFERENCES],
    )
