"""Micro-batching for embeddings: concurrent requests are encoded together on one thread."""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from typing import Any

from podium.models.worker.loader import LoadedEmbedder


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
