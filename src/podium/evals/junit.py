"""JUnit XML for the CI gate: each check of an eval suite (a score above its threshold, no significant
regression ...) becomes a test case, so any CI system that reads JUnit reports (GitHub Actions, GitLab,
Jenkins) shows which checks failed and why, without knowing Podium.

The document is one `<testsuites>` holding one `<testsuite>`; a failed check carries a `<failure>` whose
`message` is the check's message and whose text adds the value and the threshold. Characters XML 1.0 cannot
hold (control characters from a model's output) are dropped. The file is written atomically (a temporary file
in the same folder, then `os.replace`), so a CI step never reads half a report.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import xml.etree.ElementTree as ET  # nosec B405  # builds XML, never parses any
from dataclasses import dataclass
from pathlib import Path

# characters outside XML 1.0's Char production
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Check:
    """One gate check: its name, whether it passed, a message for a human, the measured value and the threshold
    it was held to (as text, like ">= 0.8"), and the JUnit class name that groups it."""

    name: str
    passed: bool
    message: str
    value: float | None = None
    threshold: str | None = None
    classname: str = "podium.eval"


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _details(check: Check) -> str:
    lines = [check.message]
    if check.value is not None:
        lines.append(f"value: {check.value:g}")
    if check.threshold is not None:
        lines.append(f"threshold: {check.threshold}")
    return _clean("\n".join(lines))


def junit_text(suite: str, checks: list[Check], time_s: float) -> str:
    """The JUnit XML document (with its XML declaration) for `checks` run as the suite `suite` in `time_s`."""
    failures = sum(1 for c in checks if not c.passed)
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": "0", "skipped": "0"}
    duration = f"{max(0.0, time_s):.3f}"
    root = ET.Element("testsuites", {"name": _clean(suite), **counts, "time": duration})
    node = ET.SubElement(root, "testsuite", {"name": _clean(suite), **counts, "time": duration})
    for check in checks:
        case = ET.SubElement(
            node, "testcase", {"classname": _clean(check.classname), "name": _clean(check.name), "time": "0"}
        )
        if check.passed:
            ET.SubElement(case, "system-out").text = _details(check)
        else:
            failure = ET.SubElement(case, "failure", {"message": _clean(check.message), "type": "threshold"})
            failure.text = _details(check)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, suite: str, checks: list[Check], time_s: float) -> None:
    """Write the JUnit XML for `checks` to `path` atomically, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(junit_text(suite, checks, time_s))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for the CI's other steps to read
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
