"""Configuration from `podium.toml`, `PODIUM_*` environment variables and command-line overrides.

Precedence, highest first: command-line overrides, environment, `podium.toml`, defaults.
`podium.toml` is read from `$PODIUM_CONFIG` or the current directory.
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from podium.core.errors import ConfigError

ENV_PREFIX = "PODIUM_"
DEFAULT_SERVED_MODELS = ("smollm2-135m-instruct", "minilm-l6-v2")
_toml_data: ContextVar[dict[str, Any]] = ContextVar("podium_toml_data", default={})  # noqa: B039


class _TomlSource(PydanticBaseSettingsSource):
    """Feeds the already-parsed `podium.toml` into pydantic-settings."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        data = _toml_data.get()
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get())


class Settings(BaseSettings):
    """Every setting Podium reads. Field docs are the configuration reference."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    home: Path = Field(Path(".podium"), description="State directory: database, artifacts, keys.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<home>/podium.db. postgresql://… for Postgres."
    )
    artifacts_url: str | None = Field(
        None,
        description="Artifact store: a path or fsspec URL (s3://…, gs://…); default <home>/artifacts.",
    )
    kb_url: str | None = Field(
        None,
        description="Knowledge-base chunk tables (a LanceDB database): a directory or an object-storage URL"
        " (s3://bucket/prefix, gs://…, az://…; credentials from the provider's usual environment variables);"
        " default <home>/kb.",
    )
    host: str = Field("127.0.0.1", description="Address `podium serve` binds.")
    port: int = Field(8800, ge=1, le=65535, description="Port `podium serve` binds.")
    workers: int = Field(1, ge=1, le=64, description="Server worker processes.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    auto_upgrade: bool = Field(
        True, description="`podium serve` migrates an older database itself; false: refuse and ask."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Signs sessions and encrypts provider secrets; default: <home>/secret.key, made once.",
    )
    secret_key_previous: list[SecretStr] = Field(
        default_factory=list,
        description="Earlier secret keys, after a rotation: provider secrets saved under them still decrypt"
        " and are re-encrypted under secret_key when the server starts.",
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    max_upload_bytes: int = Field(
        8 * 1024 * 1024 * 1024,
        ge=1024,
        description="Largest upload accepted by the routes that take files (dataset imports); spooled to disk.",
    )
    job_workers: int = Field(2, ge=0, le=64, description="Background job threads per server process; 0 = none.")
    ray_address: str | None = Field(
        None,
        max_length=500,
        description="The Ray cluster fine-tunes with `backend: ray` are submitted to (e.g. ray://head:10001); empty:"
        " a local Ray started in the server process. Its workers must see the server's home (a shared filesystem).",
    )
    graceful_timeout: float = Field(30.0, ge=0, description="Seconds SIGTERM waits for in-flight requests.")
    cache_dir: Path | None = Field(
        None,
        description="This home's derived files (model files laid out for loading, hub downloads, and converted"
        " models when model_cache_dir cannot be written); default <home>/cache.",
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Per-user cache of files derived from model weights (GGUF files converted to safetensors,"
        " calibrated int8 weights), keyed by the weights' sha256 and shared by every home, so a new home starts"
        " its models in seconds; default $XDG_CACHE_HOME/podium/models or ~/.cache/podium/models. If it cannot"
        " be written (read-only, full), workers use <home>/cache instead and log a warning.",
    )
    serve_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SERVED_MODELS),
        description="Local models `podium serve` loads, each in its own worker process (comma-separated).",
    )
    local_dtype: Literal["float32", "int8"] = Field(
        "int8", description="Local language models: int8 (calibrated, batch-invariant, fast) or float32 (exact)."
    )
    local_max_batch: int = Field(16, ge=1, le=256, description="Sequences a local model decodes together.")
    local_max_queue: int = Field(64, ge=0, le=100_000, description="Requests waiting per local model before 429.")
    serve_on_demand: bool = Field(
        True,
        description="A call to a local model version no worker serves starts one for it (waited for like a"
        " loading model), so an alias moved to a new version is served without a restart.",
    )
    max_model_workers: int = Field(
        4,
        ge=1,
        le=256,
        description="Model worker processes `podium serve` runs at most, serve_models ones included; at the limit,"
        " a model started on demand stops the least recently requested on-demand one (never a serve_models one).",
    )
    worker_threads: int = Field(0, ge=0, le=256, description="Torch threads per model worker; 0: all cores.")
    model_load_wait: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Seconds a call to a local model that is still loading (or restarting) waits for it before"
        " the gateway answers 503 model_loading; 0 answers at once.",
    )
    stream_keepalive: float = Field(
        5.0, gt=0, le=300, description="Seconds between keep-alive comments while a stream waits for its first token."
    )
    trace_queue_size: int = Field(
        50_000, ge=100, le=10_000_000, description="Records the trace writer buffers before requests wait for room."
    )
    trace_writer: Literal["process", "thread"] = Field(
        "process",
        description="Where trace batches are inserted: a child process (keeps the database work off the request"
        " path's GIL) or the writer thread.",
    )
    upstream_allow_private: bool = Field(
        True,
        description="Remote models and routes may point at private networks (loopback, 10/8, 172.16/12, "
        "192.168/16); false refuses them. Link-local and cloud metadata addresses are always refused.",
    )
    model_source_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders under which server admins may register model files by path (comma-separated); "
        "empty: any path. Members register only pip packages and hub ids.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses of the reverse proxies in front of the server (comma-separated): their"
        " X-Forwarded-For/-Proto are believed (client address for sign-in limits; https makes the session"
        " cookie Secure). Empty: no header is believed.",
    )
    tool_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Python modules whose @tool functions chains and agents may call (comma-separated, e.g."
        " myapp.tools), beside those installed packages declare in the podium.tools entry-point group.",
    )
    mcp_servers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="MCP servers whose tools chains and agents may call, listed when the server starts"
        " ([[mcp_servers]] tables in podium.toml: name, transport stdio with command/args/env, or http with"
        " url/headers). Their tools are named <server>__<tool>.",
    )
    metrics_require_key: bool = Field(
        False, description="/metrics answers only requests with a valid API key (Authorization: Bearer)."
    )
    experiment_rebalance_seconds: float = Field(
        60.0, ge=1, le=86_400, description="How often auto prompt experiments move their shares (one bandit step)."
    )
    alerts_interval: float = Field(
        60.0, ge=0, le=86_400, description="Seconds between evaluations of every alert rule; 0: only on request."
    )
    alerts_max_attempts: int = Field(6, ge=1, le=50, description="Attempts per alert notification before it fails.")
    alerts_retention_days: int = Field(
        90, ge=0, le=36_500, description="Days alert events and notifications are kept; 0: forever."
    )
    alerts_retry_initial: float = Field(
        2.0, gt=0, le=3600, description="Seconds before an alert notification's first retry (doubling, jittered)."
    )
    alerts_webhook_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds an alert webhook call (or SMTP session) may take."
    )
    smtp_host: str | None = Field(None, max_length=255, description="SMTP server for alert e-mails; none: no e-mail.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_security: Literal["none", "starttls", "ssl"] = Field("starttls", description="SMTP transport security.")
    smtp_user: str | None = Field(None, max_length=255, description="SMTP login user (none: no login).")
    smtp_password: SecretStr | None = Field(None, description="SMTP login password.")
    smtp_from: str = Field("podium@localhost", max_length=255, description="Sender address of alert e-mails.")
    routes: list[dict[str, Any]] = Field(
        default_factory=list, description="Gateway routes defined in podium.toml ([[routes]] tables)."
    )
    redis_url: str | None = Field(
        None,
        description="Redis (redis://host:6379/0) shared by gateway workers and hosts for limits and caches; "
        "default: in-process.",
    )
    default_max_tokens: int = Field(
        4096,
        ge=1,
        description="Completion tokens reserved against budgets and tokens-per-minute limits for a request "
        "without max_tokens.",
    )
    url: str | None = Field(None, description="Server the CLI and SDK talk to; default http://<host>:<port>.")
    api_key: SecretStr | None = Field(None, description="Key the CLI and SDK send; default <home>/admin.key.")

    @field_validator("serve_models", "model_source_roots", "trusted_proxies", "tool_modules", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    # Derived values -------------------------------------------------------------------------
    @property
    def home_dir(self) -> Path:
        """The absolute state directory."""
        return self.home.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside home."""
        return self.database_url or f"sqlite:///{self.home_dir / 'podium.db'}"

    @property
    def effective_artifacts_url(self) -> str:
        """The artifact root, defaulting to `<home>/artifacts`."""
        return self.artifacts_url or str(self.home_dir / "artifacts")

    @property
    def effective_kb_url(self) -> str:
        """Where knowledge-base chunk tables live, defaulting to `<home>/kb`."""
        return self.kb_url or str(self.home_dir / "kb")

    @property
    def effective_cache_dir(self) -> Path:
        """Where derived files go, defaulting to `<home>/cache`."""
        return (self.cache_dir or self.home_dir / "cache").expanduser().resolve()

    @property
    def effective_model_cache_dir(self) -> Path:
        """The per-user cache of derived model files: `model_cache_dir`, else `$XDG_CACHE_HOME/podium/models`
        (an absolute XDG_CACHE_HOME only, as the XDG spec says), else `~/.cache/podium/models`."""
        if self.model_cache_dir is not None:
            return self.model_cache_dir.expanduser().resolve()
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
        return base / "podium" / "models"

    @property
    def run_dir(self) -> Path:
        """Sockets and state files of running processes."""
        return self.home_dir / "run"

    @property
    def effective_url(self) -> str:
        """The server URL clients use."""
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # nosec B104  # compares with the wildcard address, binds nothing
        return f"http://{host}:{self.port}"

    @property
    def admin_key_path(self) -> Path:
        """Where the first admin key is written."""
        return self.home_dir / "admin.key"


@dataclass(frozen=True)
class ValueSource:
    """Where an effective setting came from."""

    value: Any
    source: str
    secret: bool


def config_path() -> Path:
    """The `podium.toml` to read: `$PODIUM_CONFIG` or `./podium.toml`."""
    explicit = os.environ.get("PODIUM_CONFIG")
    return Path(explicit) if explicit else Path("podium.toml")


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        if os.environ.get("PODIUM_CONFIG"):
            raise ConfigError(f"PODIUM_CONFIG points at {path}, which does not exist; create it or unset PODIUM_CONFIG")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    known = set(Settings.model_fields)
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{path}: unknown key '{key}'; known keys: {', '.join(sorted(known))}",
                details={"key": key},
            )
    return data


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(names)
    if origin is list:
        return "list of " + _type_name(typing.get_args(annotation)[0])
    if origin is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    simple: dict[Any, str] = {
        int: "integer",
        float: "number",
        bool: "boolean (true/false)",
        str: "string",
        Path: "path",
    }
    if annotation in simple:
        return simple[annotation]
    if annotation is SecretStr:
        return "string"
    return str(getattr(annotation, "__name__", annotation))


def _origin_of(key: str, init: dict[str, Any], toml: dict[str, Any], path: Path) -> str:
    if key in init:
        return "command line"
    env_name = ENV_PREFIX + key.upper()
    if any(name.upper() == env_name for name in os.environ):
        return f"env {env_name}"
    if key in toml:
        return str(path)
    return "default"


def load_settings(**overrides: Any) -> Settings:
    """Read the configuration; any bad key or value raises one clear `ConfigError`."""
    path = config_path()
    toml = _read_toml(path)
    init = {k: v for k, v in overrides.items() if v is not None}
    token = _toml_data.set(toml)
    try:
        return Settings(**init)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        field = Settings.model_fields.get(key)
        expected = _type_name(field.annotation) if field else "?"
        origin = _origin_of(key, init, toml, path)
        got = err.get("input")
        reason = err["msg"] if err["type"] not in ("int_parsing", "bool_parsing", "float_parsing") else ""
        message = f"config '{key}' (from {origin}): expected {expected}, got {got!r}"
        if reason and err["type"] not in ("literal_error",):
            message += f" ({reason})"
        raise ConfigError(message, details={"key": key, "expected": expected}) from None
    finally:
        _toml_data.reset(token)


def describe_settings(settings: Settings, **overrides: Any) -> dict[str, ValueSource]:
    """Each effective setting with its origin, for `podium config show`."""
    path = config_path()
    toml = _read_toml(path)
    init = {k: v for k, v in overrides.items() if v is not None}
    out: dict[str, ValueSource] = {}
    derived = {
        "home": str(settings.home_dir),
        "database_url": settings.effective_database_url,
        "artifacts_url": settings.effective_artifacts_url,
        "url": settings.effective_url,
        "cache_dir": str(settings.effective_cache_dir),
        "model_cache_dir": str(settings.effective_model_cache_dir),
    }
    for key, field in Settings.model_fields.items():
        raw = getattr(settings, key)
        secret = isinstance(raw, SecretStr) or field.annotation in (SecretStr, SecretStr | None)
        value: Any = derived.get(key, raw)
        origin = _origin_of(key, init, toml, path)
        if raw is None and key in derived and origin == "default":
            origin = "default (derived)"
        if raw is None and key == "secret_key":
            value, origin = str(settings.home_dir / "secret.key"), "default (file)"
        if raw is None and key == "api_key":
            value, origin = str(settings.admin_key_path), "default (file)"
        out[key] = ValueSource(value=value, source=origin, secret=secret and raw is not None)
    return out
