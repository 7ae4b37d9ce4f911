"""Demo multitrack set: music21's bundled multi-part scores rendered stem by stem through fluidsynth.

    python -m diffariff_jax.data.render --out data/demo --num-songs 300 [--soundfont F.sf2] [--seed 0]

Each song is one corpus work (Bach chorales, Monteverdi madrigals) with, per part, a General MIDI
instrument drawn from a pool that suits the part's register (the lowest part gets a bass instrument),
a random tempo and a random transposition. Every part is rendered alone by the fluidsynth CLI into a
48 kHz mono WAV, so the stems add up to the song. Layout written:

    OUT/index.json                       every song and the instrument of every stem (caption source)
    OUT/<song_id>/metadata.json          work, tempo, transposition, per-stem instrument/program/register
    OUT/<song_id>/<kk>_<instrument>.wav  one 24-bit 48 kHz mono WAV per part, all the same length

Song i depends only on (seed, i), so the set is reproducible whatever the worker count.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
from tqdm import tqdm

from diffariff_jax import paths
from diffariff_jax.audio.io import is_silent, to_mono, write_audio

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
TAIL_SECONDS = 1.5  # release/reverb tail kept after the last note
# A note cut shorter than this by --seconds-max can land its note-on and note-off on one MIDI tick,
# where the note-off may be written first: the note never ends and fluidsynth renders forever.
MIN_NOTE_SECONDS = 0.05
BPM_RANGE = (60.0, 110.0)
TRANSPOSE_RANGE = (-5, 5)
VELOCITY_RANGE = (70, 110)
MIX_PEAK = 0.9  # the song (all stems) is scaled so its mix peaks here; stems keep their balance

# register -> (GM program, caption, family). Pools mix strings, winds, brass, keys and plucked.
INSTRUMENT_POOLS: dict[str, list[tuple[int, str, str]]] = {
    "high": [(40, "violin", "strings"), (73, "flute", "winds"), (68, "oboe", "winds"),
             (71, "clarinet", "winds"), (56, "trumpet", "brass"), (0, "piano", "keys"),
             (11, "vibraphone", "keys"), (46, "harp", "plucked"), (64, "soprano sax", "winds")],
    "mid": [(41, "viola", "strings"), (69, "english horn", "winds"), (60, "french horn", "brass"),
            (65, "alto sax", "winds"), (4, "electric piano", "keys"), (19, "church organ", "keys"),
            (24, "nylon guitar", "plucked"), (25, "steel guitar", "plucked"), (71, "clarinet", "winds")],
    "low": [(42, "cello", "strings"), (57, "trombone", "brass"), (70, "bassoon", "winds"),
            (66, "tenor sax", "winds"), (0, "piano", "keys"), (24, "nylon guitar", "plucked"),
            (60, "french horn", "brass")],
    "bass": [(43, "contrabass", "strings"), (32, "acoustic bass", "bass"), (33, "electric bass", "bass"),
             (58, "tuba", "brass"), (70, "bassoon", "winds"), (35, "fretless bass", "bass")],
}


def default_soundfont() -> Path:
    """The General MIDI soundfont shipped inside pretty_midi (TimGM6mb.sf2)."""
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def list_works() -> list[str]:
    """Sorted corpus paths of multi-part works: Bach (chorales) and Monteverdi madrigals."""
    from music21 import corpus

    paths = [p for p in corpus.getComposer("bach") if p.suffix in (".mxl", ".xml")]
    paths += [p for p in corpus.getComposer("monteverdi") if p.suffix == ".mxl"]
    return sorted(str(p) for p in paths)


def _work_name(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}_{p.stem}".replace(".", "-")


def _part_notes(part, transpose: int) -> list[tuple[float, float, int]]:
    """(onset quarter, duration quarter, MIDI pitch) of every sounding note, ties merged."""
    notes = []
    for el in part.stripTies().flatten().notes:
        dur = float(el.duration.quarterLength)
        if dur <= 0:  # grace notes carry no duration of their own
            continue
        for pitch in getattr(el, "pitches", ()):
            notes.append((float(el.offset), dur, int(pitch.midi) + transpose))
    return notes


def _assign_registers(medians: list[float]) -> list[str]:
    """Lowest part -> 'bass'; the others by median pitch."""
    lowest = int(np.argmin(medians))
    regs = []
    for k, m in enumerate(medians):
        if k == lowest and len(medians) > 1:
            regs.append("bass")
        else:
            regs.append("high" if m >= 66 else "mid" if m >= 58 else "low")
    return regs


def _draw_instruments(registers: list[str], rng: np.random.Generator) -> list[tuple[int, str, str]]:
    """One instrument per part from its register's pool, avoiding repeats within the song."""
    used: set[int] = set()
    out = []
    for reg in registers:
        pool = [x for x in INSTRUMENT_POOLS[reg] if x[0] not in used] or INSTRUMENT_POOLS[reg]
        choice = pool[int(rng.integers(len(pool)))]
        used.add(choice[0])
        out.append(choice)
    return out


def _render_part(midi: pretty_midi.PrettyMIDI, soundfont: Path, tmp: Path, name: str) -> np.ndarray:
    """Renders one single-instrument MIDI with the fluidsynth CLI -> mono float32 [samples]."""
    mid, wav = tmp / f"{name}.mid", tmp / f"{name}.wav"
    midi.write(str(mid))
    cmd = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(SAMPLE_RATE), "-g", "1.0",
           str(soundfont), str(mid)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not wav.exists():
        raise RuntimeError(f"fluidsynth failed on {mid}: {res.stderr.strip()[:200]}")
    data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz for {mid}, expected {SAMPLE_RATE}")
    return to_mono(data.T)[0]


def render_song(index: int, work: str, out_dir: str | Path, seed: int, soundfont: str | Path,
                seconds_max: float | None = None) -> dict | None:
    """Renders song `index` (work `work`) into out_dir/<song_id>/; returns its metadata, None if skipped.

    All randomness comes from numpy's Generator seeded with (seed, index).
    """
    from music21 import converter

    rng = np.random.default_rng([seed, index])
    bpm = float(rng.uniform(*BPM_RANGE))
    transpose = int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1))
    song_id = f"{index:05d}_{_work_name(work)}"
    score = converter.parse(work)
    parts = [(p.partName or f"part{k}", _part_notes(p, transpose)) for k, p in enumerate(score.parts)]
    parts = [(n, notes) for n, notes in parts if notes]
    if len(parts) < 2:
        log.warning("skip %s: %d part(s) with notes, need 2", work, len(parts))
        return None
    registers = _assign_registers([float(np.median([x[2] for x in n])) for _, n in parts])
    instruments = _draw_instruments(registers, rng)
    sec = 60.0 / bpm
    end = max(on + d for _, notes in parts for on, d, _ in notes) * sec
    if seconds_max:
        end = min(end, float(seconds_max))
    num_samples = int(round((end + TAIL_SECONDS) * SAMPLE_RATE))
    stems, meta_stems = [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        for k, ((part_name, notes), (program, caption, family), register) in enumerate(
                zip(parts, instruments, registers)):
            inst = pretty_midi.Instrument(program=program, name=caption)
            velocity = int(rng.integers(*VELOCITY_RANGE))
            for on, dur, pitch in notes:
                start, stop = on * sec, min((on + dur) * sec, end)
                if stop - start >= MIN_NOTE_SECONDS and 0 <= pitch < 128:
                    vel = int(np.clip(velocity + rng.integers(-8, 9), 1, 127))
                    inst.notes.append(pretty_midi.Note(vel, pitch, start, stop))
            # "All notes off" after the tail: fluidsynth renders the release of the last notes up to there,
            # and a note left hanging by any quirk of the score still ends.
            inst.control_changes.append(pretty_midi.ControlChange(123, 0, end + TAIL_SECONDS))
            midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
            midi.instruments.append(inst)
            wav = _render_part(midi, Path(soundfont), Path(tmpdir), f"p{k}")
            wav = np.pad(wav, (0, max(0, num_samples - wav.size)))[:num_samples]
            if is_silent(wav):
                log.warning("skip stem %d (%s) of %s: silent in the rendered span", k, caption, song_id)
                continue
            stems.append(wav)
            meta_stems.append({"file": f"{k:02d}_{caption.replace(' ', '_')}.wav", "instrument": caption,
                               "program": program, "family": family, "register": register, "part_name": part_name,
                               "num_notes": len(inst.notes)})
    if len(stems) < 2:
        log.warning("skip %s: %d non-silent stem(s), need 2", song_id, len(stems))
        return None
    peak = float(np.max(np.abs(np.sum(stems, axis=0))))
    scale = MIX_PEAK / peak if peak > MIX_PEAK else 1.0
    song_dir = Path(out_dir) / song_id
    song_dir.mkdir(parents=True, exist_ok=True)
    for wav, m in zip(stems, meta_stems):
        write_audio(song_dir / m["file"], wav * scale, SAMPLE_RATE)
    meta = {"song_id": song_id, "work": str(Path(work).relative_to(Path(work).parents[1])), "seed": seed,
            "bpm": round(bpm, 3), "transpose": transpose, "sample_rate": SAMPLE_RATE,
            "num_samples": num_samples, "seconds": num_samples / SAMPLE_RATE, "stems": meta_stems}
    (song_dir / "metadata.json").write_text(json.dumps(meta, indent=1))
    return meta


def _render_job(args: tuple) -> dict | None:
    index, work, out_dir, seed, soundfont, seconds_max = args
    try:
        return render_song(index, work, out_dir, seed, soundfont, seconds_max)
    except Exception as e:  # one broken score must not stop a 300-song render; it is logged and counted
        log.warning("skip song %d (%s): %s", index, work, e)
        return None


def render_dataset(out_dir: str | Path, num_songs: int = 300, soundfont: str | Path | None = None,
                   seed: int = 0, seconds_max: float | None = None, workers: int | None = None) -> dict:
    """Renders `num_songs` songs in parallel and writes OUT/index.json; returns the index dict."""
    if shutil.which("fluidsynth") is None:
        raise RuntimeError("fluidsynth not found on PATH: apt-get install fluidsynth")
    soundfont = Path(soundfont) if soundfont else default_soundfont()
    if not soundfont.is_file():
        raise FileNotFoundError(f"{soundfont}: soundfont not found")
    works = list_works()
    order = np.random.default_rng(seed).permutation(len(works))
    jobs = [(i, works[order[i % len(works)]], str(out_dir), seed, str(soundfont), seconds_max)
            for i in range(num_songs)]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    results: list[dict | None] = [None] * num_songs
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        it = pool.imap_unordered(_render_job, jobs)
        for meta in tqdm(it, total=num_songs, desc="render", unit="song"):
            if meta is not None:
                results[int(meta["song_id"][:5])] = meta
    songs = [{"song_id": m["song_id"], "dir": m["song_id"], "seconds": m["seconds"],
              "stems": [{"file": s["file"], "instrument": s["instrument"]} for s in m["stems"]]}
             for m in results if m is not None]
    index = {"sample_rate": SAMPLE_RATE, "seed": seed, "soundfont": soundfont.name, "songs": songs}
    (Path(out_dir) / "index.json").write_text(json.dumps(index, indent=1))
    log.info("rendered %d songs, skipped %d, into %s", len(songs), num_songs - len(songs), out_dir)
    return index


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--num-songs", type=int, default=300, help="songs to render (default 300)")
    ap.add_argument("--soundfont", default=None, help="GM .sf2 (default: pretty_midi's TimGM6mb.sf2)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of works, instruments and transpositions")
    ap.add_argument("--seconds-max", type=float, default=None, help="cut each song after this many seconds")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.num_songs < 1:
        ap.error(f"--num-songs must be >= 1, got {args.num_songs}")
    try:
        out = paths.local(args.out, "--out")  # fluidsynth and soundfile write local files only
        soundfont = str(paths.local(args.soundfont, "--soundfont")) if args.soundfont else None
    except paths.PathError as e:
        ap.exit(1, f"error: {e}\n")
    if out.exists() and not out.is_dir():
        ap.error(f"--out {args.out} is a file, not a folder")
    try:
        index = render_dataset(out, args.num_songs, soundfont, args.seed, args.seconds_max, args.workers)
    except (FileNotFoundError, RuntimeError) as e:  # no fluidsynth, no soundfont: one line, not a traceback
        ap.exit(1, f"error: {e}\n")
    print(f"{len(index['songs'])} songs -> {out}/index.json")


if __name__ == "__main__":
    main()
