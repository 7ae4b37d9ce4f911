"""The demo's generation inputs, cut from held-out (test split) songs of the rendered demo set.

    python -m diffariff_jax.demo_inputs --data demo/data --out demo/inputs

Writes, at the set's 48 kHz:
    context.wav        10 s of a test song with its highest part left out (the part the demo asks for)
    context_long.wav   up to 30 s of the same song without that part (the outpainting input)
    prompt.wav         10 s of one stem of another test song (the audio prompt)
    inputs.json        which songs, stems and spans these are, and the left-out part's instrument
Test songs are never trained on (data/layouts.py's song-level split), so the demo generates for music
its models have not seen.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from diffariff_jax import paths
from diffariff_jax.audio.io import AudioError, read_audio, write_audio
from diffariff_jax.data import layouts

SAMPLE_RATE = 48000
CONTEXT_SECONDS = 10.0
LONG_SECONDS = 30.0


def _stems(song: layouts.Song) -> list[np.ndarray]:
    wavs = [sum(read_audio(p, SAMPLE_RATE, mono=True) for p in stem.paths) for stem in song.stems]
    n = min(w.shape[-1] for w in wavs)
    return [w[..., :n] for w in wavs]


def _loudest_span(wav: np.ndarray, seconds: float) -> slice:
    """The window of `seconds` (or the whole clip) with the most energy, on a 1 s grid."""
    length = min(int(seconds * SAMPLE_RATE), wav.shape[-1])
    starts = range(0, wav.shape[-1] - length + 1, SAMPLE_RATE)
    best = max(starts, key=lambda s: float(np.sum(wav[..., s: s + length] ** 2)))
    return slice(best, best + length)


def make_inputs(data: Path, out: Path) -> dict:
    """Writes the files listed in the module doc into `out`; returns what inputs.json records."""
    test = [s for s in layouts.scan(data, "demo") if layouts.split_of(s) == "test"]
    if len(test) < 2:
        raise ValueError(f"--data {data}: {len(test)} test-split songs, the demo needs 2 (render more songs)")
    song, other = test[0], test[1]
    stems = _stems(song)
    left_out = 0  # the demo renderer's parts run from the highest voice down
    context = sum(w for i, w in enumerate(stems) if i != left_out)
    long_span = slice(0, min(int(LONG_SECONDS * SAMPLE_RATE), context.shape[-1]))
    span = _loudest_span(context, CONTEXT_SECONDS)
    other_stems = _stems(other)
    prompt_index = int(np.argmax([float(np.sum(w**2)) for w in other_stems]))
    prompt_span = _loudest_span(other_stems[prompt_index], CONTEXT_SECONDS)
    peak = max(float(np.max(np.abs(context))), 1e-9)
    write_audio(out / "context.wav", context[..., span] * (0.9 / peak), SAMPLE_RATE)
    write_audio(out / "context_long.wav", context[..., long_span] * (0.9 / peak), SAMPLE_RATE)
    prompt = other_stems[prompt_index][..., prompt_span]
    write_audio(out / "prompt.wav", prompt * (0.9 / max(float(np.max(np.abs(prompt))), 1e-9)), SAMPLE_RATE)
    info = {"context_song": song.song_id, "left_out_instrument": song.stems[left_out].instrument,
            "context_span_s": [span.start / SAMPLE_RATE, span.stop / SAMPLE_RATE],
            "context_long_s": long_span.stop / SAMPLE_RATE, "prompt_song": other.song_id,
            "prompt_instrument": other.stems[prompt_index].instrument,
            "prompt_span_s": [prompt_span.start / SAMPLE_RATE, prompt_span.stop / SAMPLE_RATE]}
    (out / "inputs.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m diffariff_jax.demo_inputs", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="rendered demo set (python -m diffariff_jax.data.render)")
    p.add_argument("--out", required=True, help="folder for context.wav, context_long.wav, prompt.wav, inputs.json")
    args = p.parse_args(argv)
    try:
        info = make_inputs(paths.local(args.data, "--data"), paths.local(args.out, "--out"))
    except (ValueError, AudioError) as e:  # PathError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
