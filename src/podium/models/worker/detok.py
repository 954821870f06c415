"""Incremental detokenisation with stop sequences: text is released only when it can no longer turn
into a stop sequence or a broken multi-byte character."""

from __future__ import annotations

from typing import Any


class TextStream:
    """Turns generated token ids into text deltas, cutting at the first stop sequence."""

    def __init__(self, tokenizer: Any, stops: list[str]):
        self.tokenizer = tokenizer
        self.stops = stops
        self.ids: list[int] = []
        self.text = ""  # decoded so far (all ids)
        self.emitted = ""  # released to the client
        self.stopped = False
        self._offset = 0  # ids before this index are settled in `self._prefix`
        self._prefix = ""

    def _decode(self) -> str:
        # decode the ids since the last newline only (a safe boundary for every tokenizer), so the cost
        # per token stays flat however long the output grows
        tail = self.tokenizer.decode(self.ids[self._offset :], skip_special_tokens=True)
        text = self._prefix + tail
        if tail.endswith("\n"):
            self._offset = len(self.ids)
            self._prefix = text
        return str(text)

    def push(self, token_id: int) -> str:
        """Add a token; returns the newly releasable text (maybe empty). Sets `stopped` at a stop sequence."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self._decode()
        if text.endswith("\ufffd"):
            return ""
        self.text = text
        for stop in self.stops:
            idx = text.find(stop, max(0, len(self.emitted) - len(stop) + 1))
            if idx != -1:
                final = text[:idx]
                delta = final[len(self.emitted) :]
                self.emitted = final
                self.stopped = True
                return delta
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        safe = text[: len(text) - hold]
        delta = safe[len(self.emitted) :]
        self.emitted = safe
        return delta

    def finish(self) -> str:
        """At the end of generation: release whatever was held back."""
        if self.stopped:
            return ""
        rest = self.text[len(self.emitted) :]
        self.emitted = self.text
        return rest.replace("\ufffd", "")
