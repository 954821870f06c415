"""The auth domain's service interface: projects, users, API keys, authentication and the audit log.

Other domains, the routes, the pages and the CLI call these functions; the logic lives in one module per
seam (`projects`, `users`, `keys`, `audit`).
"""

from __future__ import annotations

from podium.auth.audit import AuditInfo, list_audit, record_audit
from podium.auth.authn import KEY_PREFIX, KeyCache, hash_key, key_cache, principal_of_key
from podium.auth.keys import (
    KeyInfo,
    NewKey,
    bootstrap,
    create_key,
    list_keys,
    revoke_key,
)
from podium.auth.lookup import KeyRef, ProjectRef, UserRef, key_ref, names_of, project_ref, user_ref
from podium.auth.projects import (
    DEFAULT_PROJECT,
    MemberInfo,
    ProjectInfo,
    create_project,
    get_project,
    list_members,
    list_projects,
    remove_member,
    set_member,
    update_project,
)
from podium.auth.users import ADMIN_USER, UserInfo, create_user, list_users, update_user
from podium.core.durations import parse_expiry
from podium.core.paging import Page

__all__ = [
    "ADMIN_USER",
    "DEFAULT_PROJECT",
    "KEY_PREFIX",
    "AuditInfo",
    "KeyCache",
    "KeyInfo",
    "KeyRef",
    "MemberInfo",
    "NewKey",
    "Page",
    "ProjectInfo",
    "ProjectRef",
    "UserInfo",
    "UserRef",
    "bootstrap",
    "create_key",
    "create_project",
    "create_user",
    "get_project",
    "hash_key",
    "key_cache",
    "key_ref",
    "list_audit",
    "list_keys",
    "list_members",
    "list_projects",
    "list_users",
    "names_of",
    "parse_expiry",
    "principal_of_key",
    "project_ref",
    "record_audit",
    "remove_member",
    "revoke_key",
    "set_member",
    "update_project",
    "update_user",
    "user_ref",
]
