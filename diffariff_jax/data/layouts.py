"""Folder-layout readers: turn a multitrack catalogue on disk into a list of songs with named stems.

Layouts (the `layout` argument of `scan`); song ids are "<dataset>/<song name>", whatever folder `root` is:
  generic    one folder per song, one audio file per stem (WAV/FLAC/OGG/AIFF/MP3, any rate, mono or
             stereo); the instrument is the file name ("03_electric_bass.flac" -> "electric bass"). Full
             mixes ("mix", "00_mix", "Song_Mix", "mixdown", "full mix", "instrumental", "accompaniment",
             ...) are recognised after normalising the name and left out; formats libsndfile cannot
             read (.m4a, .aac, .wma, ...) are skipped and counted. Song id: "generic/<folder name>"
             (parent folders are added only where two song folders share a name).
  musdb18hq  ROOT/{train,test}/<song>/{drums,bass,other,vocals,mixture}.wav (sigsep's layout).
  slakh2100  ROOT/{train,validation,test,omitted}/TrackNNNNN/{metadata.yaml, stems/SNN.flac}; the
             instrument is the stem's midi_program_name ("drums" for drum stems); un-rendered stems and
             the 'omitted' split are left out. Only Slakh2100-redux or -split2 is read: the original
             split repeats MIDI files across train/validation/test (slakh-utils splits/README.md).
  moisesdb   ROOT/[<provider>/]<song>/{data.json, <stemName>/<track id>.<ext>}; a stem is the sum of
             every track whose stemName it is (a stemName listed twice in data.json is one stem, as in
             the official loader); its instrument is the stemName ("bowed_strings" -> "bowed strings").
  medleydb   ROOT/.../<Track>/{<Track>_STEMS/<Track>_STEM_NN.wav, <Track>_RAW/...} with the metadata
             <Track>_METADATA.yaml in the track folder or anywhere under ROOT (medleydb's data/Metadata):
             one song per track, stems from _STEMS only (raw microphones are not instruments), named by
             the metadata's `instrument`.
  demo       the set written by `python -m diffariff_jax.data.render` (metadata.json per song).

Context-only stems: a stem that is not one instrument (MUSDB drums/other/vocals, MoisesDB other) or
that bleeds (MoisesDB tracks with has_bleed, MedleyDB songs with has_bleed: yes) may join a context
mix but is never the target; `group_targets=True` / `bleed_targets=True` keep them as targets.

Splits are per song (stems of one song never straddle splits): a layout's official test/validation
split is kept; every other song goes to train/validation/test by a hash of its song id, so adding
songs, or pointing `root` one folder higher or lower, never moves a song to another split.
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

LAYOUTS = ("generic", "musdb18hq", "slakh2100", "moisesdb", "medleydb", "demo")
SPLITS = ("train", "validation", "test")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".aif", ".aiff", ".mp3")
# Audio libsndfile cannot decode: listed as skipped rather than silently ignored.
UNSUPPORTED_AUDIO = (".m4a", ".aac", ".wma", ".alac", ".ape", ".mp4", ".wv")
# Words that make a file name a mix of the song rather than one instrument (after normalising).
MIX_WORDS = frozenset({"mix", "mixture", "mixdown", "master", "mastered", "premaster", "instrumental",
                       "accompaniment", "karaoke", "minusone"})
MUSDB_GROUPS = frozenset({"drums", "other", "vocals"})
MOISESDB_GROUPS = frozenset({"other"})


@dataclass(frozen=True)
class Stem:
    """One instrument of a song; several paths are summed (MoisesDB stems made of several tracks).

    can_be_target: False for context-only stems (groups of instruments, bleeding recordings).
    """

    instrument: str
    paths: tuple[str, ...]
    can_be_target: bool = True


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


def is_mix_name(path: str | Path) -> bool:
    """True for file names of full mixes: '00_mix', 'Song_Mix', 'FullMix', 'mixdown', 'instrumental', ...

    The name is split into words (separators, digits and camelCase boundaries) before matching, so a
    number prefix or a song-name prefix cannot hide a mix.
    """
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", Path(path).stem)
    words = set(re.split(r"[^a-z]+", stem.lower())) - {""}
    return bool(words & MIX_WORDS)


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
    if not any(s.can_be_target for s in song.stems):
        skips.add("no stem can be the target", where, "every stem is a group or bleeds")
        return False
    return True


def _unique_names(dirs: list[Path], root: Path) -> dict[Path, str]:
    """The shortest trailing part of each folder's path (relative to root) that no other folder shares."""
    parts = {d: (d.relative_to(root).parts if d != root else (root.name,)) for d in dirs}
    names, depth = {}, 1
    pending = list(dirs)
    while pending:
        tails = collections.Counter("/".join(parts[d][-depth:]) for d in pending)
        still = []
        for d in pending:
            tail = "/".join(parts[d][-depth:])
            if tails[tail] == 1 or depth >= len(parts[d]):
                names[d] = tail
            else:
                still.append(d)
        pending, depth = still, depth + 1
    return names


def _scan_generic(root: Path, skips: Skips, opts: dict) -> list[Song]:
    by_dir: dict[Path, list[Path]] = collections.defaultdict(list)
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix.lower() in AUDIO_EXTENSIONS:
            by_dir[p.parent].append(p)
        elif p.suffix.lower() in UNSUPPORTED_AUDIO:
            skips.add("unsupported audio format", p, f"{p.suffix}: convert it to WAV or FLAC")
    names = _unique_names(sorted(by_dir), root)
    songs = []
    for d, files in sorted(by_dir.items()):
        stems = []
        for f in files:
            if is_mix_name(f):
                log.info("%s: a mix of the song, not a stem; left out", f)
            else:
                stems.append(Stem(instrument_from_filename(f), (str(f),)))
        song = Song(f"generic/{names[d]}", tuple(stems))
        if _keep(song, d, skips):
            songs.append(song)
    return songs


def _scan_musdb(root: Path, skips: Skips, opts: dict) -> list[Song]:
    songs = []
    for split in ("train", "test"):
        for d in sorted(p for p in (root / split).glob("*") if p.is_dir()):
            stems = tuple(Stem(f.stem.lower(), (str(f),), opts["group_targets"] or f.stem.lower() not in MUSDB_GROUPS)
                          for f in sorted(d.glob("*.wav")) if f.stem.lower() != "mixture")
            song = Song(f"musdb18hq/{d.name}", stems, split)
            if _keep(song, d, skips):
                songs.append(song)
    return songs


def _slakh_original_split(track_id: str) -> str:
    """Where Slakh2100-orig puts a track (slakh-utils' reset rule: ids up to 1500 / 1875 / 2100)."""
    return "train" if track_id <= "Track01500" else "validation" if track_id <= "Track01875" else "test"


def _check_slakh_release(root: Path, tracks: list[tuple[str, str]]) -> None:
    """Refuses Slakh2100-orig: redux has an 'omitted' folder, split2 moves tracks out of their orig split."""
    if (root / "omitted").is_dir() or any(split != _slakh_original_split(t) for t, split in tracks if split):
        return
    raise ValueError(f"{root}: this is Slakh2100-orig, whose splits repeat MIDI files (train leaks into test); "
                     "convert it with slakh-utils: python splits/resplit_slakh.py -d ROOT -s splits/redux.json "
                     "(or splits_v2.json for split2)")


def _scan_slakh(root: Path, skips: Skips, opts: dict) -> list[Song]:
    songs, tracks = [], []
    for meta_path in sorted(root.rglob("metadata.yaml")):
        d = meta_path.parent
        split = d.parent.name if d.parent.name in SPLITS + ("omitted",) else None
        if split == "omitted":
            skips.add("in Slakh's 'omitted' split", d)
            continue
        tracks.append((d.name, split))
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
        song = Song(f"slakh2100/{d.name}", tuple(stems), split)
        if _keep(song, d, skips):
            songs.append(song)
    _check_slakh_release(root, tracks)
    return songs


def _scan_moisesdb(root: Path, skips: Skips, opts: dict) -> list[Song]:
    songs = []
    for meta_path in sorted(root.rglob("data.json")):
        d = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            skips.add("unreadable data.json", meta_path, str(e))
            continue
        paths: dict[str, list[str]] = {}
        bleeds: dict[str, bool] = {}
        for stem in meta.get("stems", []):
            name = str(stem.get("stemName", "")).strip()
            if not name:
                continue
            for track in stem.get("tracks", []):
                f = d / name / f"{track.get('id')}.{track.get('extension', 'wav')}"
                if f.is_file():
                    paths.setdefault(name, []).append(str(f))
                    bleeds[name] = bleeds.get(name, False) or bool(track.get("has_bleed", False))
                else:
                    skips.add("track file missing", f)
        stems = tuple(Stem(name.replace("_", " ").lower(), tuple(sorted(p)),
                           (opts["group_targets"] or name.lower() not in MOISESDB_GROUPS)
                           and (opts["bleed_targets"] or not bleeds[name]))
                      for name, p in paths.items())
        song = Song(f"moisesdb/{d.name}", stems)
        if _keep(song, d, skips):
            songs.append(song)
    return songs


def _yes(value) -> bool:
    return value is True or str(value).strip().lower() in ("yes", "true", "1")


def _scan_medleydb(root: Path, skips: Skips, opts: dict) -> list[Song]:
    metadata = {p.name[: -len("_METADATA.yaml")]: p for p in sorted(root.rglob("*_METADATA.yaml"))}
    songs = []
    for stem_dir in sorted(p for p in root.rglob("*_STEMS") if p.is_dir()):
        d, track = stem_dir.parent, stem_dir.name[: -len("_STEMS")]
        meta_path = d / f"{track}_METADATA.yaml" if (d / f"{track}_METADATA.yaml").is_file() else metadata.get(track)
        if meta_path is None:
            skips.add("no MedleyDB metadata", d, f"{track}_METADATA.yaml not found under {root}")
            continue
        try:
            meta = yaml.safe_load(meta_path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            skips.add("unreadable MedleyDB metadata", meta_path, str(e).splitlines()[0])
            continue
        can_be_target = opts["bleed_targets"] or not _yes(meta.get("has_bleed", "no"))
        stems = []
        for key, info in sorted((meta.get("stems") or {}).items()):
            f = stem_dir / str(info.get("filename", ""))
            if not f.is_file():
                skips.add("stem file missing", f)
                continue
            inst = info.get("instrument") or key
            inst = " and ".join(inst) if isinstance(inst, list) else str(inst)
            stems.append(Stem(inst.strip().lower(), (str(f),), can_be_target))
        song = Song(f"medleydb/{track}", tuple(stems))
        if _keep(song, d, skips):
            songs.append(song)
    return songs


def _scan_demo(root: Path, skips: Skips, opts: dict) -> list[Song]:
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
             "moisesdb": _scan_moisesdb, "medleydb": _scan_medleydb, "demo": _scan_demo}


def scan(root: str | Path, layout: str = "generic", skips: Skips | None = None, *,
         group_targets: bool = False, bleed_targets: bool = False) -> list[Song]:
    """Lists the songs (>= 2 stems, >= 1 of them a possible target) under `root`, sorted by song id.

    Songs with fewer than two stems, missing stem files and unreadable metadata are skipped with one
    log line each and counted in `skips`. A missing root, an unknown layout, Slakh2100-orig or a tree
    with no usable song at all raise, since training on nothing (or on leaked splits) is never meant.
    group_targets / bleed_targets: let group stems / bleeding stems be targets (context-only by default).
    """
    if layout not in _SCANNERS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    skips = Skips() if skips is None else skips
    opts = {"group_targets": bool(group_targets), "bleed_targets": bool(bleed_targets)}
    songs = sorted(_SCANNERS[layout](root, skips, opts), key=lambda s: s.song_id)
    log.info("%s (%s): %d songs, skipped %s", root, layout, len(songs), skips.summary())
    if not songs:
        raise FileNotFoundError(f"{root}: no song with >= 2 stems found for layout {layout!r} "
                                f"(skipped: {skips.summary()})")
    return songs
