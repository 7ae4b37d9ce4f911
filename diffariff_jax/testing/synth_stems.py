"""A synthetic multitrack tree in the demo layout (folder per song, metadata.json, 48 kHz mono WAV stems).

Four timbres a tiny model can tell apart (harmonic content and register differ), so CLAP training and
precompute tests run on data with real structure in seconds, without fluidsynth:

    from diffariff_jax.testing.synth_stems import make_tree
    root = make_tree(tmp_path / "data", num_songs=12, seconds=6.0)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 48000
INSTRUMENTS = ("flute", "violin", "electric bass", "snare drum")


def synth_stem(kind: str, rng: np.random.Generator, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[samples] float32 peaking at 0.3: a sine (flute), a bright harmonic tone (violin), a low square
    (electric bass) or noise bursts twice a second (snare drum); pitch drawn from `rng`."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    if kind == "flute":
        x = np.sin(2 * np.pi * rng.uniform(700, 1200) * t)
    elif kind == "violin":
        f = rng.uniform(300, 600)
        x = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 15))
    elif kind == "electric bass":
        x = np.sign(np.sin(2 * np.pi * rng.uniform(45, 90) * t))
    elif kind == "snare drum":
        x = rng.standard_normal(t.size) * (np.mod(t, 0.5) < 0.08)
    else:
        raise ValueError(f"unknown synthetic instrument {kind!r}; choose one of {', '.join(INSTRUMENTS)}")
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def make_tree(root: str | Path, num_songs: int = 12, seconds: float = 6.0, stems_per_song: int = 3,
              seed: int = 0) -> Path:
    """Writes num_songs songs of `stems_per_song` distinct synthetic instruments; returns root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(num_songs):
        song = root / f"{i:05d}_synth"
        song.mkdir(parents=True)
        stems = []
        for k, kind in enumerate(rng.permutation(INSTRUMENTS)[:stems_per_song]):
            name = f"{k:02d}_{kind.replace(' ', '_')}.wav"
            sf.write(song / name, synth_stem(str(kind), rng, seconds), SAMPLE_RATE, subtype="PCM_24")
            stems.append({"file": name, "instrument": str(kind)})
        (song / "metadata.json").write_text(json.dumps({"song_id": song.name, "stems": stems}))
    return root
