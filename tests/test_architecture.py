"""The layout's contracts (pyproject's `[tool.importlinter]`): they hold on the code, and they catch the
violations the old layout had (a domain reading another's tables, core importing a domain, the gateway
importing prompts, a domain importing the server)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "lint-imports")


def lint(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_code_keeps_every_contract(tmp_path: Path) -> None:
    out = lint(ROOT / "src", ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


# what each injected line does, the contract it must break, and the old module that did it
VIOLATIONS = [
    ("gateway/admin.py", "from podium.models.store import Model", "only the models domain reads its tables"),
    ("tracing/payloads.py", "from podium.models.store import ModelVersion", "only the models domain reads its tables"),
    ("gateway/governor.py", "from podium.auth.store import ApiKey", "only the auth domain reads its tables"),
    ("gateway/dispatch.py", "from podium.prompts import directory", "server above domains"),
    ("core/platform.py", "from podium.auth import service", "server above domains"),
    ("web/shell.py", "from podium.jobs import service", "server above domains"),
    ("models/service.py", "from podium.server import app", "server above domains"),
]


@pytest.mark.parametrize(("module", "line", "contract"), VIOLATIONS, ids=[v[0] + " " + v[1] for v in VIOLATIONS])
def test_each_old_violation_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "podium", src / "podium", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = src / "podium" / module
    text = target.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    assert sep, f"{module} has no future import to place the violation after"
    target.write_text(head + sep + line + "  # noqa\n" + rest)
    out = lint(src, tmp_path)
    assert out.returncode != 0, out.stdout
    broken = [ln for ln in out.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(b.startswith(contract) for b in broken), out.stdout
