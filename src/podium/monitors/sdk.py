"""The monitors SDK: a monitor's series, one figure over a window, and the summary, from Python.

    import podium
    podium.monitors.series("error_rate", by="route", start="24h")   # the API's MonitorSeries as a dict
    podium.monitors.value("score:toxicity", route="support", start="1h")

Calls `/api/monitors` on the SDK's one client configuration (`podium.configure`, `PODIUM_URL`, …).
"""

from __future__ import annotations

from typing import Any

from podium.core.client import Client


def metrics(*, url: str | None = None, api_key: str | None = None) -> list[dict[str, Any]]:
    """The monitors: name, description, unit, whether higher is worse."""
    with Client(url, api_key) as c:
        return list(c.get("/api/monitors"))


def series(
    metric: str,
    *,
    project: str | None = None,
    route: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    start: str | None = None,
    end: str | None = None,
    bucket: str = "hour",
    by: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> dict[str, Any]:
    """A monitor per bucket and group; `start`/`end` are ISO-8601 times or durations ago (`24h`)."""
    params = {"project": project, "route": route, "model": model, "prompt": prompt, "from": start, "to": end}
    with Client(url, api_key) as c:
        return dict(c.get(f"/api/monitors/{metric}", **params, bucket=bucket, by=by))


def value(
    metric: str,
    *,
    project: str | None = None,
    route: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
    start: str | None = None,
    end: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
) -> float | None:
    """A monitor over the whole window (None: no data)."""
    params = {"project": project, "route": route, "model": model, "prompt": prompt, "from": start, "to": end}
    with Client(url, api_key) as c:
        found = c.get(f"/api/monitors/{metric}/value", **params)["value"]
    return None if found is None else float(found)


def summary(
    *, project: str | None = None, window: str = "24h", url: str | None = None, api_key: str | None = None
) -> dict[str, Any]:
    """The headline figures of the last window against the one before."""
    with Client(url, api_key) as c:
        return dict(c.get("/api/monitors/summary", project=project, window=window))
