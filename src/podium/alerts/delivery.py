"""Sending notifications in the background: deliveries are rows (an outbox) written with the event that needs
them, and each server process's `Deliverer` loop claims the due ones and sends them, so neither the gateway
nor the evaluator ever waits on a webhook or an SMTP server.

A claim is a conditional update (`pending` and due → `sending` with a lease), so two server processes never
send the same delivery; a process that dies mid-send leaves a lease that expires and the delivery is claimed
again. A failed attempt (connection refused, timeout, 5xx, 408/429, an SMTP error) is retried after an
exponential, jittered backoff (`alerts_retry_initial` doubling, a server's `Retry-After` respected) until
`alerts_max_attempts`; any other 4xx answer fails at once (the request itself is wrong). Every attempt is
logged on the delivery (time, outcome, HTTP status or SMTP code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiohttp
from sqlalchemy import or_, select, update

from podium.alerts.store import AlertDelivery
from podium.core.config import Settings
from podium.core.db import utcnow
from podium.core.netguard import GuardedResolver, NetGuard
from podium.core.platform import Platform
from podium.core.retry import Backoff, parse_retry_after
from podium.core.version import __version__

log = logging.getLogger("podium.alerts")
CONCURRENCY = 8  # deliveries one process sends at once
POLL_SECONDS = 1.0  # how often a process looks for due deliveries it was not woken for
LEASE_MARGIN = 30.0  # seconds a claim outlives the attempt's own timeout
RETRY_CAP = 300.0
MAX_ERROR = 1000
RETRIED_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Attempt:
    """One attempt's outcome."""

    ok: bool
    retry: bool  # worth another attempt
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


# --- the outbox -----------------------------------------------------------------------------------------


def claim_due(platform: Platform, limit: int, lease_seconds: float) -> list[AlertDelivery]:
    """Claim up to `limit` due deliveries for this process (none claimed twice, on any backend)."""
    now = utcnow()
    due = or_(
        (AlertDelivery.status == "pending") & (AlertDelivery.next_attempt_at <= now),
        (AlertDelivery.status == "sending") & (AlertDelivery.lease_until < now),
    )
    with platform.db.read_session() as s:
        ids = list(s.scalars(select(AlertDelivery.id).where(due).order_by(AlertDelivery.next_attempt_at).limit(limit)))
    if not ids:
        return []
    claimed: list[AlertDelivery] = []
    lease = now + timedelta(seconds=lease_seconds)
    with platform.db.session() as s:
        for delivery_id in ids:
            won = s.execute(
                update(AlertDelivery)
                .where(AlertDelivery.id == delivery_id, due)
                .values(status="sending", lease_until=lease)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount == 1:  # type: ignore[attr-defined]
                row = s.get(AlertDelivery, delivery_id)
                if row is not None:
                    claimed.append(row)
    return claimed


def record_attempt(platform: Platform, delivery_id: str, attempt: Attempt, backoff: Backoff) -> str:
    """Write an attempt's outcome: `delivered`, `failed`, or `pending` again with its next attempt's time."""
    now = utcnow()
    with platform.db.session() as s:
        row = s.get(AlertDelivery, delivery_id)
        if row is None:  # its rule was deleted meanwhile
            return "gone"
        row.attempts += 1
        entry: dict[str, Any] = {"at": now.isoformat(), "ok": attempt.ok}
        if attempt.status is not None:
            entry["status"] = attempt.status
        if attempt.error:
            entry["error"] = attempt.error[:MAX_ERROR]
        row.log = [*row.log, entry][-50:]
        row.last_status = attempt.status
        row.lease_until = None
        if attempt.ok:
            row.status, row.finished_at = "delivered", now
        else:
            row.last_error = (attempt.error or f"status {attempt.status}")[:MAX_ERROR]
            if attempt.retry and row.attempts < row.max_attempts:
                delay = backoff.delay(row.attempts - 1, attempt.retry_after)
                row.status, row.next_attempt_at = "pending", now + timedelta(seconds=delay)
            else:
                row.status, row.finished_at = "failed", now
        return row.status


# --- sending --------------------------------------------------------------------------------------------


async def post_webhook(session: aiohttp.ClientSession, url: str, body: dict[str, Any], timeout: float) -> Attempt:
    """POST the JSON body; 2xx is delivered, 5xx/408/425/429 and network errors are worth a retry."""
    try:
        async with session.post(
            url,
            json=body,
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"User-Agent": f"podium-alerts/{__version__}"},
            allow_redirects=False,
        ) as resp:
            text = (await resp.content.read(MAX_ERROR)).decode("utf-8", "replace")
            if 200 <= resp.status < 300:
                return Attempt(ok=True, retry=False, status=resp.status)
            retry = resp.status >= 500 or resp.status in RETRIED_STATUSES
            after = parse_retry_after(resp.headers.get("Retry-After"))
            return Attempt(False, retry, resp.status, f"HTTP {resp.status}: {text.strip()[:300]}", after)
    except TimeoutError:
        return Attempt(False, True, None, f"no answer within {timeout:g} s")
    except aiohttp.ClientConnectorError as exc:
        return Attempt(False, True, None, f"cannot connect: {exc.os_error.strerror or exc}")
    except aiohttp.ClientError as exc:
        return Attempt(False, True, None, f"{type(exc).__name__}: {exc}")


def send_email(settings: Settings, to: str, body: dict[str, Any]) -> Attempt:
    """Send one e-mail through the configured SMTP server (blocking: run it in a thread)."""
    if not settings.smtp_host:
        return Attempt(False, False, None, "this server has no SMTP server configured (setting smtp_host)")
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = str(body.get("subject", "Podium alert"))
    msg["Message-ID"] = make_msgid(domain="podium")
    msg.set_content(str(body.get("text", "")))
    timeout = settings.alerts_webhook_timeout
    try:
        client: smtplib.SMTP
        if settings.smtp_security == "ssl":
            client = smtplib.SMTP_SSL(
                settings.smtp_host, settings.smtp_port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with client:
            if settings.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                client.login(settings.smtp_user, password)
            refused = client.send_message(msg)
        if refused:
            code, reason = next(iter(refused.values()))
            return Attempt(False, False, code, f"the SMTP server refused {to}: {reason.decode('utf-8', 'replace')}")
        return Attempt(ok=True, retry=False, status=250)
    except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused: permanent unless a 4xx
        code, reason = next(iter(exc.recipients.values()), (550, b"refused"))
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return Attempt(False, 400 <= code < 500, code, f"the SMTP server refused {to}: {code} {text}")
    except smtplib.SMTPResponseException as exc:
        message = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc)
        return Attempt(
            False, exc.smtp_code >= 400 and exc.smtp_code < 500, exc.smtp_code, f"SMTP {exc.smtp_code}: {message}"
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Attempt(False, True, None, f"SMTP: {type(exc).__name__}: {exc}")


class Deliverer:
    """This process's background sender: wakes when an evaluation here wrote deliveries, and polls for the rest
    (retries coming due, deliveries other processes wrote)."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.settings = platform.settings
        self.backoff = Backoff(initial=self.settings.alerts_retry_initial, cap=RETRY_CAP)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._running: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look for due deliveries now (from any thread)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def run(self) -> None:
        """Claim and send due deliveries until cancelled."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        guard = NetGuard(allow_private=self.settings.upstream_allow_private)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard), limit=CONCURRENCY)
        self._session = aiohttp.ClientSession(connector=connector)
        lease = self.settings.alerts_webhook_timeout + LEASE_MARGIN
        try:
            while True:
                free = CONCURRENCY - len(self._running)
                if free > 0:
                    try:
                        claimed = await asyncio.to_thread(claim_due, self.platform, free, lease)
                    except Exception:
                        log.exception("claiming alert deliveries failed")
                        claimed = []
                    for row in claimed:
                        task = asyncio.create_task(self._send(row), name=f"alert delivery {row.id}")
                        self._running.add(task)
                        task.add_done_callback(self._done)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            await self._session.close()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._wake is not None:
            self._wake.set()  # a slot is free

    async def _send(self, row: AlertDelivery) -> None:
        try:
            if row.channel == "webhook":
                assert self._session is not None
                attempt = await post_webhook(
                    self._session, row.target, row.payload, self.settings.alerts_webhook_timeout
                )
            else:
                attempt = await asyncio.to_thread(send_email, self.settings, row.target, row.payload)
        except Exception as exc:  # a bug must not leave the delivery claimed forever
            log.exception("alert delivery %s failed unexpectedly", row.id)
            attempt = Attempt(False, True, None, f"{type(exc).__name__}: {exc}")
        status = await asyncio.to_thread(record_attempt, self.platform, row.id, attempt, self.backoff)
        if status == "failed":
            log.warning("alert delivery %s to %s failed: %s", row.id, row.channel, attempt.error)
