"""Constrained decoding for the local engine, on xgrammar: JSON mode, JSON-schema output and tool calls are
enforced token by token, so the answer has the asked shape whatever the model would have said.

xgrammar was chosen over lm-format-enforcer and outlines-core by `bench/constrain.py` (bench/RESULTS.md): its
token masks cost microseconds against a decode step's milliseconds, it compiles a schema in milliseconds,
and its structural tags express "free text, or tool calls between tags" directly. JSON is generated without
free whitespace (`any_whitespace=False`): a small model left to choose whitespace can emit newlines until
max_tokens. Schemas are strict (no properties beyond those declared), as OpenAI's strict mode.

Grammars compile on a worker thread (`Grammars` is thread-safe, and xgrammar caches compiled schemas); the
matchers advance on the engine thread.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import torch

from podium.models.worker.protocol import OutputFormat, RequestError, ToolRequest
from podium.models.worker.toolcalls import CALL_CLOSE, CALL_OPEN

# what a tool call looks like in the generated text; toolcalls.parse_calls reads it back
_CALL_BEGIN = CALL_OPEN + '\n{"name": "'
_ARGS = '", "arguments": '
_CALL_END = "}\n" + CALL_CLOSE


class GrammarConstraint:
    """One sequence's matcher (`api.Constraint`): masks logits, advances on each accepted token."""

    def __init__(self, compiled: Any, vocab_size: int):
        import xgrammar as xgr

        self._xgr = xgr
        self.vocab_size = vocab_size
        self.matcher = xgr.GrammarMatcher(compiled)
        self.mask = xgr.allocate_token_bitmask(1, vocab_size)

    def apply(self, logits: torch.Tensor) -> None:
        self.matcher.fill_next_token_bitmask(self.mask, 0)
        self._xgr.apply_token_bitmask_inplace(logits.view(1, -1), self.mask, vocab_size=self.vocab_size)
        if logits.shape[-1] > self.vocab_size:  # padded embedding rows no token maps to
            logits[self.vocab_size :] = float("-inf")

    def accept(self, token: int) -> bool:
        return bool(self.matcher.accept_token(token))

    def done(self) -> bool:
        return bool(self.matcher.is_terminated())


class Grammars:
    """Compiles output formats and tool sets for one model's tokenizer (built on first use: importing
    xgrammar and reading the vocabulary take a fraction of a second)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.stop_ids = stop_ids
        self._compiler: Any = None
        self._lock = threading.Lock()

    def _get_compiler(self) -> Any:
        with self._lock:
            if self._compiler is None:
                import xgrammar as xgr

                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=self.stop_ids
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_limit_bytes=64 << 20)
            return self._compiler

    def for_format(self, fmt: OutputFormat) -> Any:
        """The grammar of a `response_format`; a 400 naming the schema if xgrammar cannot compile it."""
        compiler = self._get_compiler()
        if fmt.kind == "json_object":
            return compiler.compile_json_schema(json.dumps({"type": "object"}), any_whitespace=False, strict_mode=False)
        try:
            return compiler.compile_json_schema(json.dumps(fmt.schema), any_whitespace=False, strict_mode=True)
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError with the schema's fault
            raise RequestError(
                f"'response_format.json_schema.schema' cannot be enforced: {_first_line(exc)}",
                "response_format.json_schema.schema",
            ) from None

    def for_tools(self, tools: ToolRequest) -> Any:
        """The grammar of tool calls: with tool_choice auto, free text in which `<tool_call>` opens a call;
        required or a named tool, one call or more and nothing else. Each call's arguments follow its
        tool's schema."""
        import xgrammar as xgr
        from xgrammar import structural_tag as st

        compiler = self._get_compiler()
        functions = [f for f in tools.functions if tools.forced in (None, f["name"])]
        tags = []
        for fn in functions:
            index = tools.functions.index(fn)
            try:  # the arguments' grammar alone, compact (a structural tag's JSON format allows free whitespace)
                arguments = xgr.Grammar.from_json_schema(
                    json.dumps(fn["parameters"]), any_whitespace=False, strict_mode=True
                )
            except Exception as exc:
                raise RequestError(
                    f"tools[{index}].function.parameters cannot be enforced: {_first_line(exc)}",
                    f"tools[{index}].function.parameters",
                ) from None
            tags.append(
                st.TagFormat(
                    begin=_CALL_BEGIN + fn["name"] + _ARGS,
                    content=st.GrammarFormat(grammar=str(arguments)),
                    end=_CALL_END,
                )
            )
        single = not tools.parallel or tools.forced is not None
        fmt: Any
        if tools.choice == "auto":
            fmt = st.TriggeredTagsFormat(triggers=[CALL_OPEN], tags=tags, stop_after_first=single)
        else:
            fmt = st.TagsWithSeparatorFormat(tags=tags, separator="\n", at_least_one=True, stop_after_first=single)
        return compiler.compile_structural_tag(xgr.StructuralTag(format=fmt))

    def constraint(self, compiled: Any) -> GrammarConstraint:
        """A fresh matcher over `compiled` for one sequence."""
        return GrammarConstraint(compiled, self.vocab_size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
