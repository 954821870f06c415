"""`podium serve`."""

from __future__ import annotations

import typer

from podium.core.config import load_settings


def serve(
    host: str | None = typer.Option(None, help="Address to bind (default from config: 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to bind (default from config: 8800)."),
    workers: int | None = typer.Option(None, help="Worker processes (default from config: 1)."),
    home: str | None = typer.Option(None, help="State directory (default ./.podium)."),
) -> None:
    """Start the Podium server: API, gateway and dashboard."""
    from podium.server.serve import run

    settings = load_settings(host=host, port=port, workers=workers, home=home)
    run(settings)
