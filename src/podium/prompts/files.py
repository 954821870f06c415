"""Prompts kept as files, so teams review them in git: YAML, or Markdown with YAML front matter.

A YAML file holds one prompt: `name` (default: the file name), `template` (plain text) or `messages`
(chat), `variables`, `model`, `tools`, `response_format`, `description`. In a Markdown file the front
matter holds those fields and the body is the plain-text template. Positions of every template are kept,
so an error the server reports inside a template ("line 1, column 20 of messages[1].content") is shown
at its place in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from podium.core import yamlload
from podium.core.errors import InvalidInput

SUFFIXES = (".yaml", ".yml", ".md")


@dataclass
class Origin:
    """Where a template's text starts in its file, and how it is written there."""

    line: int  # 1-based line of the template's first character (or of its block's first line)
    column: int  # 1-based column of the first character (block scalars: their indentation + 1)
    block: bool  # a YAML block scalar (`|`/`>`) or a Markdown body: template line n is file line + n - 1


@dataclass
class PromptFile:
    """One prompt read from a file."""

    path: Path
    spec: dict[str, Any]
    origins: dict[str, Origin] = field(default_factory=dict)

    def locate(self, where: str, line: int | None, column: int | None) -> str:
        """`path:line:column` of a position inside one of the file's templates (as far as it is known)."""
        origin = self.origins.get(where)
        if origin is None or line is None:
            return str(self.path)
        if origin.block:
            return f"{self.path}:{origin.line + line - 1}:{(column or 1) + origin.column - 1}"
        if line == 1:
            return f"{self.path}:{origin.line}:{origin.column + (column or 1) - 1}"
        return f"{self.path}:{origin.line}"


def _scalar_origin(node: yaml.Node, lines: list[str]) -> Origin:
    mark = node.start_mark
    style = getattr(node, "style", None)
    if style in ("|", ">"):
        first = mark.line + 1  # the line after the indicator (0-based)
        text = lines[first] if first < len(lines) else ""
        return Origin(first + 1, len(text) - len(text.lstrip(" ")) + 1, True)
    quoted = 1 if style in ("'", '"') else 0
    return Origin(mark.line + 1, mark.column + 1 + quoted, False)


def _origins(root: yaml.Node, lines: list[str], offset: int = 0) -> dict[str, Origin]:
    out: dict[str, Origin] = {}
    if not isinstance(root, yaml.MappingNode):
        return out
    for key, value in root.value:
        if key.value == "template" and isinstance(value, yaml.ScalarNode):
            out["template"] = _scalar_origin(value, lines)
        if key.value == "messages" and isinstance(value, yaml.SequenceNode):
            for i, item in enumerate(value.value):
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        if k.value == "content" and isinstance(v, yaml.ScalarNode):
                            out[f"messages[{i}].content"] = _scalar_origin(v, lines)
    for origin in out.values():
        origin.line += offset
    return out


def _load_yaml(text: str, path: Path, offset: int = 0) -> tuple[Any, yaml.Node | None]:
    try:
        return yamlload.load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1 + offset}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"{at}: invalid YAML: {problem}") from None


def read_file(path: Path) -> PromptFile:
    """Read one prompt file (YAML or Markdown with front matter)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read: {exc}") from None
    if path.suffix == ".md":
        return _read_markdown(path, text)
    data, node = _load_yaml(text, path)
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: a prompt file must be a YAML mapping with `name` and `template` or `messages`")
    data.setdefault("name", path.stem)
    return PromptFile(path, data, _origins(node, text.splitlines()) if node is not None else {})


def _read_markdown(path: Path, text: str) -> PromptFile:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise InvalidInput(f"{path}:1: a Markdown prompt starts with YAML front matter between `---` lines")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise InvalidInput(f"{path}: the front matter is not closed by a `---` line")
    front = "".join(lines[1:end])
    data, node = _load_yaml(front, path, offset=1)
    data = data or {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: the front matter must be a YAML mapping")
    body = "".join(lines[end + 1 :])
    origins = _origins(node, front.splitlines(), offset=1) if node is not None else {}
    if body.strip():
        if "template" in data or "messages" in data:
            raise InvalidInput(f"{path}: the body is the template; remove `template`/`messages` from the front matter")
        data["template"] = body.strip("\n")
        skipped = len(body) - len(body.lstrip("\n"))
        origins["template"] = Origin(end + 2 + skipped, 1, True)
    data.setdefault("name", path.stem)
    return PromptFile(path, data, origins)


def read_dir(root: Path) -> list[PromptFile]:
    """Every prompt file under `root` (recursively, sorted); a name used by two files is an error."""
    if root.is_file():
        return [read_file(root)]
    if not root.is_dir():
        raise InvalidInput(f"{root}: no such directory")
    files = [read_file(p) for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in SUFFIXES]
    seen: dict[str, Path] = {}
    for f in files:
        name = str(f.spec.get("name"))
        if name in seen:
            raise InvalidInput(f"prompt {name!r} is defined twice: {seen[name]} and {f.path}")
        seen[name] = f.path
    return files
