"""`podium projects|users|keys|audit|whoami`: identity commands, through the server's API."""

from __future__ import annotations

from typing import Any

import typer

from podium.core.client import Client
from podium.core.console import console, print_json, print_record, print_table

projects_app = typer.Typer(help="Projects.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print JSON.")


def _out(data: Any, as_json: bool, columns: list[str]) -> None:
    if as_json:
        print_json(data)
    elif isinstance(data, list):
        print_table(data, columns)
    else:
        print_record(data)


@projects_app.command("ls")
def projects_ls(as_json: bool = JSON) -> None:
    """List projects."""
    with Client() as c:
        _out(c.get("/api/projects"), as_json, ["name", "description", "id", "created_at"])


@projects_app.command("create")
def projects_create(
    name: str, description: str = typer.Option("", "--description", "-d"), as_json: bool = JSON
) -> None:
    """Create a project (server admin)."""
    with Client() as c:
        _out(c.post("/api/projects", {"name": name, "description": description}), as_json, [])


@projects_app.command("show")
def projects_show(name: str, as_json: bool = JSON) -> None:
    """Show a project."""
    with Client() as c:
        _out(c.get(f"/api/projects/{name}"), as_json, [])


@projects_app.command("members")
def projects_members(name: str, as_json: bool = JSON) -> None:
    """A project's members and their roles."""
    with Client() as c:
        _out(c.get(f"/api/projects/{name}/members"), as_json, ["user", "role", "admin", "disabled", "since"])


@projects_app.command("add-member")
def projects_add_member(
    name: str,
    user: str,
    role: str = typer.Option("member", help="admin, member or viewer in this project."),
    as_json: bool = JSON,
) -> None:
    """Add a user to a project (server admin), or change their role there (its admins)."""
    with Client() as c:
        _out(c.put(f"/api/projects/{name}/members/{user}", {"role": role}), as_json, [])


@projects_app.command("remove-member")
def projects_remove_member(name: str, user: str) -> None:
    """Take a user out of a project: their keys there stop working (its admins)."""
    with Client() as c:
        c.delete(f"/api/projects/{name}/members/{user}")
    console.print(f"{user} is no longer a member of {name}")


def _projects(roles: dict[str, str]) -> str:
    return ", ".join(f"{p}:{r}" for p, r in sorted(roles.items()))


@users_app.command("ls")
def users_ls(as_json: bool = JSON) -> None:
    """List users (server admin), or the members of your project (its admins)."""
    with Client() as c:
        users = c.get("/api/users")
    if as_json:
        print_json(users)
        return
    rows = [{**u, "projects": _projects(u["projects"])} for u in users]
    print_table(rows, ["name", "admin", "role", "projects", "email", "disabled", "created_at"])


@users_app.command("create")
def users_create(
    name: str,
    role: str | None = typer.Option("member", help="admin, member or viewer in the project (none: no project)."),
    project: str | None = typer.Option(None, help="The project to join (default: your key's)."),
    admin: bool = typer.Option(False, "--admin", help="Make a server admin (manages every project)."),
    email: str | None = typer.Option(None),
    as_json: bool = JSON,
) -> None:
    """Create a user (server admin)."""
    body = {"name": name, "role": role, "project": project, "admin": admin, "email": email}
    with Client() as c:
        _out(c.post("/api/users", body), as_json, [])


@users_app.command("set-role")
def users_set_role(
    name: str,
    role: str,
    project: str | None = typer.Option(None, help="The project (default: your key's)."),
    as_json: bool = JSON,
) -> None:
    """Change a user's role in a project (its admins)."""
    with Client() as c:
        _out(c.patch(f"/api/users/{name}", {"role": role, "project": project}), as_json, [])


@users_app.command("disable")
def users_disable(name: str, as_json: bool = JSON) -> None:
    """Disable a user: all their keys stop working (admin)."""
    with Client() as c:
        _out(c.patch(f"/api/users/{name}", {"disabled": True}), as_json, [])


@users_app.command("enable")
def users_enable(name: str, as_json: bool = JSON) -> None:
    """Re-enable a user (admin)."""
    with Client() as c:
        _out(c.patch(f"/api/users/{name}", {"disabled": False}), as_json, [])


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", "-n", help="What the key is for."),
    role: str | None = typer.Option(None, help="admin, member or viewer (default: the user's role)."),
    project: str | None = typer.Option(None, help="Project the key is scoped to (default: yours)."),
    user: str | None = typer.Option(None, help="Owner (default: you)."),
    expires: str | None = typer.Option(None, help="Duration (30d, 12h) or ISO-8601 time."),
    as_json: bool = JSON,
) -> None:
    """Create an API key; the key is printed once."""
    body = {"name": name, "role": role, "project": project, "user": user, "expires": expires}
    with Client() as c:
        new = c.post("/api/keys", body)
    if as_json:
        print_json(new)
        return
    console.print(f"Created key [bold]{new['name']}[/bold] ({new['role']}, project {new['project']}).")
    console.print("Copy it now; it is not shown again:\n")
    console.print(f"    {new['key']}\n")


@keys_app.command("ls")
def keys_ls(
    project: str | None = typer.Option(None),
    all_: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = JSON,
) -> None:
    """List API keys (never their secrets)."""
    with Client() as c:
        rows = c.get("/api/keys", project=project, include_revoked=str(all_).lower())
    _out(rows, as_json, ["prefix", "name", "user", "project", "role", "status", "expires_at", "last_used_at"])


@keys_app.command("revoke")
def keys_revoke(ref: str = typer.Argument(..., help="Key id or prefix (pk-xxxxxxxx)."), as_json: bool = JSON) -> None:
    """Revoke an API key."""
    with Client() as c:
        info = c.post(f"/api/keys/{ref}/revoke")
    if as_json:
        print_json(info)
    else:
        console.print(f"Revoked {info['prefix']}… ({info['name']}).")


@audit_app.command("ls")
def audit_ls(
    action: str | None = typer.Option(None, help="Filter by action, `*` wildcard (key.*)."),
    project: str | None = typer.Option(None),
    limit: int = typer.Option(50),
    as_json: bool = JSON,
) -> None:
    """Show the audit log, newest first (admin)."""
    with Client() as c:
        page = c.get("/api/audit", action=action, project=project, limit=limit)
    _out(
        page["items"] if not as_json else page,
        as_json,
        ["at", "actor", "action", "object_type", "object_id", "request_id"],
    )


def whoami(as_json: bool = JSON) -> None:
    """Show who the configured API key belongs to."""
    with Client() as c:
        _out(c.get("/api/whoami"), as_json, [])
