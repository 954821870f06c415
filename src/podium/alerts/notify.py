"""What a notification says: one `Notice` per event, written as a webhook's JSON (Slack-compatible: a top-level
`text`, Block Kit `blocks` and legacy `attachments`, beside the structured fields a program reads) and as an
e-mail (subject and plain text)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TITLES = {"firing": "FIRING", "reminder": "STILL FIRING", "resolved": "RESOLVED", "test": "TEST"}
COLORS = {"firing": "#e03131", "reminder": "#e8590c", "resolved": "#2f9e44", "test": "#868e96"}
EMOJI = {
    "firing": ":red_circle:",
    "reminder": ":large_orange_circle:",
    "resolved": ":large_green_circle:",
    "test": ":white_circle:",
}
MAX_HEADER = 150  # Slack's limit on a header block's text


@dataclass(frozen=True)
class Notice:
    """Everything a notification of one event says."""

    event_id: str
    incident_id: str
    kind: str  # firing | reminder | resolved | test
    rule_id: str
    rule_name: str
    project: str
    severity: str
    metric: str | None
    condition: str  # threshold | change | drift
    value: float | None
    threshold: float | None
    summary: str
    filters: dict[str, str]
    at: datetime
    links: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """The rule's state the notice reports (a reminder reports `firing`; a test, `test`)."""
        return {"resolved": "resolved", "test": "test"}.get(self.kind, "firing")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def headline(n: Notice) -> str:
    """One line: `[FIRING] high-error-rate (critical) in demo: error_rate = 0.2 over 5m (threshold > 0.05)`."""
    return f"[{TITLES.get(n.kind, n.kind.upper())}] {n.rule_name} ({n.severity}) in {n.project}: {n.summary}"


def webhook_payload(n: Notice) -> dict[str, Any]:
    """The JSON a webhook receives: Slack renders `text`/`blocks`/`attachments`; programs read the rest."""
    text = f"{EMOJI.get(n.kind, '')} {headline(n)}".strip()
    link = n.links.get("rule")
    facts = [
        ("Severity", n.severity),
        ("Project", n.project),
        ("Value", _number(n.value)),
        ("Threshold", _number(n.threshold)),
    ]
    if n.metric:
        facts.append(("Metric", n.metric))
    facts += [(k.capitalize(), v) for k, v in sorted(n.filters.items())]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"[{TITLES.get(n.kind, n.kind)}] {n.rule_name}"[:MAX_HEADER]},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": n.summary}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts[:10]]},
    ]
    if link:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the rule in Podium>"}]}
        )
    return {
        "text": text,
        "blocks": blocks,
        "attachments": [
            {
                "color": COLORS.get(n.kind, "#868e96"),
                "fallback": text,
                "title": n.rule_name,
                **({"title_link": link} if link else {}),
                "text": n.summary,
                "fields": [{"title": k, "value": v, "short": True} for k, v in facts],
                "ts": int(n.at.timestamp()),
            }
        ],
        "rule": {"id": n.rule_id, "name": n.rule_name, "condition": n.condition},
        "state": n.state,
        "event": n.kind,
        "event_id": n.event_id,
        "incident_id": n.incident_id,
        "severity": n.severity,
        "project": n.project,
        "metric": n.metric,
        "filters": n.filters,
        "value": n.value,
        "threshold": n.threshold,
        "summary": n.summary,
        "at": n.at.isoformat(),
        "links": n.links,
    }


def email_message(n: Notice) -> dict[str, str]:
    """The e-mail's subject and plain-text body."""
    lines = [
        headline(n),
        "",
        f"Rule:      {n.rule_name} ({n.rule_id})",
        f"State:     {n.state}{' (reminder)' if n.kind == 'reminder' else ''}",
        f"Severity:  {n.severity}",
        f"Project:   {n.project}",
        f"Value:     {_number(n.value)}",
        f"Threshold: {_number(n.threshold)}",
    ]
    if n.metric:
        lines.append(f"Metric:    {n.metric}")
    lines += [f"{k.capitalize() + ':':<11}{v}" for k, v in sorted(n.filters.items())]
    lines += [f"At:        {n.at.isoformat()}", f"Incident:  {n.incident_id}"]
    lines += [f"{k.capitalize() + ':':<11}{v}" for k, v in n.links.items()]
    subject = headline(n).replace("\r", " ").replace("\n", " ")[:200]
    return {"subject": subject, "text": "\n".join(lines) + "\n"}
