"""The dataset preparation steps, each on crafted rows with known answers, driven in batches of three rows
(as a pipeline would, but smaller) so every step proves it streams, and its output schema is what it said."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from typing import Any

import pyarrow as pa
import pytest
import tokenizers

import podium.data.steps.chat
import podium.data.steps.chunk
import podium.data.steps.dedup
import podium.data.steps.langid
import podium.data.steps.pii
import podium.data.steps.quality
import podium.data.steps.split
import podium.data.steps.text
import podium.data.steps.tokens  # noqa: F401  (each module registers its steps)
from podium.core.errors import InvalidInput, NotFound, validated
from podium.data.steps.base import STEPS, Step, StepContext
from podium.data.steps.pii import iban_ok, luhn_ok
from tests.models_fixtures import minilm_dir


class MiniLM:
    """The real all-MiniLM-L6-v2 tokenizer, as steps use tokenizers."""

    def __init__(self) -> None:
        self.tok = tokenizers.Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.refs: list[str] = []

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return str(self.tok.decode(ids))

    def count(self, text: str) -> int:
        return len(self.encode_batch([text])[0])


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


def with_tokenizer(tok: MiniLM) -> StepContext:
    def load(ref: str) -> MiniLM:
        tok.refs.append(ref)
        return tok

    return StepContext(tokenizer=load)


def make(name: str, cfg: dict[str, Any], ctx: StepContext | None = None) -> Step:
    return STEPS[name](STEPS[name].Config(**cfg), ctx or StepContext(), prefix="steps[0]")


def run(
    name: str, cfg: dict[str, Any], table: pa.Table, ctx: StepContext | None = None, batch: int = 3
) -> tuple[pa.Table, Step]:
    """The step over `table` in batches of `batch` rows, then its held-back rows; every output batch checked
    against the schema the step announced."""
    step = make(name, cfg, ctx)
    schema = step.output_schema(table.schema)
    outs = []
    for at in range(0, table.num_rows, batch):
        out = step.apply(table.slice(at, batch), at)
        assert out.schema.equals(schema), (out.schema, schema)
        outs.append(out)
    tail = step.finish()
    if tail is not None:
        assert tail.schema.equals(schema)
        outs.append(tail)
    result = pa.concat_tables(outs) if outs else schema.empty_table()
    assert result.schema.equals(schema)
    json.dumps(step.report())  # recorded in lineage as JSON
    return result, step


def config_field(name: str, cfg: dict[str, Any]) -> str:
    """The field a bad setting is reported under (as the pipeline reports pydantic errors)."""
    with pytest.raises(InvalidInput) as err:
        validated(STEPS[name].Config, cfg, f"step {name!r}", prefix="steps[0].")
    return str(err.value.details["field"])


def schema_field(name: str, cfg: dict[str, Any], schema: pa.Schema, ctx: StepContext | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as err:
        make(name, cfg, ctx).output_schema(schema)
    return err.value


def texts(table: pa.Table, column: str = "text") -> list[Any]:
    return table.column(column).to_pylist()


# --- normalize --------------------------------------------------------------------------------------------


def test_normalize_cleans_controls_unicode_and_whitespace() -> None:
    table = pa.table(
        {
            "text": [
                "  Hello\u200b   wor\x07ld \t!  \r\n\n\n\n  Next\u00a0paragraph\u2028line\x0cpage  ",
                "already clean",
                None,
                "ﬁne \uff26\uff55\uff4c\uff4c e\u0301",
                "tabs\tand\u00adsoft hyphen\ufeff",
            ],
            "id": [1, 2, 3, 4, 5],
        }
    )
    out, step = run("normalize", {}, table)
    assert texts(out) == [
        "Hello world !\n\nNext paragraph\nline\npage",
        "already clean",
        None,
        "ﬁne \uff26\uff55\uff4c\uff4c \u00e9",  # NFC composes, keeps compatibility characters
        "tabs andsoft hyphen",
    ]
    assert texts(out, "id") == [1, 2, 3, 4, 5]
    assert step.report()["rows_changed"] == {"text": 3}

    out, _ = run("normalize", {"unicode": "NFKC", "whitespace": False}, table.slice(3, 1))
    assert texts(out) == ["fine Full \u00e9"]
    out, _ = run("normalize", {"control": False, "whitespace": False, "unicode": None}, table)
    assert texts(out) == texts(table)


def test_normalize_html_keeps_the_article_and_drops_boilerplate() -> None:
    article = (
        "The city council voted on Tuesday to approve a new plan for the park, which will be built over the "
        "next two years with money that the state has set aside for this kind of project in the region. It is "
        "the first new park in the area for more than twenty years."
    )
    second = (
        "Residents said that they were happy with the decision and that they have been waiting for a long "
        "time for the park to be finished, because the children of the town have nowhere else to play when "
        "the weather is good and the schools are closed for the summer."
    )
    page = (
        "<html><head><title>News</title><script>var tracking = 1;</script></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/about'>About us</a> | <a href='/login'>Log in</a></nav>"
        f"<article><h1>Park plan approved</h1><p>{article}</p><p>{second}</p></article>"
        "<footer><a href='/privacy'>Privacy</a> Copyright 2024</footer></body></html>"
    )
    short = "<div><p>Hello <b>world</b></p><script>alert(1)</script><p>Second</p></div>"
    table = pa.table({"text": [page, short, "no markup: 3 < 4 and 5 > 2", "", None]})
    out, step = run("normalize", {"html": True}, table)
    main, fallback, plain, empty, null = texts(out)
    assert article in main and second in main
    assert "Home" not in main and "Copyright" not in main and "tracking" not in main
    assert fallback == "Hello world\nSecond"  # jusText kept nothing: all visible text, scripts dropped
    assert plain == "no markup: 3 < 4 and 5 > 2"
    assert (empty, null) == ("", None)
    report = step.report()
    assert report["html_converted"] == 2 and report["html_plain_fallbacks"] == 1


def test_normalize_errors_name_the_field() -> None:
    schema = pa.schema([("text", pa.string()), ("n", pa.int64())])
    assert schema_field("normalize", {"fields": ["text", "body"]}, schema).details["field"] == "steps[0].fields[1]"
    assert schema_field("normalize", {"fields": ["n"]}, schema).details["field"] == "steps[0].fields[0]"
    err = schema_field("normalize", {"html": True, "html_language": "Klingon"}, schema)
    assert err.details["field"] == "steps[0].html_language"
    assert config_field("normalize", {"unicode": "NFD"}) == "steps[0].unicode"
    assert config_field("normalize", {"fields": []}) == "steps[0].fields"
    assert config_field("normalize", {"colour": True}) == "steps[0].colour"


# --- dedup ------------------------------------------------------------------------------------------------


def test_dedup_keeps_first_occurrence_across_batches() -> None:
    rows = [
        "Hello world",  # 0
        "Something else",  # 1
        "hello   WORLD",  # 2: copy of 0 once normalized
        "Hello world",  # 3: exact copy of 0
        "\uff28\uff45\uff4c\uff4c\uff4f world",  # 4: NFKC copy of 0
        "Something else entirely",  # 5
        "Something else",  # 6: copy of 1
        None,  # 7
        None,  # 8: copy of 7
    ]
    table = pa.table({"text": rows, "i": list(range(len(rows)))})
    out, step = run("dedup", {}, table)
    assert texts(out, "i") == [0, 1, 5, 7]
    report = step.report()
    assert report["rows_in"] == 9 and report["rows_out"] == 4 and report["duplicates"] == 5
    assert report["examples"] == [
        {"row": 2, "duplicate_of": 0},
        {"row": 3, "duplicate_of": 0},
        {"row": 4, "duplicate_of": 0},
        {"row": 6, "duplicate_of": 1},
        {"row": 8, "duplicate_of": 7},
    ]
    out, step = run("dedup", {"normalize": False}, table)
    assert texts(out, "i") == [0, 1, 2, 4, 5, 7]


def test_dedup_examples_are_capped_and_field_checked() -> None:
    table = pa.table({"body": ["same"] * 50})
    out, step = run("dedup", {"field": "body"}, table, batch=7)
    assert out.num_rows == 1
    report = step.report()
    assert report["duplicates"] == 49 and len(report["examples"]) == 20
    assert report["examples"][-1] == {"row": 20, "duplicate_of": 0}
    err = schema_field("dedup", {}, table.schema)
    assert err.details["field"] == "steps[0].field" and "text" in err.message


# --- pii --------------------------------------------------------------------------------------------------

PII_ROWS = {
    "EMAIL": ["write to jane.doe+news@mail.example.co.uk today", "ops@podium.dev"],
    "PHONE": ["call +44 20 7946 0958 now", "office (415) 555-0132", "cell 415-555-0199", "+1 650 253 0000"],
    "CREDIT_CARD": ["card 4111 1111 1111 1111 ok", "amex 3782-822463-10005", "visa 4012888888881881"],
    "IBAN": ["pay DE89 3704 0044 0532 0130 00 please", "GB82WEST12345698765432"],
    "IP_ADDRESS": ["server 192.168.10.254 is down", "v6 2001:db8:85a3::8a2e:370:7334 up", "loopback ::1 and fe80::1"],
    "US_SSN": ["ssn 123-45-6789", "ssn 078 05 1120"],
    "SECRET": [
        "OPENAI_API_KEY=sk-proj-Abc123Def456Ghi789Jkl012Mno345",
        "aws AKIAIOSFODNN7EXAMPLE key",
        "gh token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789ab",
        "config: token = 'f3A9xQ2mZ7LpW1vR8tK4'",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
    ],
}
PII_NEGATIVES = [
    "card 4111 1111 1111 1112 fails Luhn",
    "iban DE89 3704 0044 0532 0130 01 fails mod 97",
    "in 2024 we sold 12345 units at 3.14 each, order 555-1234",
    "no such ip 999.12.1.1 or 1.2.3",
    "bad ssn 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567",
    "password=hunter2 and api_key=aaaaaaaaaaaaaaaaaaaaaa and key: the_main_idea_of_this",
    "a time 12:30:45 and a C++ std::vector and dead::beef",
    "plain text with no personal data at all",
]


def test_pii_finds_each_kind_and_no_lookalikes() -> None:
    rows = [r for kind in PII_ROWS.values() for r in kind] + PII_NEGATIVES
    out, step = run("pii", {}, pa.table({"text": rows}))
    redacted = dict(zip(rows, texts(out), strict=True))
    for kind, examples in PII_ROWS.items():
        for row in examples:
            assert f"[{kind}]" in redacted[row], (kind, row, redacted[row])
    for row in PII_NEGATIVES:
        assert redacted[row] == row
    assert redacted["pay DE89 3704 0044 0532 0130 00 please"] == "pay [IBAN] please"
    assert redacted["call +44 20 7946 0958 now"] == "call [PHONE] now"
    assert redacted["config: token = 'f3A9xQ2mZ7LpW1vR8tK4'"] == "config: token = '[SECRET]'"
    assert redacted["loopback ::1 and fe80::1"] == "loopback [IP_ADDRESS] and [IP_ADDRESS]"
    report = step.report()
    assert report["counts"] == {k: len(v) + (k == "IP_ADDRESS") for k, v in PII_ROWS.items()}
    assert report["rows_affected"] == sum(len(v) for v in PII_ROWS.values())
    assert report["rows_dropped"] == 0


def test_pii_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert not iban_ok("DE8937")


def test_pii_modes() -> None:
    table = pa.table({"text": ["mail bob@example.com, card 4111-1111-1111-1111", "nothing here", None]})
    out, _ = run("pii", {"mode": "mask"}, table)
    assert texts(out)[0] == "mail ***********.com, card ***************1111"
    assert texts(out)[1:] == ["nothing here", None]

    out, _ = run("pii", {"mode": "hash", "salt": "pepper"}, table)
    digest = hashlib.sha256(b"pepperbob@example.com").hexdigest()[:12]
    assert texts(out)[0].startswith(f"mail [EMAIL:{digest}], card [CREDIT_CARD:")
    other, _ = run("pii", {"mode": "hash", "salt": "salt"}, table)
    assert texts(other)[0] != texts(out)[0]

    out, step = run("pii", {"mode": "drop_row", "entities": ["CREDIT_CARD"]}, table)
    assert texts(out) == ["nothing here", None]
    assert step.report() == {"counts": {"CREDIT_CARD": 1}, "rows_affected": 1, "rows_dropped": 1}

    out, _ = run("pii", {"entities": ["EMAIL"], "fields": ["text", "note"]}, table.append_column("note", table["text"]))
    assert texts(out, "note")[0] == "mail [EMAIL], card 4111-1111-1111-1111"


def test_pii_presidio_entities_need_presidio_and_names_are_checked() -> None:
    schema = pa.schema([("text", pa.string())])
    err = schema_field("pii", {"entities": ["EMAIL", "PERSON"]}, schema)
    assert err.details["field"] == "steps[0].entities"
    assert "pip install presidio-analyzer" in err.message
    assert config_field("pii", {"entities": ["EMAIL", "PASSPORT"]}) == "steps[0].entities[1]"
    assert config_field("pii", {"mode": "shred"}) == "steps[0].mode"


def test_pii_regexes_stay_linear_on_hostile_input() -> None:
    hostile = [
        "a" * 100_000 + "@",
        "a." * 50_000 + "@b",
        "1 " * 50_000,
        "1-" * 50_000,
        "+1" + " (1)" * 30_000,
        "1:" * 50_000,
        "A1" * 50_000,
        "DE00" + " A1B2" * 20_000,
        "key=" * 20_000 + "x" * 10_000,
        "Bearer " * 10_000,
        "sk-" + "a" * 100_000,
    ]
    started = time.perf_counter()
    run("pii", {}, pa.table({"text": hostile}))
    assert time.perf_counter() - started < 10


# --- quality ----------------------------------------------------------------------------------------------

GOOD = (
    "The committee met on Tuesday to discuss the new budget for the city library. Members agreed that the "
    "reading rooms need better lighting and that the children's section should have more books. The chair said "
    "that the plan will be ready by the end of the month, and that residents can send their comments to the "
    "council office with any questions they have about the proposal."
)
OTHER = GOOD.replace("library", "museum")
NO_STOP_WORDS = (
    "cats dogs birds fish run jump swim fly quickly slowly happily rivers mountains valleys forests green "
    "purple orange yellow bright dark cold warm sunny rainy windy cloudy north south east west "
    "apples pears plums grapes lemons melons bread cheese butter honey coffee water music dance paint "
    "write draw build carry lift throw catch kick"
)


def test_quality_drops_each_kind_of_junk_under_its_rule() -> None:
    lines = GOOD.split(". ")
    junk = {
        "min_words": "Too short to keep, even though the words are real and fine.",
        "max_words": " ".join([GOOD] * 3),
        "mean_word_length": " ".join(["I am so in to it as we go up on a ox"] * 5),
        "symbol_word_ratio": GOOD + " #tag" * 12,
        "bullet_lines": "\n".join(f"- point {i} concerning the library budget and the reading rooms" for i in range(7)),
        "ellipsis_lines": "\n".join(s + ("..." if i % 2 else ".") for i, s in enumerate(lines)),
        "alpha_words": GOOD + " 100 200 300 400 500 600 700 800 900 101 102 103 104 105 106 107 108",
        "stop_words": NO_STOP_WORDS,
        "duplicate_lines": "\n".join([lines[0], lines[1], lines[0], lines[1], lines[0], lines[2]]),
    }
    rows = [GOOD, *junk.values(), OTHER]
    table = pa.table({"text": rows, "i": list(range(len(rows)))})
    out, step = run("quality", {"max_words": 150}, table)
    assert texts(out, "i") == [0, len(rows) - 1]
    report = step.report()
    assert report["dropped"] == dict.fromkeys(junk, 1)
    assert report["rows_in"] == len(rows) and report["rows_out"] == 2
    for i, rule in enumerate(junk, start=1):
        assert report["examples"][rule][0]["row"] == i

    # a rule switched off lets its junk through
    off = {"max_words": None, "min_words": None, "max_bullet_lines": None, "max_duplicate_lines": None}
    out, step = run("quality", off, table)
    assert {"max_words", "min_words", "bullet_lines", "duplicate_lines"}.isdisjoint(step.report()["dropped"])
    kept = texts(out, "i")
    assert {1, 2, 5, 9} <= set(kept)


def test_quality_c4_options() -> None:
    rows = [
        GOOD + "\nShare this\nClick here to subscribe\n\n" + OTHER,
        "Lorem ipsum dolor sit amet. " + GOOD,
        GOOD + " Write {name} where the name goes.",
        "menu\nhome\nabout us",
        None,
    ]
    cfg = {"drop_lines_without_punctuation": True, "lorem_ipsum": True, "curly_braces": True, "min_words": 10}
    out, step = run("quality", cfg, pa.table({"text": rows}))
    assert texts(out) == [GOOD + "\n\n" + OTHER]
    assert step.report()["dropped"] == {"no_punctuated_lines": 2, "lorem_ipsum": 1, "curly_braces": 1}


def test_quality_config_errors() -> None:
    assert config_field("quality", {"max_bullet_lines": 1.5}) == "steps[0].max_bullet_lines"
    assert config_field("quality", {"min_words": -1}) == "steps[0].min_words"
    assert config_field("quality", {"min_words": 10, "max_words": 5}) == "steps[0]"
    err = schema_field("quality", {"field": "body"}, pa.schema([("text", pa.string())]))
    assert err.details["field"] == "steps[0].field"


# --- langid -----------------------------------------------------------------------------------------------

LANG_ROWS = [
    ("The weather is lovely today and we are going to the beach.\nSee you there!", "en"),
    ("Bonjour tout le monde, je suis très content de vous voir aujourd'hui.", "fr"),
    ("Guten Morgen, wie geht es Ihnen heute? Ich hoffe, es geht Ihnen gut.", "de"),
    ("El gobierno anunció ayer un nuevo plan para mejorar las escuelas públicas.", "es"),
    ("今天天气很好\uff0c我们一起去公园散步吧。", "zh"),
    ("THE MEETING IS CANCELLED BECAUSE OF THE STORM, PLEASE STAY AT HOME", "en"),
    ("", "unknown"),
    (None, "unknown"),
    ("12345 67890 !!!", "unknown"),
]


def test_langid_labels_rows_and_keeps_languages() -> None:
    table = pa.table({"text": [t for t, _ in LANG_ROWS], "i": list(range(len(LANG_ROWS)))})
    out, step = run("langid", {}, table)
    assert texts(out, "lang") == [lang for _, lang in LANG_ROWS]
    scores = texts(out, "lang_score")
    assert all(s > 0.8 for s in scores[:5]) and scores[6] == scores[7] == 0.0
    assert out.schema.field("lang_score").type == pa.float64()
    assert step.report()["languages"] == {"unknown": 3, "en": 2, "fr": 1, "de": 1, "es": 1, "zh": 1}

    out, step = run("langid", {"keep": ["en", "fr"], "column": "language"}, table)
    assert texts(out, "i") == [0, 1, 5]
    assert out.schema.names == ["text", "i", "language", "language_score"]
    assert step.report()["rows_dropped"] == 6

    out, _ = run("langid", {"threshold": 1.0}, table.slice(0, 2))
    assert texts(out, "lang") == ["unknown", "unknown"]


def test_langid_errors() -> None:
    schema = pa.schema([("text", pa.string()), ("lang", pa.string())])
    assert schema_field("langid", {}, schema).details["field"] == "steps[0].column"
    assert schema_field("langid", {"field": "body"}, schema).details["field"] == "steps[0].field"
    assert config_field("langid", {"threshold": 2}) == "steps[0].threshold"


# --- tokenize ---------------------------------------------------------------------------------------------


def test_tokenize_counts_filters_and_reports(minilm: MiniLM) -> None:
    rows = ["", "hello world", "The quick brown fox jumps over the lazy dog.", "tokenization " * 40, None, "a b c d e"]
    table = pa.table({"text": rows})
    out, step = run("tokenize", {"tokenizer": "minilm"}, table, with_tokenizer(minilm))
    expected = [minilm.count(t or "") for t in rows]
    assert texts(out, "n_tokens") == expected
    assert minilm.refs[-1] == "minilm"
    report = step.report()
    assert report["rows_in"] == 6 and report["min"] == 0 and report["max"] == max(expected)
    assert sum(report["histogram"]["counts"]) == 6 and report["histogram"]["edges"][:3] == [0, 16, 32]
    assert report["p50"] == sorted(expected)[2]

    out, step = run(
        "tokenize", {"tokenizer": "minilm", "min_tokens": 1, "max_tokens": 20}, table, with_tokenizer(minilm)
    )
    assert texts(out) == ["hello world", "The quick brown fox jumps over the lazy dog.", "a b c d e"]
    assert step.report()["dropped_too_short"] == 2 and step.report()["dropped_too_long"] == 1

    cfg = {"tokenizer": "minilm", "max_tokens": 5, "truncate": True}
    out, step = run("tokenize", cfg, table, with_tokenizer(minilm))
    assert out.num_rows == 6 and all(n <= 5 for n in texts(out, "n_tokens"))
    assert texts(out)[2] == "the quick brown fox jumps"  # MiniLM decodes lowercase
    assert step.report()["truncated"] == 2


def test_tokenize_errors(minilm: MiniLM) -> None:
    schema = pa.schema([("text", pa.string())])
    err = schema_field("tokenize", {"tokenizer": "minilm"}, schema)  # a pipeline without models
    assert err.details["field"] == "steps[0].tokenizer"

    def unknown(ref: str) -> MiniLM:
        raise NotFound(f"no model {ref!r}", details={"field": "tokenizer"})

    with pytest.raises(NotFound) as missing:
        make("tokenize", {"tokenizer": "nope"}, StepContext(tokenizer=unknown)).output_schema(schema)
    assert missing.value.details["field"] == "steps[0].tokenizer" and "nope" in missing.value.message
    err = schema_field("tokenize", {"tokenizer": "m", "column": "text"}, schema, with_tokenizer(minilm))
    assert err.details["field"] == "steps[0].column"
    assert config_field("tokenize", {}) == "steps[0].tokenizer"
    assert config_field("tokenize", {"tokenizer": "m", "truncate": True}) == "steps[0]"
    assert config_field("tokenize", {"tokenizer": "m", "min_tokens": 9, "max_tokens": 3}) == "steps[0]"


# --- chat_validate ----------------------------------------------------------------------------------------


def conversation(*turns: str, content: str = "hi") -> list[dict[str, str | None]]:
    return [{"role": role, "content": content} for role in turns]


CHATS: list[tuple[list[dict[str, str | None]] | None, str | None]] = [
    (conversation("system", "user", "assistant"), None),
    (conversation("user", "assistant", "user", "assistant"), None),
    (conversation("user", "assistant", "tool", "assistant"), None),
    (conversation("user", "assistant", "tool", "tool", "assistant"), None),
    (conversation("user", "user", "assistant"), "not_alternating"),
    (conversation("assistant", "user", "assistant"), "first_not_user"),
    (conversation("user", "system", "assistant"), "system_not_first"),
    (conversation("system", "system", "user", "assistant"), "system_not_first"),
    (conversation("user", "assistant", "user"), "final_not_assistant"),
    (conversation("user", "wizard", "assistant"), "unknown_role"),
    (conversation("user", "tool", "assistant"), "tool_out_of_place"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}], "empty_content"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}], "empty_content"),
    ([], "empty_conversation"),
    (None, "not_a_conversation"),
    (conversation("system"), "first_not_user"),
]


def test_chat_validate_on_struct_lists() -> None:
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table({"messages": pa.array([c for c, _ in CHATS], pa.list_(message)), "i": range(len(CHATS))})
    out, step = run("chat_validate", {}, table)
    assert texts(out, "i") == [i for i, (_, problem) in enumerate(CHATS) if problem is None]
    report = step.report()
    expected: dict[str, int] = {}
    for _, problem in CHATS:
        if problem:
            expected[problem] = expected.get(problem, 0) + 1
    assert report["problems"] == expected
    assert report["rows_dropped"] == sum(expected.values())
    assert report["examples"][0] == {"row": 4, "problem": "not_alternating", "message": 1}

    out, _ = run("chat_validate", {"require_final_assistant": False}, table)
    assert 8 in texts(out, "i")
    out, _ = run("chat_validate", {"roles": ["user", "assistant", "wizard"]}, table)
    assert 9 not in texts(out, "i") and 0 not in texts(out, "i")  # wizard allowed, where a tool may be; system not


def test_chat_validate_on_json_text_and_fail_action() -> None:
    rows = [json.dumps(c) if c is not None else None for c, _ in CHATS] + ["{not json", '{"role": "user"}', "[1, 2]"]
    table = pa.table({"chat": rows})
    out, step = run("chat_validate", {"field": "chat"}, table)
    assert out.num_rows == 4
    assert step.report()["problems"]["not_a_conversation"] == 4

    with pytest.raises(InvalidInput) as err:
        run("chat_validate", {"field": "chat", "action": "fail"}, table)
    assert err.value.details["row"] == 4 and err.value.details["rule"] == "not_alternating"
    assert err.value.details["field"] == "steps[0].field" and "row 4" in err.value.message


def test_chat_validate_errors() -> None:
    parts = pa.list_(pa.struct([("role", pa.string()), ("content", pa.list_(pa.string()))]))
    schema = pa.schema([("messages", pa.list_(pa.string())), ("n", pa.int64()), ("parts", parts)])
    assert schema_field("chat_validate", {}, schema).details["field"] == "steps[0].field"
    assert schema_field("chat_validate", {"field": "parts"}, schema).details["field"] == "steps[0].field"
    assert schema_field("chat_validate", {"field": "n"}, schema).details["field"] == "steps[0].field"
    assert schema_field("chat_validate", {"field": "gone"}, schema).details["field"] == "steps[0].field"
    assert config_field("chat_validate", {"roles": ["user"]}) == "steps[0].roles"
    assert config_field("chat_validate", {"action": "explode"}) == "steps[0].action"


# --- split and sample -------------------------------------------------------------------------------------


def test_split_is_seeded_deterministic_and_proportional() -> None:
    table = pa.table({"i": range(20_000)})
    out, step = run("split", {"seed": 7}, table, batch=999)
    again, _ = run("split", {"seed": 7}, table, batch=4096)
    assert texts(out, "split") == texts(again, "split")  # batching does not matter
    counts = step.report()["counts"]
    assert set(counts) == {"train", "validation", "test"} and sum(counts.values()) == 20_000
    assert abs(counts["train"] / 20_000 - 0.8) < 0.015 and abs(counts["test"] / 20_000 - 0.1) < 0.01
    other, _ = run("split", {"seed": 8}, table, batch=999)
    assert texts(other, "split") != texts(out, "split")
    pipeline_seed, _ = run("split", {}, table.slice(0, 100), StepContext(seed=7))
    assert texts(pipeline_seed, "split") == texts(out, "split")[:100]
    two, step = run("split", {"fractions": {"a": 0.5, "b": 0.5}, "column": "fold"}, table.slice(0, 10))
    assert set(texts(two, "fold")) <= {"a", "b"} and out.schema.field("split").type == pa.string()


def test_split_errors() -> None:
    assert config_field("split", {"fractions": {"train": 0.8, "test": 0.1}}) == "steps[0].fractions"
    assert config_field("split", {"fractions": {"train": 1.2, "test": -0.2}}) == "steps[0].fractions"
    assert config_field("split", {"fractions": {}}) == "steps[0].fractions"
    err = schema_field("split", {"column": "i"}, pa.schema([("i", pa.int64())]))
    assert err.details["field"] == "steps[0].column"


def test_sample_fraction_streams() -> None:
    table = pa.table({"i": range(10_000)})
    out, step = run("sample", {"fraction": 0.25, "seed": 3}, table, batch=777)
    again, _ = run("sample", {"fraction": 0.25, "seed": 3}, table, batch=1000)
    assert texts(out, "i") == texts(again, "i")
    assert abs(out.num_rows - 2500) < 150
    assert step.report()["rows_in"] == 10_000 and step.report()["rows_out"] == out.num_rows


def test_sample_reservoir_holds_n_rows_in_input_order() -> None:
    table = pa.table({"i": range(1000), "s": [f"row {i}" for i in range(1000)]})
    out, step = run("sample", {"n": 10, "seed": 1}, table, batch=64)
    assert out.num_rows == 10
    picked = texts(out, "i")
    assert picked == sorted(picked) and len(set(picked)) == 10
    assert texts(out, "s") == [f"row {i}" for i in picked]
    again, _ = run("sample", {"n": 10, "seed": 1}, table, batch=3)
    assert texts(again, "i") == picked
    assert step.report() == {"rows_in": 1000, "rows_out": 10, "seed": 1, "n": 10}
    small, _ = run("sample", {"n": 50}, table.slice(0, 7))
    assert texts(small, "i") == list(range(7))
    # every row is equally likely to be kept
    hits = [0] * 40
    for seed in range(400):
        got, _ = run("sample", {"n": 4, "seed": seed}, table.slice(0, 40), batch=6)
        for i in texts(got, "i"):
            hits[i] += 1
    assert min(hits) > 15 and max(hits) < 70  # expected 40 each


def test_sample_errors() -> None:
    assert config_field("sample", {}) == "steps[0]"
    assert config_field("sample", {"n": 3, "fraction": 0.5}) == "steps[0]"
    assert config_field("sample", {"fraction": 1.5}) == "steps[0].fraction"
    assert config_field("sample", {"n": 0}) == "steps[0].n"


# --- chunk ------------------------------------------------------------------------------------------------

MARKDOWN = (
    "# Guide\n\nThis guide explains the system. It has three parts! Read them in order?\n\n"
    "## Install\n\nRun the installer.   Then   restart.\nCheck the log:\n\n"
    "    tail -f /var/log/podium.log\n\n"
    "## Use\n\n"
    + " ".join(f"Sentence number {i} says something useful about the tool." for i in range(12))
    + "\n\n## Reference\n\n"
    + "averyveryverylongwordwithoutanyspaces" * 6
    + "\n"
)


def check_chunks(out: pa.Table, sources: list[str | None], size: int, measure: Any) -> None:
    by_row: dict[int, list[dict[str, Any]]] = {}
    for row in out.to_pylist():
        by_row.setdefault(row["source_row"], []).append(row)
    for source_row, chunks in by_row.items():
        source = sources[source_row]
        assert source is not None
        assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
        for c in chunks:
            assert source[c["start"] : c["end"]] == c["text"]  # exact slices
            assert c["text"] == c["text"].strip() and c["text"]
            assert measure(c["text"]) <= size
        for before, after in itertools.pairwise(chunks):
            assert before["start"] < after["start"] and before["end"] < after["end"]
        covered = set()
        for c in chunks:
            covered.update(range(c["start"], c["end"]))
        assert all(i in covered or source[i].isspace() for i in range(len(source)))  # nothing lost


def test_chunk_by_characters_keeps_exact_offsets() -> None:
    sources = [MARKDOWN, "short text", None, "   ", "Paragraph one.\n\nParagraph two is here.", "x" * 250]
    table = pa.table({"text": sources, "doc": [f"d{i}" for i in range(len(sources))]})
    out, step = run("chunk", {"unit": "chars", "size": 100, "overlap": 20}, table)
    assert out.schema.names == ["text", "doc", "chunk_index", "source_row", "start", "end"]
    check_chunks(out, sources, 100, len)
    rows = out.to_pylist()
    assert {r["doc"] for r in rows} == {"d0", "d1", "d4", "d5"}
    assert all(r["doc"] == f"d{r['source_row']}" for r in rows)  # other columns travel with their chunk
    assert [r["text"] for r in rows if r["doc"] == "d1"] == ["short text"]
    assert [r["text"] for r in rows if r["doc"] == "d5"] == [
        "x" * 100,
        "x" * 100,
        "x" * 70,
    ]  # the last carries 20 of overlap
    first = [r for r in rows if r["doc"] == "d0"]
    assert first[0]["text"].startswith("# Guide")
    assert any(r["text"].startswith("## Use") for r in first)  # headings open chunks
    overlaps = sum(a["end"] > b["start"] for a, b in itertools.pairwise(first))
    assert overlaps >= len(first) // 2  # consecutive chunks share their edges
    report = step.report()
    assert report["chunks"] == out.num_rows and report["rows_in"] == 6 and report["rows_without_chunks"] == 2
    assert report["chunks_per_row"]["min"] == 0 and report["chunks_per_row"]["max"] == len(first)
    assert sum(report["chunk_size"]["histogram"]["counts"]) == out.num_rows and report["chunk_size"]["max"] <= 100


def test_chunk_by_tokens(minilm: MiniLM) -> None:
    chinese = "今天天气很好。我们一起去公园散步吧\uff01" * 20
    sources = [MARKDOWN, chinese, MARKDOWN * 3]
    table = pa.table({"text": sources})
    cfg = {"unit": "tokens", "tokenizer": "minilm", "size": 48, "overlap": 8}
    out, step = run("chunk", cfg, table, with_tokenizer(minilm), batch=2)
    check_chunks(out, sources, 48, minilm.count)
    assert step.report()["chunk_size"]["max"] <= 48
    assert texts(out, "source_row").count(2) > texts(out, "source_row").count(0)


def test_chunk_replaces_its_own_columns_and_copes_with_huge_text() -> None:
    table = pa.table({"text": ["one two three four five six"], "start": ["not a number"], "k": [1]})
    out, _ = run("chunk", {"unit": "chars", "size": 10, "overlap": 4}, table)
    assert out.schema.names == ["text", "start", "k", "chunk_index", "source_row", "end"]
    assert out.schema.field("start").type == pa.int64()
    big = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20 + "\n\n") * 200
    started = time.perf_counter()
    out, _ = run("chunk", {"unit": "chars", "size": 500, "overlap": 50}, pa.table({"text": [big]}))
    assert time.perf_counter() - started < 10
    check_chunks(out, [big], 500, len)


def test_chunk_errors(minilm: MiniLM) -> None:
    schema = pa.schema([("text", pa.string())])
    assert config_field("chunk", {}) == "steps[0].tokenizer"
    assert config_field("chunk", {"unit": "chars", "size": 10, "overlap": 10}) == "steps[0].overlap"
    assert config_field("chunk", {"unit": "words"}) == "steps[0].unit"
    err = schema_field("chunk", {"tokenizer": "minilm"}, schema)
    assert err.details["field"] == "steps[0].tokenizer"
    err = schema_field("chunk", {"unit": "chars", "field": "body"}, schema)
    assert err.details["field"] == "steps[0].field"
