"""Records of precomputed CAE latents + CLAP embeddings, and the LDM's deterministic batch reader.

Layout of a latents directory (written by `python -m diffariff_jax.precompute`):

    latents.json                                  frames, latent_dim, clap_dim, sample_rate, CAE/CLAP names, ...
    latents-00000-of-00012.array_record           one record per example (ArrayRecord, group_size:1)
    ...

ArrayRecord was chosen over TFRecord (benchmarks/records_speed.py, docs/latents.md): similar write and
sequential-read speed, but it reads any record by index, so batch `step` of a run is a pure function of
(seed, step) -- resume is O(1) and no shuffle buffer is needed. A shard is written under a temporary name
and renamed when complete, so a file with the final name is always whole: re-running skips it.

One record: b"DAL1", a little-endian uint32 header length, a JSON header (song_id, instrument, offset in
samples, and [name, dtype, shape] of each array) and the raw arrays: target [frames, 64] and context
[frames, 64] latents (float16 by default: they are ~unit-std, so 1e-3 relative rounding is far below the
noise the LDM is trained at) and clap [K, D] float32, the CLAP embeddings of K random target sub-segments.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from diffariff_jax import paths

MAGIC = b"DAL1"
INFO_FILE = "latents.json"
# One record per chunk for random access; uncompressed because zstd saves ~7% on ~Gaussian float16 latents
# but costs 2-3x in write and random-read speed (benchmarks/records_speed.py).
WRITER_OPTIONS = "group_size:1,uncompressed"
SHARD_RE = re.compile(r"^latents-(\d{5})-of-(\d{5})\.array_record$")
# ArrayRecord reads local files only (its own GCS support is unreliable): a bucket is mounted (gcsfuse) or
# copied to local disk first; every function here takes its directory through paths.local.
WHAT = "latent records dir"


@dataclass
class LatentExample:
    target: np.ndarray   # [frames, latent_dim] CAE latents of the target stem
    context: np.ndarray  # [frames, latent_dim] CAE latents of the context mix (of silence if no stem was kept)
    clap: np.ndarray     # [K, clap_dim] L2-normalised CLAP embeddings of K random target sub-segments
    song_id: str
    instrument: str
    offset: int          # first sample of the segment in the song, at the dataset's sample rate
    clap_offsets: tuple[int, ...] = ()  # first sample of each CLAP sub-segment within the segment


def encode_example(ex: LatentExample, latent_dtype: str = "float16") -> bytes:
    arrays = [("target", np.asarray(ex.target, latent_dtype)), ("context", np.asarray(ex.context, latent_dtype)),
              ("clap", np.asarray(ex.clap, np.float32))]
    header = json.dumps({"song_id": ex.song_id, "instrument": ex.instrument, "offset": int(ex.offset),
                         "clap_offsets": [int(o) for o in ex.clap_offsets],
                         "arrays": [[n, a.dtype.str, list(a.shape)] for n, a in arrays]}).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header] + [a.tobytes() for _, a in arrays])


def decode_example(data: bytes) -> LatentExample:
    """Inverse of encode_example; arrays are read-only views of `data` in their stored dtype."""
    if data[:4] != MAGIC:
        raise ValueError(f"not a latent record (magic {data[:4]!r}, expected {MAGIC!r})")
    (n,) = struct.unpack_from("<I", data, 4)
    header = json.loads(data[8:8 + n])
    pos, arrays = 8 + n, {}
    for name, dtype, shape in header["arrays"]:
        count = int(np.prod(shape))
        arrays[name] = np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=pos).reshape(shape)
        pos += count * np.dtype(dtype).itemsize
    return LatentExample(arrays["target"], arrays["context"], arrays["clap"], header["song_id"],
                         header["instrument"], int(header["offset"]), tuple(header.get("clap_offsets", ())))


def shard_path(out_dir: str | Path, index: int, count: int) -> Path:
    return paths.local(out_dir, WHAT) / f"latents-{index:05d}-of-{count:05d}.array_record"


def write_shard(out_dir: str | Path, index: int, count: int, examples: Iterable[LatentExample],
                latent_dtype: str = "float16") -> int:
    """Writes shard `index` of `count` atomically (temp name, then rename); returns its example count."""
    final = shard_path(out_dir, index, count)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    final.parent.mkdir(parents=True, exist_ok=True)
    writer = ArrayRecordWriter(str(tmp), WRITER_OPTIONS)
    n = 0
    try:
        for ex in examples:
            writer.write(encode_example(ex, latent_dtype))
            n += 1
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, final)
    return n


def write_info(out_dir: str | Path, info: dict) -> None:
    path = paths.local(out_dir, WHAT) / INFO_FILE
    tmp = path.with_name(f"{INFO_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_info(root: str | Path) -> dict:
    path = paths.local(root, WHAT) / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no {INFO_FILE}; not a latents directory made by diffariff_jax.precompute")
    return json.loads(path.read_text())


def list_shards(root: str | Path) -> list[Path]:
    """Complete shards of a latents directory; raises if a shard of the set is missing (unfinished run)."""
    root = paths.local(root, WHAT)
    found = sorted(p for p in root.glob("latents-*.array_record") if SHARD_RE.match(p.name))
    if not found:
        raise FileNotFoundError(f"{root}: no latents-*.array_record shards")
    count = int(SHARD_RE.match(found[0].name).group(2))
    missing = sorted(set(range(count)) - {int(SHARD_RE.match(p.name).group(1)) for p in found})
    if missing:
        raise FileNotFoundError(f"{root}: {len(missing)} of {count} shards missing (first: "
                                f"{shard_path(root, missing[0], count).name}); finish the precompute run")
    return found


class ShardReaders:
    """Open ArrayRecord readers shared by the reader threads, at most `max_open` of them at once.

    A thread borrows a reader of one shard for one read and gives it back; idle readers stay open for the
    next read and the least recently used one is closed when a new shard needs a slot. So a set of 520
    shards read by 4 threads holds max_open files, not 4 x 520 (the usual limit is 1024), and no reader is
    ever used by two threads at once. max_open is raised to `workers` so every thread can hold one.
    """

    def __init__(self, shard_paths: list[Path], max_open: int, workers: int = 1):
        self._paths = list(shard_paths)
        self.max_open = max(int(max_open), int(workers), 1)
        self._idle: collections.OrderedDict[int, tuple[int, ArrayRecordReader]] = collections.OrderedDict()
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open_count(self) -> int:
        return self._open

    @property
    def num_shards(self) -> int:
        return len(self._paths)

    @contextlib.contextmanager
    def borrow(self, shard: int) -> Iterator[ArrayRecordReader]:
        reader = self._take(shard)
        try:
            yield reader
        finally:
            with self._lock:
                self._idle[id(reader)] = (shard, reader)

    def _take(self, shard: int) -> ArrayRecordReader:
        with self._lock:
            for key, (held, reader) in reversed(self._idle.items()):
                if held == shard:
                    del self._idle[key]
                    return reader
            while self._open >= self.max_open and self._idle:
                _, (_, oldest) = self._idle.popitem(last=False)
                oldest.close()
                self._open -= 1
            self._open += 1
        try:
            return ArrayRecordReader(str(self._paths[shard]), "readahead_buffer_size:0,max_parallelism:0")
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def close(self) -> None:
        with self._lock:
            for _, reader in self._idle.values():
                reader.close()
            self._open -= len(self._idle)
            self._idle.clear()


class LatentReader:
    """Deterministic per-host batches {"target", "context": [B, crop_frames, 64], "clap": [B, D]} float32.

    Batch `step` of host h is a pure function of (seed, step, h): the global batch of step s holds positions
    s*G .. s*G+G-1 (G = batch_size * process_count) of an endless stream of per-epoch permutations of every
    example (permutation seeded by (seed, epoch)); host h takes its consecutive batch_size of them. Each
    example gets a random crop of crop_frames latent frames (the same span of target and context) and one
    of its K CLAP vectors, drawn from numpy seeded by (seed, step, h). `workers` threads build batches ahead
    (data.reader_workers); at most `max_open` shard files are open at once (data.max_open_shards).
    """

    def __init__(self, root: str | Path, batch_size: int, crop_frames: int, seed: int = 0,
                 process_index: int = 0, process_count: int = 1, workers: int = 1, max_open: int = 256):
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")
        self.root = paths.local(root, WHAT)
        self.info = read_info(root)
        self.batch_size, self.crop_frames, self.seed = int(batch_size), int(crop_frames), int(seed)
        self.process_index, self.process_count, self.workers = process_index, process_count, max(int(workers), 1)
        if self.crop_frames > self.info["frames"]:
            raise ValueError(f"{root}: crop_frames {crop_frames} > the {self.info['frames']} frames per record")
        self.readers = ShardReaders(list_shards(root), max_open, self.workers)
        counts = []
        for shard in range(self.readers.num_shards):
            with self.readers.borrow(shard) as reader:
                counts.append(reader.num_records())
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_examples = int(self._starts[-1])
        if self.num_examples == 0:
            raise ValueError(f"{root}: the shards hold no examples")
        self._perm_cache: tuple[int, np.ndarray] | None = None

    def close(self) -> None:
        self.readers.close()

    def _permutation(self, epoch: int) -> np.ndarray:
        cached = self._perm_cache  # one read: another thread may replace it meanwhile
        if cached is None or cached[0] != epoch:
            cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.num_examples))
            self._perm_cache = cached
        return cached[1]

    def indices(self, step: int) -> np.ndarray:
        """Global example indices of this host's batch at `step`: [batch_size]."""
        pos = (step * self.process_count + self.process_index) * self.batch_size + np.arange(self.batch_size)
        epochs, within = np.divmod(pos, self.num_examples)
        out = np.empty(self.batch_size, np.int64)
        for e in np.unique(epochs):
            out[epochs == e] = self._permutation(int(e))[within[epochs == e]]
        return out

    def read(self, indices: np.ndarray) -> list[LatentExample]:
        """Examples by global index (grouped per shard, one parallel read per shard)."""
        shard = np.searchsorted(self._starts, indices, side="right") - 1
        out: list[LatentExample | None] = [None] * len(indices)
        for s in np.unique(shard):
            where = np.flatnonzero(shard == s)
            with self.readers.borrow(int(s)) as reader:
                blobs = reader.read([int(i) for i in indices[where] - self._starts[s]])
            for w, b in zip(where, blobs):
                out[w] = decode_example(b)
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        examples = self.read(self.indices(step))
        rng = np.random.default_rng([self.seed, step, self.process_index])
        starts = rng.integers(0, [e.target.shape[0] - self.crop_frames + 1 for e in examples])
        pick = rng.integers(0, [e.clap.shape[0] for e in examples])
        sl = [slice(int(s), int(s) + self.crop_frames) for s in starts]
        return {"target": np.stack([e.target[c] for e, c in zip(examples, sl)]).astype(np.float32),
                "context": np.stack([e.context[c] for e, c in zip(examples, sl)]).astype(np.float32),
                "clap": np.stack([e.clap[int(k)] for e, k in zip(examples, pick)]).astype(np.float32)}

    def iterate(self, start_step: int = 0, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
        """Endless batches from start_step on; self.workers threads build up to max(prefetch, workers) ahead.

        Order never depends on timing: batch k is always self.batch(start_step + k).
        """
        ahead = max(prefetch, self.workers, 1)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="latents") as pool:
            pending = collections.deque(pool.submit(self.batch, s) for s in range(start_step, start_step + ahead))
            step = start_step + ahead
            try:
                while True:
                    out = pending.popleft().result()
                    pending.append(pool.submit(self.batch, step))
                    step += 1
                    yield out
            finally:
                for f in pending:  # the pool's exit then waits for the running ones: no thread left in C++
                    f.cancel()


def global_batches(reader: LatentReader, mesh, start_step: int = 0, prefetch: int = 2) -> Iterator[dict]:
    """reader's per-host batches as global jax.Arrays sharded over the mesh's ("data", "fsdp") axes."""
    from diffariff_jax.training.mesh import make_global_batch

    for batch in reader.iterate(start_step, prefetch):
        yield make_global_batch(batch, mesh)
