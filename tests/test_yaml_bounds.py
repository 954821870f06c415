"""YAML sent by callers is bounded before anything walks it: an alias bomb (a few hundred bytes naming a
billion values) and a deeply nested document are refused with a 400 naming the source, through the APIs that
take YAML (guard policies, alert rules, chain versions), and a document with ordinary anchors still loads."""

from __future__ import annotations

import pytest

from podium.core import yamlload

from .conftest import LiveServer, project_key


def bomb(levels: int = 9) -> str:
    """Nine levels of ten aliases each: 10^9 values once expanded, in about 400 bytes."""
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_the_loader_counts_expanded_values_and_depth() -> None:
    with pytest.raises(yamlload.TooLarge, match="expands to more than 200,000 values"):
        yamlload.load(bomb())
    with pytest.raises(yamlload.TooLarge, match="nests"):
        yamlload.load("[" * 100 + "]" * 100)
    with pytest.raises(yamlload.TooLarge, match="nests"):
        yamlload.load("[" * 5000 + "]" * 5000)  # deeper than PyYAML's recursive composer goes
    shared = "base: &b {a: 1, b: [1, 2]}\nfirst: *b\nsecond: {<<: *b, a: 2}\n"
    assert yamlload.load(shared) == {
        "base": {"a": 1, "b": [1, 2]},
        "first": {"a": 1, "b": [1, 2]},
        "second": {"a": 2, "b": [1, 2]},
    }


def test_apis_refuse_alias_bombs_naming_the_source(module_server: LiveServer) -> None:
    key = project_key(module_server, "yaml-bounds", "member")
    policy = bomb() + "name: bomb\ninput:\n  - type: topics\n    settings:\n      ban: *l9\n"
    rule = bomb() + "name: bomb\nmetric: error_rate\ncondition: {type: threshold, op: '>', value: *l9}\n"
    chain = bomb() + "steps:\n  - {id: a, type: transform, expression: *l9}\n"
    with module_server.client(key) as c:
        answers = {
            "policy": c.post("/api/guard/policies", json={"source": policy}),
            "rule": c.post("/api/alerts/rules", json={"source": rule}),
            "chain": c.post("/api/chains/bomb/versions", json={"source": chain}),
        }
        for what, r in answers.items():
            assert r.status_code == 400, (what, r.text)
            assert "expands to more than" in r.json()["error"]["message"], (what, r.text)
        deep = c.post("/api/guard/policies", json={"source": "name: deep\ninput: " + "[" * 3000 + "]" * 3000})
        assert deep.status_code == 400 and "nests" in deep.json()["error"]["message"], deep.text
        assert c.get("/api/guard/policies/bomb").status_code == 404  # nothing was stored
