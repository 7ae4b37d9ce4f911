"""Folder-layout readers: turn a multitrack catalogue on disk into a list of songs with named stems.

Layouts (the `layout` argument of `scan`):
  generic    one folder per song, one audio file per stem (WAV/FLAC/OGG, any rate, mono or stereo);
             the instrument is the file name ("03_electric_bass.flac" -> "electric bass"); files
             called mix/mixture/master are full mixes, not stems, and are left out.
  musdb18hq  ROOT/{train,test}/<song>/{drums,bass,other,vocals,mixture}.wav
  slakh2100  ROOT/[<split>/]TrackNNNNN/{metadata.yaml, stems/SNN.flac}; instrument = the stem's
             midi_program_name ("drums" for drum stems); un-rendered stems and the 'omitted' split are left out.
  moisesdb   ROOT/[<provider>/]<song>/{data.json, <stemName>/<track id>.wav}; a stem is the sum of the
             tracks in its folder, its instrument the stemName ("bowed_strings" -> "bowed strings").
  demo       the set written by `python -m diffariff_jax.data.render` (metadata.json per song).

Splits are per song (stems of one song never straddle splits): a layout's official test/validation
split is kept; every other song goes to train/validation/test by a hash of its song id, so adding
songs never moves an existing song to another split.
"""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

LAYOUTS = ("generic", "musdb18hq", "slakh2100", "moisesdb", "demo")
SPLITS = ("train", "validation", "test")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MIX_NAMES = ("mix", "mixture", "master")


@dataclass(frozen=True)
class Stem:
    """One instrument of a song; several paths are summed (MoisesDB stems made of several tracks)."""

    instrument: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Song:
    """A multitrack song. split: the layout's official split ('train' | 'validation' | 'test') or None."""

    song_id: str
    stems: tuple[Stem, ...]
    split: str | None = None


class Skips(collections.Counter):
    """Counts skipped inputs by reason and logs one line per skip naming the path."""

    def add(self, reason: str, path: str | Path, detail: str = "") -> None:
        self[reason] += 1
        log.warning("skip %s: %s%s", path, reason, f" ({detail})" if detail else "")

    def summary(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.items())) or "none"


def instrument_from_filename(path: str | Path) -> str:
    """'03_electric_bass.flac' -> 'electric bass' (leading track numbers and separators dropped)."""
    name = re.sub(r"^[\d\s_\-.]+", "", Path(path).stem) or Path(path).stem
    return re.sub(r"[_\-]+", " ", name).strip().lower()


def _hash01(song_id: str) -> float:
    """A uniform number in [0, 1) fixed by the song id (stable across Python runs and machines)."""
    return int.from_bytes(hashlib.sha256(song_id.encode()).digest()[:8], "big") / 2.0**64


def split_of(song: Song, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> str:
    """The split of a song: its official test/validation split, else train/validation/test by hash.

    fractions: (train, validation, test); songs officially in 'train' are divided between train and
    validation in the ratio fractions[0] : fractions[1].
    """
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"split fractions must be 3 non-negative numbers, got {fractions}")
    if song.split in ("validation", "test"):
        return song.split
    u = _hash01(song.song_id)
    if song.split == "train":
        return "validation" if u < fractions[1] / max(fractions[0] + fractions[1], 1e-12) else "train"
    total = sum(fractions)
    if u < fractions[0] / total:
        return "train"
    return "validation" if u < (fractions[0] + fractions[1]) / total else "test"


def songs_in_split(songs: list[Song], split: str, fractions=(0.9, 0.05, 0.05)) -> list[Song]:
    """The songs of one split, in song-id order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return sorted((s for s in songs if split_of(s, fractions) == split), key=lambda s: s.song_id)


def _keep(song: Song, where: Path, skips: Skips) -> bool:
    if len(song.stems) < 2:
        skips.add("fewer than 2 stems", where, f"{len(song.stems)} stem(s)")
        return False
    return True


def _scan_generic(root: Path, skips: Skips) -> list[Song]:
    by_dir: dict[Path, list[Path]] = collections.defaultdict(list)
    for p in root.rglob("*"):
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
            by_dir[p.parent].append(p)
    songs = []
    for d, files in sorted(by_dir.items()):
        stems = tuple(Stem(instrument_from_filename(f), (str(f),)) for f in sorted(files)
                      if f.stem.lower() not in MIX_NAMES)
        song = Song(d.relative_to(root).as_posix() if d != root else root.name, stems)
        if _keep(song, d, skips):
            songs.append(song)
    return songs


def _scan_musdb(root: Path, skips: Skips) -> list[Song]:
    songs = []
    for split in ("train", "test"):
        for d in sorted(p for p in (root / split).glob("*") if p.is_dir()):
            stems = tuple(Stem(f.stem.lower(), (str(f),)) for f in sorted(d.glob("*.wav"))
                          if f.stem.lower() not in MIX_NAMES)
            song = Song(f"{split}/{d.name}", stems, split)
            if _keep(song, d, skips):
                songs.append(song)
    return songs


def _scan_slakh(root: Path, skips: Skips) -> list[Song]:
    songs = []
    for meta_path in sorted(root.rglob("metadata.yaml")):
        d = meta_path.parent
        split = d.parent.name if d.parent.name in SPLITS + ("omitted",) else None
        if split == "omitted":
            skips.add("in Slakh's 'omitted' split", d)
            continue
        try:
            meta = yaml.safe_load(meta_path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            skips.add("unreadable metadata.yaml", meta_path, str(e).splitlines()[0])
            continue
        stems = []
        for key, info in sorted((meta.get("stems") or {}).items()):
            if not info.get("audio_rendered", True):
                continue  # Slakh lists un-rendered MIDI tracks; they have no audio by design
            files = [d / "stems" / f"{key}{ext}" for ext in AUDIO_EXTENSIONS if (d / "stems" / f"{key}{ext}").is_file()]
            if not files:
                skips.add("stem file missing", d / "stems" / f"{key}.flac")
                continue
            name = "drums" if info.get("is_drum") else str(info.get("midi_program_name") or info.get("inst_class") or key)
            stems.append(Stem(name.lower(), (str(files[0]),)))
        song = Song(d.relative_to(root).as_posix(), tuple(stems), split)
        if _keep(song, d, skips):
            songs.append(song)
    return songs


def _scan_moisesdb(root: Path, skips: Skips) -> list[Song]:
    songs = []
    for meta_path in sorted(root.rglob("data.json")):
        d = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            skips.add("unreadable data.json", meta_path, str(e))
            continue
        stems = []
        for stem in meta.get("stems", []):
            name = str(stem.get("stemName", "")).strip()
            paths = []
            for track in stem.get("tracks", []):
                f = d / name / f"{track.get('id')}.{track.get('extension', 'wav')}"
                if f.is_file():
                    paths.append(str(f))
                else:
                    skips.add("track file missing", f)
            if name and paths:
                stems.append(Stem(name.replace("_", " ").lower(), tuple(sorted(paths))))
        song = Song(d.relative_to(root).as_posix(), tuple(stems))
        if _keep(song, d, skips):
            songs.append(song)
    return songs


def _scan_demo(root: Path, skips: Skips) -> list[Song]:
    metas = sorted(root.glob("*/metadata.json"))
    if not metas:
        raise FileNotFoundError(f"{root}: no */metadata.json; render the demo set with "
                                f"`python -m diffariff_jax.data.render --out {root}`")
    songs = []
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        d = meta_path.parent
        stems = []
        for s in meta["stems"]:
            if (d / s["file"]).is_file():
                stems.append(Stem(s["instrument"], (str(d / s["file"]),)))
            else:
                skips.add("stem file missing", d / s["file"])
        song = Song(meta["song_id"], tuple(stems))
        if _keep(song, d, skips):
            songs.append(song)
    return songs


_SCANNERS = {"generic": _scan_generic, "musdb18hq": _scan_musdb, "slakh2100": _scan_slakh,
             "moisesdb": _scan_moisesdb, "demo": _scan_demo}


def scan(root: str | Path, layout: str = "generic", skips: Skips | None = None) -> list[Song]:
    """Lists the songs (>= 2 stems each) under `root`, sorted by song id.

    Songs with fewer than two stems, missing stem files and unreadable metadata are skipped with one
    log line each and counted in `skips`. A missing root, an unknown layout or a tree with no usable
    song at all raise, since training on nothing is never what the user meant.
    """
    if layout not in _SCANNERS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    skips = Skips() if skips is None else skips
    songs = sorted(_SCANNERS[layout](root, skips), key=lambda s: s.song_id)
    log.info("%s (%s): %d songs, skipped %s", root, layout, len(songs), skips.summary())
    if not songs:
        raise FileNotFoundError(f"{root}: no song with >= 2 stems found for layout {layout!r} "
                                f"(skipped: {skips.summary()})")
    return songs
