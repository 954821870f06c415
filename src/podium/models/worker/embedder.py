"""Micro-batching for embeddings: concurrent requests are encoded together on one thread; and what an
embeddings request's `input` may be (text, or OpenAI cl100k_base token ids read back into text)."""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any

from podium.models.worker.cl100k import SIZE, VOCABULARY, VocabularyMissing
from podium.models.worker.loader import LoadedEmbedder
from podium.models.worker.protocol import RequestError

MAX_INPUTS = 2048  # items of `input` per request (OpenAI's limit)
MAX_IDS = 8192  # token ids in one item (OpenAI's embedding models take 8,192 tokens)
MAX_TOTAL_IDS = 300_000  # token ids in one request (OpenAI's limit)
_SHAPE = "'input' must be a non-empty string, or a non-empty array of strings, of token ids or of token-id arrays"


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class EmbedInput:
    """An embeddings request's `input`: texts, or token-id arrays (`nested` when they came as an array of
    arrays, so errors name `input[n][i]`)."""

    texts: list[str]
    ids: list[list[int]]
    nested: bool = False


def parse_input(raw: Any) -> EmbedInput:
    """The texts, or the token-id arrays, of an embeddings request's `input`, bounded; a `RequestError`
    naming `input` (and the item) otherwise."""
    if isinstance(raw, str):
        return EmbedInput([raw], [])
    if not isinstance(raw, list) or not raw:
        raise RequestError(_SHAPE, "input")
    if all(_is_id(t) for t in raw):  # one input as token ids
        found = EmbedInput([], [list(raw)])
    elif len(raw) > MAX_INPUTS:
        raise RequestError(f"'input' takes at most {MAX_INPUTS} items per request; it has {len(raw)}", "input")
    elif all(isinstance(t, str) for t in raw):
        return EmbedInput(list(raw), [])
    elif all(isinstance(t, list) for t in raw):
        for n, ids in enumerate(raw):
            if not ids or not all(_is_id(t) for t in ids):
                raise RequestError(f"input[{n}] must be a non-empty array of token ids (integers)", "input")
        found = EmbedInput([], [list(ids) for ids in raw], nested=True)
    else:
        raise RequestError(_SHAPE + ", not a mix of them", "input")
    total = 0
    for n, ids in enumerate(found.ids):
        if len(ids) > MAX_IDS:
            where = f"input[{n}]" if found.nested else "'input'"
            raise RequestError(f"{where} has {len(ids)} token ids; at most {MAX_IDS} per input", "input")
        total += len(ids)
    if total > MAX_TOTAL_IDS:
        raise RequestError(f"'input' has {total} token ids; at most {MAX_TOTAL_IDS} per request", "input")
    return found


def decode_ids(found: EmbedInput) -> list[str]:
    """The token-id arrays of `found` as text, read as OpenAI cl100k_base ids (see `podium.models.worker.cl100k`);
    a `RequestError` naming the first id that is not one, or saying the vocabulary is missing. Blocking: the
    first call reads the vocabulary file."""
    try:
        VOCABULARY.load()
    except VocabularyMissing as exc:
        raise RequestError(str(exc), "input", code="unsupported_value") from None
    texts = []
    for n, ids in enumerate(found.ids):
        bad = VOCABULARY.unknown(ids)
        if bad is not None:
            where = f"input[{n}][{bad}]" if found.nested else f"input[{bad}]"
            raise RequestError(
                f"{where} is {ids[bad]}, not a token of OpenAI's cl100k_base vocabulary (ids 0-{SIZE - 1}): a local"
                " embedding model reads token ids as cl100k_base ids, as langchain's OpenAIEmbeddings sends them",
                "input",
            )
        texts.append(VOCABULARY.decode(ids))
    return texts


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[tuple[list[list[float]], int]]
    loop: asyncio.AbstractEventLoop


class EmbedBatcher:
    """Collects texts for a couple of milliseconds (or up to `max_batch`) and encodes them in one call."""

    def __init__(self, loaded: LoadedEmbedder, max_batch: int = 128, wait: float = 0.002):
        self.loaded = loaded
        self.dimensions = loaded.dimensions
        self.max_tokens = loaded.max_tokens
        self.max_batch = max_batch
        self.wait = wait
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="podium-embed", daemon=True)
        self._tokenizer: Any = loaded.model.tokenizer

    def start(self) -> None:
        """Start the encoding thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the queued work."""
        self._queue.put(None)
        self._thread.join(10)

    def count(self, text: str) -> int:
        """Tokens the model sees for `text` (capped at its window, as encoding truncates)."""
        return min(len(self._tokenizer.encode(text, add_special_tokens=True)), self.max_tokens)

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Normalised embeddings for `texts`, and the tokens they used."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[list[float]], int]] = loop.create_future()
        self._queue.put(_Job(texts, future, loop))
        return await future

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            size = len(first.texts)
            try:
                while size < self.max_batch:
                    nxt = self._queue.get(timeout=self.wait)
                    if nxt is None:
                        self._queue.put(None)
                        break
                    jobs.append(nxt)
                    size += len(nxt.texts)
            except queue.Empty:
                pass
            texts = [t for j in jobs for t in j.texts]
            try:
                vectors = self.loaded.model.encode(
                    texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                )
                enc = self._tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_tokens)
                counts = [len(ids) for ids in enc["input_ids"]]
            except Exception as exc:  # deliver the failure to every waiting request
                for j in jobs:
                    j.loop.call_soon_threadsafe(_fail, j.future, exc)
                continue
            offset = 0
            for j in jobs:
                n = len(j.texts)
                part = [v.tolist() for v in vectors[offset : offset + n]]
                tokens = sum(counts[offset : offset + n])
                offset += n
                j.loop.call_soon_threadsafe(_deliver, j.future, (part, tokens))


def _deliver(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
