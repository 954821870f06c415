"""Prompt templates: sandboxed Jinja2, checked when a version is pushed and rendered with typed variables.

Templates may use conditionals, loops and filters, but not attributes or items whose names start with an
underscore, imports, includes or template inheritance: those are rejected when the version is created
(static check) and the sandbox refuses anything that slips through at render time. This module imports
only Jinja2, so the SDK renders prompts locally without a server round trip.
"""

from __future__ import annotations

import ctypes
import functools
import math
import re
import string
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, meta, nodes, pass_environment
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.lexer import TokenStream
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from podium.core.errors import InvalidInput

MAX_OUTPUT = 1_000_000  # characters (or items) one operation in a template may produce


MAX_WIDTH = 10_000  # largest field width in a format string
MAX_RENDERED = 5_000_000  # characters one rendered template may have
MAX_GROUPS = 10_000  # groups `slice` and `batch` may make
MAX_DIGITS = 10_000  # digits of the largest integer `**` may build
RENDER_SECONDS = 2.0  # CPU a template may take to render, whatever it loops over
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[a-zA-Z%]")


def _check_widths(fmt: str) -> None:
    """Refuse format strings whose widths or precisions would build huge strings: `'%999999999d'`,
    `'%*d' % (999999999, 1)`, `'{:{w}}'.format(x, w=999999999)`."""
    numbers: list[str] = []
    for width, precision in _PERCENT_SPEC.findall(fmt):
        if "*" in (width, precision):
            raise SecurityError("a '*' width or precision is not allowed in a format string")
        numbers += [n for n in (width, precision) if n]
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        fields = []  # not a str.format string; `%` formatting was checked above
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise SecurityError("a nested replacement field in a format spec is not allowed")
        numbers += re.findall(r"\d+", spec or "")
    if any(int(n) > MAX_WIDTH for n in numbers):
        raise SecurityError(f"a format width over {MAX_WIDTH:,} is not allowed")


def _check_size_of(size: int) -> None:
    """A string or list an operator would build: refused past `MAX_OUTPUT` characters or items."""
    if size > MAX_OUTPUT:
        raise SecurityError(f"an expression built more than {MAX_OUTPUT:,} characters or items")


class RenderTimeout(Exception):
    """Raised inside a render that ran past its time budget (see `_Watchdog`)."""


class _Watchdog:
    """Stops renders that run past their budget: one thread wakes every 50 ms and raises `RenderTimeout`
    inside any rendering thread past its deadline (`PyThreadState_SetAsyncExc`, delivered between two
    bytecodes: a template compiles to Python, so every loop it runs is interruptible; the operations that
    run long in C, such as building huge strings, are bounded by size instead). A render that ends
    clears a timeout still pending for it, so the exception never escapes into the caller's code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float) -> int:
        thread = threading.get_ident()
        with self._lock:
            self._deadlines[thread] = time.monotonic() + seconds
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="podium-render-watchdog", daemon=True)
                self._thread.start()
        return thread

    def unwatch(self, thread: int) -> None:
        with self._lock:
            self._deadlines.pop(thread, None)
            fired = thread in self._fired
            self._fired.discard(thread)
            if fired:  # clear a timeout raised too late to land in the render
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)
        if fired:
            raise RenderTimeout

    def _run(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                for thread, deadline in self._deadlines.items():
                    if deadline <= now and thread not in self._fired:
                        self._fired.add(thread)
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(thread), ctypes.py_object(RenderTimeout)
                        )


_WATCHDOG = _Watchdog()


class _Generator(CodeGenerator):
    """Compiles `a ~ b` to a bounded concatenation (`ns.s = ns.s ~ ns.s` in a loop doubles a string)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 - Jinja's visitor name
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


@pass_environment
def _safe_join(environment: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    """`join`, refusing before it builds a string over `MAX_RENDERED` characters."""
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    items = [str(v) for v in value]
    if sum(map(len, items)) + len(d) * max(len(items) - 1, 0) > MAX_RENDERED:
        raise SecurityError(f"join would build more than {MAX_RENDERED:,} characters")
    return d.join(items)


def _safe_replace(s: Any, old: str, new: str, count: int | None = None) -> str:
    """`replace`, refusing before it builds a string over `MAX_RENDERED` characters."""
    text = str(s)
    times = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        times = min(times, count)
    if len(text) + times * max(len(new) - len(old), 0) > MAX_RENDERED:
        raise SecurityError(f"replace would build more than {MAX_RENDERED:,} characters")
    return text.replace(old, new, -1 if count is None else count)


def _bounded(fn: Any, limit: int = MAX_OUTPUT) -> Any:
    """A filter whose integer arguments (widths, counts) and format string are bounded."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > limit:
                raise SecurityError(f"a filter argument over {limit:,} is not allowed")
        if fn.__name__ == "do_format" and args and isinstance(args[0], str):
            _check_widths(args[0])
        return fn(*args, **kwargs)

    return wrapper


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on what one expression may build: `{{ 'x' * n }}`, `{{ 9 ** n }}`,
    `{{ '%999999999d' % n }}`, `{{ s | center(n) }}` with a huge `n` from a request's variables would
    otherwise let one request exhaust the server's memory or CPU."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _Generator

    def __init__(self, **options: Any):
        super().__init__(**options)
        for name in ("center", "indent", "wordwrap", "format", "truncate"):
            self.filters[name] = _bounded(self.filters[name])
        for name in ("slice", "batch"):  # each group is a list: a million of them is a million lists
            self.filters[name] = _bounded(self.filters[name], MAX_GROUPS)
        self.filters["join"] = _safe_join
        self.filters["replace"] = _safe_replace
        self.globals.pop("lipsum", None)  # generates text of any size; no use in a prompt

    def wrap_str_format(self, value: Any) -> Any:
        """`'{:>999999}'.format(x)` is checked like the `format` filter."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and isinstance(getattr(value, "__self__", None), str):
            _check_widths(value.__self__)
        return wrapped

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            _check_widths(left)
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                    raise SecurityError(f"repeating a sequence {times} times exceeds {MAX_OUTPUT:,} items")
        if operator == "**" and isinstance(right, int) and isinstance(left, int | float):
            if abs(right) > 1000:
                raise SecurityError(f"exponent {right} is too large (at most 1000)")
            if isinstance(left, int) and abs(left) > 1 and abs(right) * math.log10(abs(left)) > MAX_DIGITS:
                raise SecurityError(f"a power with more than {MAX_DIGITS:,} digits is not allowed")
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _check_size_of(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        """`a ~ b ~ …`, refused past `MAX_OUTPUT` characters."""
        texts = [str(p) for p in parts]
        _check_size_of(sum(map(len, texts)))
        return "".join(texts)


ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)

TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list,),
    "object": (dict,),
}


def _position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _parse(source: str) -> nodes.Template:
    """Parse, raising `TemplateSyntaxError` with a `column` attribute: where the lexer had got to."""
    reached = [0]

    def tracked() -> Iterator[tuple[int, str, str]]:
        offset = 0
        for lineno, token, value in ENV.lexer.tokeniter(source, None):
            text = str(value)
            found = source.find(text, offset) if text else -1
            if found >= 0:
                offset = found
            reached[0] = offset
            yield lineno, token, value
            if found >= 0:
                offset = found + len(text)
                reached[0] = offset

    parser = Parser(ENV, "")
    try:
        parser.stream = TokenStream(ENV.lexer.wrap(tracked()), None, None)
        return parser.parse()
    except TemplateSyntaxError as exc:
        line, column = _position(source, reached[0])
        exc.column = column if line == exc.lineno else None  # type: ignore[attr-defined]
        raise


def _unsafe(tree: nodes.Template) -> str | None:
    for stmt in tree.find_all((nodes.Import, nodes.FromImport, nodes.Include, nodes.Extends)):
        return f"line {stmt.lineno}: {type(stmt).__name__.lower()} is not allowed in prompt templates"
    for flt in tree.find_all(nodes.Filter):
        if flt.name == "attr":
            return f"line {flt.lineno}: the 'attr' filter is not allowed in prompt templates"
    node: Any
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if isinstance(node, nodes.Getattr):
            name: Any = node.attr
        elif isinstance(node, nodes.Getitem):
            name = node.arg.value if isinstance(node.arg, nodes.Const) else None
        else:
            name = node.name
        if isinstance(name, str) and name.startswith("_"):
            return f"line {node.lineno}: access to {name!r} is not allowed (names starting with '_' are private)"
    return None


def check(source: str, where: str) -> set[str]:
    """Validate a template; returns the variables it uses. Syntax errors name the line and column."""
    try:
        tree = _parse(source)
    except TemplateSyntaxError as exc:
        column = getattr(exc, "column", None)
        at = f"line {exc.lineno}" + (f", column {column}" if column else "")
        raise InvalidInput(
            f"template syntax error in {where} at {at}: {exc.message}",
            details={"where": where, "line": exc.lineno, "column": column},
        ) from None
    problem = _unsafe(tree)
    if problem:
        raise InvalidInput(f"unsafe template in {where}, {problem}", details={"where": where})
    return set(meta.find_undeclared_variables(tree))


def check_expression(source: str, where: str) -> nodes.Expr:
    """Validate a sandboxed expression (what goes between `{{` and `}}`, e.g. `steps.classify.label == "refund"`);
    its parsed tree. The rules are the templates': no private names, no `attr` filter."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput(f"{where} must be a non-empty expression", details={"where": where})
    try:
        parser = Parser(ENV, source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("unexpected text after the expression", parser.stream.current.lineno)
    except TemplateSyntaxError as exc:
        raise InvalidInput(
            f"expression syntax error in {where}: {exc.message}", details={"where": where, "line": exc.lineno}
        ) from None
    problem = _unsafe(nodes.Template([nodes.Output([expr])]))
    if problem:
        raise InvalidInput(f"unsafe expression in {where}, {problem}", details={"where": where})
    return expr


def evaluate(source: str, values: Mapping[str, Any], where: str = "expression") -> Any:
    """The value of a sandboxed expression over `values`, with the limits of `render` (time and size)."""
    check_expression(source, where)
    thread = _WATCHDOG.watch(RENDER_SECONDS)
    try:
        return _defined(ENV.compile_expression(source, undefined_to_none=False)(**values))
    except RenderTimeout:
        raise InvalidInput(f"evaluating {where} took more than {RENDER_SECONDS:g} s", code="render_timeout") from None
    except SecurityError as exc:
        raise InvalidInput(f"unsafe operation refused in {where}: {exc}") from None
    except UndefinedError as exc:
        raise InvalidInput(f"{where}: {exc.message}", code="missing_variables") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise InvalidInput(f"evaluating {where} failed: {exc}") from None
    finally:
        _WATCHDOG.unwatch(thread)


def _defined(value: Any) -> Any:
    """`value`, or the `UndefinedError` of the first undefined name in it (an expression that reads a missing
    field returns a StrictUndefined that raises only when used)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Undefined):
            str(item)  # raises UndefinedError naming what is missing
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


def tree(source: str, where: str) -> nodes.Template:
    """The parsed tree of a template already valid by `check` (for callers that read its references)."""
    check(source, where)
    return _parse(source)


def normalise_variables(raw: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`{name: {type, default?, description?}}` (a bare type name is shorthand); defaults must match."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in (raw or {}).items():
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise InvalidInput(f"variable name {name!r} must be an identifier not starting with '_'")
        if isinstance(spec, str):
            spec = {"type": spec}
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise InvalidInput(f"variable {name!r}: expected {{type, default, description}}, got {spec!r}")
        unknown = set(spec) - {"type", "default", "description"}
        if unknown:
            raise InvalidInput(f"variable {name!r}: unknown keys {sorted(unknown)}; use type, default, description")
        kind = spec.get("type", "string")
        if kind not in TYPES:
            raise InvalidInput(f"variable {name!r}: type {kind!r} is not one of {', '.join(TYPES)}")
        clean: dict[str, Any] = {"type": kind}
        if "default" in spec:
            clean["default"] = coerce(name, kind, spec["default"])
        if spec.get("description"):
            clean["description"] = str(spec["description"])
        out[name] = clean
    return out


def coerce(name: str, kind: str, value: Any) -> Any:
    """A value as the declared type; strings (from a CLI or a form) are converted where that is exact."""
    if value is None:
        return None
    allowed = TYPES[kind]
    if isinstance(value, allowed) and not (kind in ("integer", "number") and isinstance(value, bool)):
        if kind == "number" and isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"variable {name!r} must be a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind == "integer":
                return int(text)
            if kind == "number":
                number = float(text)
                if math.isfinite(number):
                    return number
            if kind == "boolean" and text.lower() in ("true", "false", "1", "0", "yes", "no"):
                return text.lower() in ("true", "1", "yes")
        except ValueError:
            pass
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"variable {name!r} must be {kind}, got {type(value).__name__} {value!r}"[:300])


def bind(declared: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    """Declared variables with values (given, else default), typed; every missing name in one error.
    Values for names the template does not declare are ignored."""
    bound: dict[str, Any] = {}
    missing = []
    for name, spec in declared.items():
        if name in values and values[name] is not None:
            bound[name] = coerce(name, spec.get("type", "string"), values[name])
        elif "default" in spec:
            bound[name] = spec["default"]
        else:
            missing.append(name)
    if missing:
        raise InvalidInput(
            f"missing variable{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            details={"missing": missing},
            code="missing_variables",
        )
    return bound


@functools.lru_cache(maxsize=1024)
def _compiled(source: str) -> Any:
    return ENV.from_string(source)


def _generate(source: str, values: Mapping[str, Any]) -> str:
    parts: list[str] = []
    size = 0
    thread = _WATCHDOG.watch(RENDER_SECONDS)
    try:
        for chunk in _compiled(source).generate(**values):
            size += len(chunk)
            if size > MAX_RENDERED:
                raise SecurityError(f"the rendered text exceeds {MAX_RENDERED:,} characters")
            parts.append(chunk)
    finally:
        _WATCHDOG.unwatch(thread)
    return "".join(parts)


def render(source: str, values: Mapping[str, Any], where: str = "template") -> str:
    """Render one template with bound values, in the sandbox: the output may not exceed `MAX_RENDERED`
    characters nor the work `RENDER_SECONDS` seconds."""
    try:
        return _generate(source, values)
    except RenderTimeout:
        raise InvalidInput(
            f"rendering {where} took more than {RENDER_SECONDS:g} s; it loops too much for a prompt",
            code="render_timeout",
        ) from None
    except SecurityError as exc:
        raise InvalidInput(f"unsafe operation refused in {where}: {exc}") from None
    except UndefinedError as exc:
        raise InvalidInput(f"{where}: {exc.message}", code="missing_variables") from None
    except TemplateSyntaxError as exc:
        raise InvalidInput(f"template syntax error in {where} at line {exc.lineno}: {exc.message}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise InvalidInput(f"rendering {where} failed: {exc}") from None


def render_content(
    kind: str,
    text: str | None,
    messages: list[dict[str, Any]] | None,
    declared: Mapping[str, Mapping[str, Any]],
    values: Mapping[str, Any] | None,
) -> tuple[str | None, list[dict[str, Any]] | None, dict[str, Any]]:
    """Render a version's text or messages: (text, messages, bound values). Shared by server and SDK."""
    if values is not None and not isinstance(values, Mapping):
        raise InvalidInput("`variables` must be an object of name → value")
    bound = bind(declared, values or {})
    if kind == "text":
        return render(text or "", bound, "template"), None, bound
    rendered = [
        {"role": m["role"], "content": render(m["content"], bound, f"messages[{i}].content")}
        for i, m in enumerate(messages or [])
    ]
    return None, rendered, bound
