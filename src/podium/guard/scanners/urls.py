"""`urls`: links in text, against allow and deny lists of domains (a domain covers its subdomains). With an
`allow` list every other domain is a finding; with only `deny`, the denied ones are; with neither, every URL is
reported (`warn`-style inventories). Links with an IP-address host, user info (`https://bank.com@evil.io`) or
punycode can be flagged on their own."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from podium.guard.base import BOTH, Finding, ScanContext, Scanner, ScannerError, ScannerSettings
from podium.guard.registry import register

_URL = re.compile(r"(?i)\b(?:https?|ftp)://[^\s<>\"'`)\]}]{1,2048}|\bwww\.[a-z0-9-]{1,63}\.[^\s<>\"'`)\]}]{1,2000}")
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$|^[a-z0-9-]{1,63}$")


class UrlsSettings(ScannerSettings):
    """Settings of `urls`."""

    allow: list[str] = Field(default_factory=list, max_length=10_000)
    deny: list[str] = Field(default_factory=list, max_length=10_000)
    flag_ip_hosts: bool = True
    flag_userinfo: bool = True
    flag_punycode: bool = False


def _domains(field: str, items: list[str]) -> frozenset[str]:
    out = set()
    for i, raw in enumerate(items):
        d = raw.strip().lower().removeprefix("*.").rstrip(".")
        if not _DOMAIN.match(d):
            raise ScannerError(
                f"scanner 'urls' setting '{field}.{i}': {raw!r} is not a domain name (write e.g. example.com)", field
            )
        out.add(d)
    return frozenset(out)


def _covered(host: str, domains: frozenset[str]) -> bool:
    parts = host.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))


@register
class Urls(Scanner):
    """URLs to domains outside the allow list or on the deny list, and suspicious link shapes."""

    name = "urls"
    description = "URLs checked against allow/deny domain lists; IP hosts and user-info tricks"
    stages = BOTH
    Settings = UrlsSettings
    settings: UrlsSettings

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        self.allow = _domains("allow", self.settings.allow)
        self.deny = _domains("deny", self.settings.deny)

    def check(self, text: str, context: ScanContext) -> list[Finding]:
        if "://" not in text and "www." not in text.lower():
            return []
        out = []
        for m in _URL.finditer(text):
            url = m.group().rstrip(".,;:!?")
            start, end = m.start(), m.start() + len(url)
            try:
                parts = urlsplit(url if "://" in url else "http://" + url)
                host = (parts.hostname or "").lower().rstrip(".")
            except ValueError:
                out.append(self.finding("MALFORMED_URL", start, end, 1.0, "unparseable URL"))
                continue
            why = self._verdict(host, parts.username is not None)
            if why is not None:
                out.append(self.finding("URL", start, end, 1.0, f"{why}: {host}"))
        return out

    def _verdict(self, host: str, userinfo: bool) -> str | None:
        s = self.settings
        if s.flag_userinfo and userinfo:
            return "user info before the host"
        try:
            ipaddress.ip_address(host.strip("[]"))
            if s.flag_ip_hosts:
                return "IP-address host"
        except ValueError:
            pass
        if s.flag_punycode and any(label.startswith("xn--") for label in host.split(".")):
            return "punycode host"
        if self.deny and _covered(host, self.deny):
            return "denied domain"
        if self.allow:
            return None if _covered(host, self.allow) else "domain not allowed"
        if not self.deny:
            return "URL"
        return None
