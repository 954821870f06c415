"""Near-duplicate removal with MinHash LSH: `near_dedup` keeps the first row of each cluster of similar texts.

Each text is normalized (lowercase, punctuation and symbols removed, whitespace collapsed), cut into words
and then into shingles of `shingle` consecutive words; its MinHash signature (`num_perm` permutations)
estimates the Jaccard similarity of two shingle sets. Banding the signature (`bands` x `rows`) finds
candidate pairs without comparing every pair; a candidate counts as a duplicate when its estimated Jaccard
reaches `threshold` (`verify`, on by default, so that chance band collisions never remove a row).

The pass streams: a row is removed when it is similar to a row kept earlier in the input, and only the
signatures and band keys of kept rows are held (about 0.7 KB per kept row at 128 permutations), never
the rows themselves. The result does not depend on how the input is cut into batches.

Speed comes from doing with numpy, over the bytes of a few hundred rows at a time, what is usually done
per document in Python: the texts are normalized by one `bytes.translate`, words are hashed straight from
the UTF-8 buffer, shingle hashes are built arithmetically from word hashes, and `rensa` computes the
signatures of all those rows from that flat array in one call
(`RMinHash.digest_matrix_from_flat_token_hashes`). Band keys, the index of kept rows (sorted runs behind a
bit filter) and the verification are numpy too; Python loops only over the rows that share a band key with
another row of their own batch.
"""

from __future__ import annotations

import array
import gc
import importlib.util
import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from podium.core.errors import ConfigError
from podium.data.steps.base import Step, StepConfig, StepContext, register

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

_SLICE_BYTES = 512 << 10  # text hashed at a time: the numpy temporaries stay small enough to be reused
_GROUP_ROWS = 16384  # rows decided together at most (their signatures are held at once: 8 MB at 128)
_MEMBERS_LISTED = 1000  # removed rows listed per reported cluster (the count is always exact)

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_SPACE = 0x20
_DELETE = 0x01


def _fmix(x: U64) -> U64:
    """MurmurHash3's 64-bit finalizer, in place: spreads every input bit over the whole word."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def _constants(count: int, salt: int) -> U64:
    """`count` fixed odd 64-bit constants (splitmix64 from `salt`), for hashing positions of words."""
    out = []
    state = salt & (2**64 - 1)
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        out.append((z ^ (z >> 31)) | 1)
    return np.array(out, dtype=np.uint64)


def _byte_table(normalize: bool) -> bytes:
    """How each byte of ASCII text is rewritten: to a space (a word boundary), to `_DELETE` (removed), or
    lowercased; bytes of non-ASCII characters are kept as they are (those rows went through Unicode
    normalization first)."""
    table = bytearray(range(256))
    for code in range(128):
        char = chr(code)
        if code <= _SPACE:
            table[code] = _SPACE
        elif not normalize:
            continue
        elif char.isalnum():
            table[code] = ord(char.lower())
        else:  # ASCII punctuation and symbols (Unicode P* and S*, `_` included), and DEL
            table[code] = _DELETE
    return bytes(table)


_TABLES = {True: _byte_table(True), False: _byte_table(False)}


def normalized_bytes(column: pa.ChunkedArray | pa.Array, normalize: bool) -> tuple[bytes, I64]:
    """The column's texts as one buffer for shingling, and where each row starts in it (`len + 1` offsets;
    the last is the buffer's length).

    The rows are joined by spaces, with a space before the first row and 8 after the last (so that 8 bytes
    can be read at any word start). With `normalize`: lowercase, punctuation and symbols (Unicode P* and
    S*) deleted; always: every whitespace or control character becomes a space, a word boundary. Nulls are
    empty texts. ASCII text is rewritten by one `bytes.translate` over the whole buffer; only rows holding
    other characters go through pyarrow's Unicode-aware functions first.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    rows = len(column)
    if pa.types.is_null(column.type):
        starts = np.arange(1, rows + 2, dtype=np.int64)
        starts[-1] = rows + 8
        return b" " * (rows + 8), starts
    if column.null_count:
        column = pc.fill_null(column, "")
    not_ascii = pc.invert(pc.string_is_ascii(column))
    if pc.any(not_ascii).as_py():
        other = column.filter(not_ascii)
        if normalize:
            other = pc.utf8_lower(other)
            other = pc.replace_substring_regex(other, pattern=r"[\p{P}\p{S}]", replacement="")
        other = pc.replace_substring_regex(other, pattern=r"\p{Z}", replacement=" ")
        column = pc.replace_with_mask(column, not_ascii, other)
    offset_type = np.int64 if pa.types.is_large_string(column.type) else np.int32
    width = np.dtype(offset_type).itemsize
    offsets_buffer, data_buffer = column.buffers()[1], column.buffers()[2]
    bounds = np.frombuffer(offsets_buffer, dtype=offset_type, count=rows + 1, offset=column.offset * width).tolist()
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    text = b" ".join([b"", *[data[a:b] for a, b in itertools.pairwise(bounds)], b" " * 7])
    text = text.translate(_TABLES[normalize])
    starts = np.array(bounds, dtype=np.int64)
    starts += np.arange(1 - starts[0], rows + 2 - starts[0], dtype=np.int64)  # one separator per row before it
    if normalize:
        deleted = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == _DELETE)
        if deleted.size:
            text = text.replace(bytes([_DELETE]), b"")
            starts -= np.searchsorted(deleted, starts)
    starts[-1] = len(text)
    return text, starts


def word_hashes(text: bytes, starts: I64) -> tuple[U64, I64]:
    """A 64-bit hash of every word (maximal run of non-space bytes) of a buffer from `normalized_bytes`, in
    order, and the number of words of each row."""
    buffer = np.frombuffer(text, dtype=np.uint8)
    spaces = np.flatnonzero(buffer == _SPACE)
    gaps = np.diff(spaces)
    gaps -= 1
    real = gaps > 0
    word_starts = spaces[:-1][real]
    word_starts += 1
    lengths = gaps[real]
    counts = np.diff(np.searchsorted(word_starts, starts)).astype(np.int64)
    # 8 bytes at any byte position as one little-endian integer (the buffer ends with 8 spaces).
    words8 = np.ndarray(shape=(len(text) - 7,), dtype="<u8", buffer=buffer, strides=(1,))
    # A word of up to 8 bytes is its own hash (no byte of a word is 0, so the value also tells the length);
    # the shingle hash mixes. A longer word sums its 8-byte pieces, each mixed with its place.
    hashes = words8[word_starts]
    hashes &= _BYTE_MASKS[np.minimum(lengths, 8)]
    longer = np.flatnonzero(lengths > 8)
    if longer.size:
        pieces = (lengths[longer] + 7) // 8
        first = np.zeros(len(longer), dtype=np.int64)
        np.cumsum(pieces[:-1], out=first[1:])
        place = np.arange(int(pieces.sum()), dtype=np.int64) - np.repeat(first, pieces)
        at = np.repeat(word_starts[longer], pieces) + 8 * place
        rest = np.repeat(lengths[longer], pieces) - 8 * place
        part = words8[at] & _BYTE_MASKS[np.minimum(rest, 8)]
        part ^= (place.astype(np.uint64) + np.uint64(1)) * _GOLDEN
        hashes[longer] = np.add.reduceat(_fmix(part), first)
    return hashes, counts


def shingle_hashes(words: U64, counts: I64, size: int) -> tuple[U64, U64]:
    """The hashes of every row's shingles (`size` consecutive words; a row with fewer words is one
    shingle of all its words; an empty row has none), flat, and the `rows + 1` offsets into them."""
    rows = len(counts)
    coefficients = _constants(size, 0x5EED_5417)
    per_row = np.where(counts >= size, counts - size + 1, np.minimum(counts, 1))
    row_offsets = np.zeros(rows + 1, dtype=np.uint64)
    np.cumsum(per_row, out=row_offsets[1:])
    word_offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=word_offsets[1:])
    long_rows = counts >= size
    short_rows = (counts > 0) & ~long_rows
    windows = len(words) - size + 1
    if windows > 0:
        flat = words[:windows] * coefficients[0]
        part = np.empty_like(flat)
        for j in range(1, size):
            np.multiply(words[j : windows + j], coefficients[j], out=part)
            flat += part
        # A window is kept when it ends in the row it starts in: mark the others as ranges (+1 at the start
        # of a range, -1 past its end) and take the running sum.
        marks = np.zeros(windows + 1, dtype=np.int32)
        ends = word_offsets[1:]
        np.add.at(marks, np.minimum(ends[long_rows] - size + 1, windows), 1)
        np.add.at(marks, np.minimum(ends[long_rows], windows), -1)
        np.add.at(marks, np.minimum(word_offsets[:-1][short_rows], windows), 1)
        np.add.at(marks, np.minimum(ends[short_rows], windows), -1)
        flat = flat[np.cumsum(marks[:windows]) == 0]
    else:
        flat = np.zeros(0, dtype=np.uint64)
    short = np.flatnonzero(short_rows)
    if short.size:
        first = word_offsets[short]
        n = counts[short]
        whole = n.astype(np.uint64) * _GOLDEN
        for j in range(size - 1):
            has = n > j
            whole[has] += words[first[has] + j] * coefficients[j]
        # Each short row's one shingle goes where the row starts among the other rows' shingles.
        flat = np.insert(flat, row_offsets[short].astype(np.int64) - np.arange(short.size), whole)
    _fmix(flat)
    return flat, row_offsets


def signatures(flat: U64, row_offsets: U64, num_perm: int, seed: int) -> U32:
    """MinHash signatures (`rows x num_perm`, uint32) of every row's shingle hashes, by `rensa` in one call.
    An empty row's signature is all 0xFFFFFFFF."""
    from rensa import RMinHash

    rows = len(row_offsets) - 1
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(flat, row_offsets, num_perm, seed)
    # rensa hands the matrix out only as lists of ints; `array.fromlist` is the fastest way from there to
    # numpy, and pausing the cyclic GC saves its passes over the many short-lived lists (about 20%).
    values = array.array("I")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        values.fromlist(list(itertools.chain.from_iterable(matrix.to_rows())))
    finally:
        if was_enabled:
            gc.enable()
    return np.frombuffer(values, dtype=np.uint32).reshape(rows, num_perm)


def band_keys(sigs: U32, bands: int, rows: int) -> U64:
    """One 64-bit key per band of each signature (`n x bands`); the band's number is part of the key, so
    keys of different bands never meet."""
    n = sigs.shape[0]
    cube = sigs[:, : bands * rows].reshape(n, bands, rows)
    keys = np.broadcast_to((np.arange(bands, dtype=np.uint64) + np.uint64(1)) * _GOLDEN, (n, bands)).copy()
    for j in range(rows):
        keys ^= cube[:, :, j]
        _fmix(keys)
    return keys


def _area(y: npt.NDArray[np.float64], x: npt.NDArray[np.float64]) -> float:
    """The area under `y(x)` by the trapezoid rule."""
    if len(x) < 2:
        return 0.0
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """The `(bands, rows)` with `bands * rows == num_perm` whose LSH S-curve best separates pairs below and
    above `threshold`: the least false-positive plus false-negative area, weighted equally (the
    criterion of datasketch's `_optimal_param`, restricted to exact factorizations)."""
    grid = np.linspace(0.0, 1.0, 2001)
    best: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        if num_perm % bands:
            continue
        rows = num_perm // bands
        chance = 1.0 - (1.0 - grid**rows) ** bands
        below = grid <= threshold
        false_positive = _area(chance[below], grid[below])
        false_negative = _area(1.0 - chance[~below], grid[~below])
        error = 0.5 * false_positive + 0.5 * false_negative
        if best is None or error < best[0] - 1e-12:
            best = (error, bands, rows)
    assert best is not None
    return best[1], best[2]


def _slices(column: pa.ChunkedArray) -> list[tuple[int, int]]:
    """Row ranges of about `_SLICE_BYTES` of text each (at least one row each). Small slices keep the
    temporaries in cache and below the size for which numpy asks for huge pages; the result of the step
    does not depend on the slicing."""
    n = len(column)
    if pa.types.is_null(column.type):
        return [(0, n)]
    sizes = np.nan_to_num(pc.binary_length(column).to_numpy(zero_copy_only=False)).astype(np.int64)
    ends = np.cumsum(sizes)
    cuts = [0]
    while cuts[-1] < n:
        done = int(ends[cuts[-1] - 1]) if cuts[-1] else 0
        cut = int(np.searchsorted(ends, done + _SLICE_BYTES, side="right"))
        cuts.append(min(n, max(cut, cuts[-1] + 1)))
    return list(itertools.pairwise(cuts))


class _BandIndex:
    """Band keys of kept rows with their signature numbers.

    The keys live in sorted runs (a small log-structured merge: a run is merged into the one before it
    while that one is less than four times its size, so there are O(log n) runs and each key is copied
    O(log n) times). In front of them a bit array with 16 bits per key, set at each key's top bits, answers
    "certainly absent" for about 94% of the keys that are not indexed, which are nearly all the keys a
    batch asks about; only the others are searched for in the runs."""

    BITS_PER_KEY = 16
    MERGE_RATIO = 4

    def __init__(self) -> None:
        self.runs: list[tuple[U64, npt.NDArray[np.uint32]]] = []
        self.size = 0
        self.shift = np.uint64(64 - 16)
        self.filter = np.zeros(1 << (16 - 3), dtype=np.uint8)

    def _mark(self, keys: U64) -> None:
        """Set the filter's bits of `keys` (sorted, so that the bits of one byte are neighbours)."""
        slots = keys >> self.shift
        at = slots >> np.uint64(3)
        bits = np.left_shift(1, slots & np.uint64(7)).astype(np.uint8)
        first = np.flatnonzero(np.r_[True, at[1:] != at[:-1]])
        self.filter[at[first]] |= np.bitwise_or.reduceat(bits, first)

    def maybe(self, keys: U64) -> Bool:
        """False for keys that are certainly not indexed."""
        slots = keys >> self.shift
        bits = self.filter[slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)
        found: Bool = (bits & 1).astype(bool)
        return found

    def query(self, keys: U64) -> tuple[I64, npt.NDArray[np.uint32]]:
        """All `(position in keys, value)` pairs whose key is indexed. `keys` must be sorted."""
        found_at: list[I64] = []
        found: list[npt.NDArray[np.uint32]] = []
        asked = np.flatnonzero(self.maybe(keys)) if self.runs else np.zeros(0, dtype=np.int64)
        wanted = keys[asked]
        for run_keys, run_values in self.runs:
            if not asked.size:
                break
            low = np.searchsorted(run_keys, wanted, side="left")
            hit = np.flatnonzero(low < len(run_keys))
            hit = hit[run_keys[low[hit]] == wanted[hit]]
            if not hit.size:
                continue
            high = np.searchsorted(run_keys, wanted[hit], side="right")
            many = high - low[hit]
            first = np.repeat(low[hit], many)
            rank = np.arange(int(many.sum())) - np.repeat(np.cumsum(many) - many, many)
            found_at.append(np.repeat(asked[hit], many).astype(np.int64))
            found.append(run_values[first + rank])
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint32)
        return np.concatenate(found_at), np.concatenate(found)

    def add(self, keys: U64, values: npt.NDArray[np.uint32]) -> None:
        """Index `keys` (sorted) with their values."""
        if not keys.size:
            return
        self.runs.append((keys, values))
        self.size += len(keys)
        bits = max(16, (self.size * self.BITS_PER_KEY - 1).bit_length())
        if bits > 64 - int(self.shift):  # grown: a larger filter, set again from every key
            self.shift = np.uint64(64 - bits)
            self.filter = np.zeros(1 << (bits - 3), dtype=np.uint8)
            for run_keys, _ in self.runs:
                self._mark(run_keys)
        else:
            self._mark(keys)
        while len(self.runs) > 1 and len(self.runs[-2][0]) < self.MERGE_RATIO * len(self.runs[-1][0]):
            (old_keys, old_values), (new_keys, new_values) = self.runs[-2], self.runs[-1]
            at = np.searchsorted(old_keys, new_keys, side="right")
            self.runs[-2:] = [(np.insert(old_keys, at, new_keys), np.insert(old_values, at, new_values))]

    @property
    def nbytes(self) -> int:
        """Bytes held by the runs and the filter."""
        return sum(k.nbytes + v.nbytes for k, v in self.runs) + self.filter.nbytes


class _Signatures:
    """Signatures of kept rows, numbered in the order they were kept, and the row each came from.

    They live in blocks of under 4 MB that are filled and never moved. A growing array would copy all it
    holds at each growth; and numpy asks the kernel for huge pages for arrays of 4 MB or more, which costs
    milliseconds per fresh megabyte where the kernel compacts memory to find them (transparent huge pages
    with `defrag=madvise`, a common setting, as on the machines of bench/dedup.py)."""

    def __init__(self, num_perm: int) -> None:
        self.num_perm = num_perm
        self.block_rows = max(64, (2 << 20) // (4 * num_perm))
        self.blocks: list[U32] = []
        self.block_origins: list[I64] = []
        self.count = 0

    def append(self, sigs: U32, which: I64, offset: int) -> npt.NDArray[np.uint32]:
        """Store the signatures `sigs[which]` of newly kept rows (input rows `offset + which`); their
        numbers."""
        if self.count + len(which) > np.iinfo(np.uint32).max:
            raise OverflowError("near_dedup holds at most 2**32 kept rows")
        done = 0
        while done < len(which):
            used = self.count % self.block_rows
            if used == 0:
                self.blocks.append(np.empty((self.block_rows, self.num_perm), dtype=np.uint32))
                self.block_origins.append(np.empty(self.block_rows, dtype=np.int64))
            take = min(self.block_rows - used, len(which) - done)
            part = which[done : done + take]
            self.blocks[-1][used : used + take] = sigs[part]
            self.block_origins[-1][used : used + take] = part + offset
            done += take
            self.count += take
        return np.arange(self.count - len(which), self.count, dtype=np.uint32)

    def get(self, numbers: npt.NDArray[np.uint32]) -> U32:
        """The signatures with these numbers."""
        block, within = np.divmod(numbers.astype(np.int64), self.block_rows)
        out = np.empty((len(numbers), self.num_perm), dtype=np.uint32)
        for b in np.unique(block).tolist():
            here = block == b
            out[here] = self.blocks[b][within[here]]
        return out

    def origin(self, number: int) -> int:
        """The input row of signature `number`."""
        return int(self.block_origins[number // self.block_rows][number % self.block_rows])

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return sum(b.nbytes for b in self.blocks) + sum(b.nbytes for b in self.block_origins)


@register
class NearDedup(Step):
    """Remove near-duplicate texts (MinHash LSH), keeping the first row of each cluster."""

    name = "near_dedup"

    class Config(StepConfig):
        """Settings of `near_dedup`."""

        field: str = "text"
        shingle: int = Field(default=5, ge=1, le=64, description="words per shingle")
        num_perm: int = Field(default=128, ge=2, le=4096, description="MinHash permutations")
        bands: int | None = Field(default=None, ge=1, description="LSH bands (default: chosen from threshold)")
        rows: int | None = Field(default=None, ge=1, description="rows per band (bands * rows == num_perm)")
        threshold: float = 0.7
        normalize: bool = True
        seed: int = Field(default=1, ge=0, lt=2**64)
        verify: bool = True
        max_clusters_reported: int = Field(default=1000, ge=0)

    config: NearDedup.Config

    def __init__(self, config: StepConfig, ctx: StepContext, prefix: str = ""):
        super().__init__(config, ctx, prefix)
        c = self.config
        if importlib.util.find_spec("rensa") is None:
            raise ConfigError("step 'near_dedup' needs the Python package `rensa` (pip install rensa)")
        if not 0.0 < c.threshold < 1.0:
            raise self.field_error(f"threshold must lie strictly between 0 and 1, not {c.threshold}", "threshold")
        if c.bands is not None and c.rows is not None:
            if c.bands * c.rows != c.num_perm:
                raise self.field_error(
                    f"bands * rows must equal num_perm ({c.bands} * {c.rows} = {c.bands * c.rows}, "
                    f"num_perm is {c.num_perm})",
                    "bands",
                )
            self.bands, self.rows = c.bands, c.rows
        elif c.bands is not None or c.rows is not None:
            given, name, other = (c.bands, "bands", "rows") if c.bands is not None else (c.rows, "rows", "bands")
            assert given is not None
            if c.num_perm % given:
                raise self.field_error(f"{name} must divide num_perm ({c.num_perm}) so that {other} is whole", name)
            self.bands = c.bands if c.bands is not None else c.num_perm // given
            self.rows = c.rows if c.rows is not None else c.num_perm // given
        else:
            self.bands, self.rows = optimal_bands(c.threshold, c.num_perm)
        self.need = math.ceil(c.threshold * c.num_perm - 1e-9)  # equal positions for estimated J >= threshold
        self.index = _BandIndex()
        self.kept = _Signatures(c.num_perm)
        self.sig_buffer: U32 = np.empty((0, c.num_perm), dtype=np.uint32)
        self.rows_in = 0
        self.removed = 0
        self.cluster_count = 0
        self.clustered: set[int] = set()  # kept rows that have at least one duplicate
        self.clusters: dict[int, dict[str, Any]] = {}  # the first `max_clusters_reported` clusters formed

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """Needs the text column; the columns are unchanged."""
        self.require_column(schema, self.config.field)
        return schema

    def apply(self, batch: pa.Table, offset: int) -> pa.Table:
        """The batch without the rows similar to a row kept before them."""
        n = batch.num_rows
        if n == 0:
            return batch
        column = batch.column(self.config.field)
        keep = np.empty(n, dtype=bool)
        for start in range(0, n, _GROUP_ROWS):
            part = column.slice(start, _GROUP_ROWS)
            keep[start : start + len(part)] = self._keep(part, offset + start)
        self.rows_in += n
        dropped = n - int(keep.sum())
        self.removed += dropped
        return batch if dropped == 0 else batch.filter(pa.array(keep))

    def _keep(self, column: pa.ChunkedArray, offset: int) -> Bool:
        """Which rows of (part of) a batch to keep: signatures and band keys slice by slice, then the
        decisions for all of them."""
        c = self.config
        n = len(column)
        if len(self.sig_buffer) < n:  # reused from batch to batch: fresh large arrays are slow to fault in
            self.sig_buffer = np.empty((n, c.num_perm), dtype=np.uint32)
        sigs = self.sig_buffer[:n]
        keys = np.empty((n, self.bands), dtype=np.uint64)
        has_words = np.empty(n, dtype=bool)
        for start, stop in _slices(column):
            text, offsets = normalized_bytes(column.slice(start, stop - start), c.normalize)
            words, counts = word_hashes(text, offsets)
            del text
            flat, row_offsets = shingle_hashes(words, counts, c.shingle)
            del words
            sigs[start:stop] = signatures(flat, row_offsets, c.num_perm, c.seed)
            keys[start:stop] = band_keys(sigs[start:stop], self.bands, self.rows)
            has_words[start:stop] = counts > 0
        return self._decide(sigs, keys, has_words, offset)

    def _decide(self, sigs: U32, keys: U64, has_words: Bool, offset: int) -> Bool:
        """Which rows of a batch to keep; updates the index, the kept signatures and the clusters."""
        n = len(sigs)
        keep = np.ones(n, dtype=bool)
        live = np.flatnonzero(has_words)  # empty texts are never duplicates and never indexed
        if not live.size:
            return keep
        flat_keys = keys[live].ravel()
        owner = np.repeat(live, self.bands)
        order = np.argsort(flat_keys, kind="stable")
        sorted_keys, sorted_owner = flat_keys[order], owner[order]
        # Rows sharing a key with another row of this batch are decided one by one, in order.
        same = sorted_keys[1:] == sorted_keys[:-1]
        shared = np.zeros(len(sorted_keys), dtype=bool)
        shared[1:] |= same
        shared[:-1] |= same
        in_batch = np.zeros(n, dtype=bool)
        in_batch[sorted_owner[shared]] = True
        # Candidates among rows kept in earlier batches, with the number of equal signature positions.
        at, numbers = self.index.query(sorted_keys)
        best: dict[int, tuple[int, int]] = {}  # row -> (equal positions, signature number)
        if at.size:
            pair_rows = sorted_owner[at]
            code = np.unique((pair_rows.astype(np.uint64) << np.uint64(32)) | numbers.astype(np.uint64))
            pair_rows = (code >> np.uint64(32)).astype(np.int64)
            numbers = (code & np.uint64(0xFFFFFFFF)).astype(np.uint32)
            equal = np.count_nonzero(sigs[pair_rows] == self.kept.get(numbers), axis=1)
            if self.config.verify:
                passed = equal >= self.need
                pair_rows, numbers, equal = pair_rows[passed], numbers[passed], equal[passed]
            if pair_rows.size:
                # Best match per row: most equal positions, then the earliest kept row.
                pick = np.lexsort((numbers, -equal, pair_rows))
                pair_rows, numbers, equal = pair_rows[pick], numbers[pick], equal[pick]
                first = np.flatnonzero(np.r_[True, pair_rows[1:] != pair_rows[:-1]])
                best = {
                    int(r): (int(e), int(m))
                    for r, e, m in zip(pair_rows[first], equal[first], numbers[first], strict=True)
                }
        for row, (equal_count, number) in best.items():
            if not in_batch[row]:
                keep[row] = False
                self._record(self.kept.origin(number), offset + row, equal_count)
        if in_batch.any():
            self._decide_within(sigs, keys, in_batch, best, keep, offset)
        kept_live = live[keep[live]]
        number_of = np.zeros(n, dtype=np.uint32)
        number_of[kept_live] = self.kept.append(sigs, kept_live, offset)
        indexed = keep[sorted_owner]
        self.index.add(sorted_keys[indexed], number_of[sorted_owner[indexed]])
        return keep

    def _decide_within(
        self, sigs: U32, keys: U64, in_batch: Bool, best: dict[int, tuple[int, int]], keep: Bool, offset: int
    ) -> None:
        """The sequential part: rows that share a band key with another row of the batch, in order."""
        local: dict[int, list[int]] = {}  # band key -> rows of this batch kept so far
        verify, need = self.config.verify, self.need
        for row in np.flatnonzero(in_batch).tolist():
            row_keys = keys[row].tolist()
            choice = best.get(row)  # (equal positions, signature number) of the best earlier-batch match
            chosen_row = self.kept.origin(choice[1]) if choice is not None else -1
            chosen_equal = choice[0] if choice is not None else -1
            seen: set[int] = set()
            for key in row_keys:
                for other in local.get(key, ()):
                    if other in seen:
                        continue
                    seen.add(other)
                    equal = int(np.count_nonzero(sigs[row] == sigs[other]))
                    if verify and equal < need:
                        continue
                    # Most equal positions wins; on a tie, the earlier row (earlier batches come first).
                    if equal > chosen_equal or (equal == chosen_equal and offset + other < chosen_row):
                        chosen_row, chosen_equal = offset + other, equal
            if chosen_row >= 0:
                keep[row] = False
                self._record(chosen_row, offset + row, chosen_equal)
            else:
                for key in row_keys:
                    local.setdefault(key, []).append(row)

    def _record(self, kept_row: int, removed_row: int, equal: int) -> None:
        """Count a removed row in its cluster; list it when the cluster is among those reported."""
        if kept_row not in self.clustered:
            self.clustered.add(kept_row)
            self.cluster_count += 1
            if len(self.clusters) < self.config.max_clusters_reported:
                self.clusters[kept_row] = {"kept": kept_row, "removed": [], "similarity": [], "removed_count": 0}
        cluster = self.clusters.get(kept_row)
        if cluster is not None:
            cluster["removed_count"] += 1
            if len(cluster["removed"]) < _MEMBERS_LISTED:
                cluster["removed"].append(removed_row)
                cluster["similarity"].append(round(equal / self.config.num_perm, 4))

    def report(self) -> dict[str, Any]:
        """Counts, the parameters used, and the first clusters found (kept row, removed rows, estimated
        Jaccard similarity of each removed row to the kept one)."""
        c = self.config
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_in - self.removed,
            "duplicates": self.removed,
            "clusters_count": self.cluster_count,
            "clusters": [self.clusters[k] for k in sorted(self.clusters)],
            "clusters_listed": len(self.clusters),
            "params": {
                "field": c.field,
                "shingle": c.shingle,
                "num_perm": c.num_perm,
                "bands": self.bands,
                "rows": self.rows,
                "threshold": c.threshold,
                "normalize": c.normalize,
                "seed": c.seed,
                "verify": c.verify,
            },
            "index_bytes": self.index.nbytes + self.kept.nbytes,
        }
