"""A few seconds of real-sounding music for the CAE tests: a Bach chorale rendered with fluidsynth.

music21's bundled corpus (bach/bwv66.6) -> MIDI -> fluidsynth with pretty_midi's bundled General MIDI
soundfont; nothing is downloaded. Without fluidsynth, a synthesised melody with harmonics stands in.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf


def _synth_melody(seconds: float, sample_rate: int) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    notes = [60, 62, 64, 65, 67, 65, 64, 62]
    note = np.array(notes)[(t * 4).astype(int) % len(notes)]
    f0 = 440.0 * 2 ** ((note - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    env = np.exp(-3.0 * ((t * 4) % 1.0))
    return sum(np.sin(k * phase) / k for k in (1, 2, 3, 4)) * env


def chorale(seconds: float, sample_rate: int, workdir: Path, offset_seconds: float = 1.0) -> np.ndarray:
    """Mono float32 [samples] of `seconds` of music (peak 0.5), starting `offset_seconds` in."""
    wav = None
    if shutil.which("fluidsynth"):
        import music21
        import pretty_midi

        mid, out = Path(workdir) / "chorale.mid", Path(workdir) / "chorale.wav"
        music21.corpus.parse("bach/bwv66.6").write("midi", fp=str(mid))
        font = os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
        subprocess.run(["fluidsynth", "-ni", "-F", str(out), "-r", str(sample_rate), font, str(mid)],
                       check=True, capture_output=True)
        data, sr = sf.read(str(out), dtype="float32", always_2d=True)
        assert sr == sample_rate
        wav = data.mean(axis=1)
    start = int(offset_seconds * sample_rate)
    if wav is None or wav.shape[0] < start + int(seconds * sample_rate):
        wav, start = _synth_melody(seconds + offset_seconds, sample_rate), start
    wav = wav[start : start + int(seconds * sample_rate)]
    return (0.5 * wav / np.max(np.abs(wav))).astype(np.float32)
