"""`podium chains …` against a live server (SQLite alone: the services it calls run on both databases in
tests/test_chains.py): push a file, list, show, run with inputs, label, diff, and a failing run's exit code."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import LiveServer, run_cli, serve_for_module


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_for_module("sqlite", tmp_path_factory.mktemp("chains-cli"), tool_modules=["tests.chain_tools"])


def cli(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("chains", *args, env={"PODIUM_URL": live.url, "PODIUM_API_KEY": live.admin_key}, timeout=120)


def test_push_run_label_and_diff_from_the_command_line(live: LiveServer, tmp_path: Path) -> None:
    chain = tmp_path / "orders.yaml"
    chain.write_text(
        "description: order lookups\n"
        "inputs: {order: string, extra: {type: integer, default: 1}}\n"
        "steps:\n"
        "  - {id: found, type: tool, tool: lookup_order, arguments: {order_id: '{{ inputs.order }}'}}\n"
        "  - id: total\n"
        "    type: tool\n"
        "    tool: add\n"
        "    arguments: {a: '{{ steps.found.total | int }}', b: '{{ inputs.extra }}'}\n"
        "output: \"{'status': steps.found.status, 'total': steps.total}\"\n"
    )
    r = cli(live, "push", str(chain), "-m", "first", "--label", "prod")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Pushed orders@1 (latest, prod)"
    assert cli(live, "push", str(chain)).stdout.strip() == "Unchanged: orders@1 (latest, prod)"

    r = cli(live, "run", "orders@prod", "--input", "order=A-1", "-i", "extra=5")
    assert r.returncode == 0, r.stderr
    assert '"total": 47' in r.stdout and "trace trc_" in r.stdout
    r = cli(live, "run", "orders", "--inputs", '{"order": "B-2"}', "--json")
    assert json.loads(r.stdout)["output"] == {"status": "shipped", "total": 43}

    chain.write_text(chain.read_text().replace("default: 1", "default: 2"))
    assert cli(live, "push", str(chain), "-m", "second").returncode == 0
    r = cli(live, "ls")
    assert "orders" in r.stdout and "prod→1" in r.stdout
    r = cli(live, "show", "orders")
    assert "first" in r.stdout and "second" in r.stdout
    assert "default: 1" in cli(live, "show", "orders@prod").stdout
    d = cli(live, "diff", "orders", "prod", "latest").stdout
    assert "-inputs: {order: string, extra: {type: integer, default: 1}}" in d and "default: 2" in d
    assert cli(live, "label", "orders", "prod", "2").stdout.strip() == "orders@prod → version 2"

    r = cli(live, "run", "orders", "--input", "nope=1")  # a bad input: exit 1 with the server's message
    assert r.returncode == 1 and "unknown input nope" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - {id: boom, type: tool, tool: explode, arguments: {reason: cli}}\n")
    assert cli(live, "push", str(bad)).returncode == 0
    r = cli(live, "run", "bad")
    assert r.returncode == 1 and "exploded: cli" in r.stderr and "boom" in r.stdout
    bad.write_text("steps:\n  - {id: boom, type: teleport}\n")
    r = cli(live, "push", str(bad))
    assert r.returncode == 1 and "step 'boom' has an unknown type 'teleport'" in r.stderr


def test_the_sdk_pushes_a_python_built_chain_and_runs_it(live: LiveServer) -> None:
    import podium
    from podium.chains.sdk import ChainError

    chain = {
        "inputs": {"order": "string"},
        "steps": [
            {"id": "found", "type": "tool", "tool": "lookup_order", "arguments": {"order_id": "{{ inputs.order }}"}},
            {"id": "status", "type": "transform", "expression": "steps.found.status | upper"},
        ],
    }
    podium.configure(url=live.url, api_key=live.admin_key)
    try:
        version = podium.chains.push("sdk-built", chain, message="from python", label="prod")
        assert version["version"] == 1 and "prod" in version["labels"]
        handle = podium.chains.get("sdk-built@prod")
        run = handle.run(order="C-3")
        assert run.output == "SHIPPED" and run.status == "ok" and run.trace_id.startswith("trc_")
        assert [s["step"] for s in run.steps] == ["found", "status"]
        assert handle.runs()[0].id == run.id
        assert any(c["name"] == "sdk-built" for c in podium.chains.list())
        podium.chains.push("sdk-fails", "steps:\n  - {id: boom, type: tool, tool: explode, arguments: {reason: sdk}}\n")
        with pytest.raises(ChainError, match="exploded: sdk") as failed:
            podium.chains.get("sdk-fails").run()
        assert failed.value.run.failed_step == "boom"
        assert podium.chains.get("sdk-fails").run(check=False).status == "error"
    finally:
        from podium.core import sdkconfig

        sdkconfig.reset()  # later modules' clients resolve their server from the environment again
