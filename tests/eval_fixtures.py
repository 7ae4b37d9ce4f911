"""Data and settings for the eval tests: a demo-layout tree whose songs fall in chosen splits, a fast config."""
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from configs.eval import get_config
from diffariff_jax.data import layouts
from diffariff_jax.testing.synth_stems import INSTRUMENTS, SAMPLE_RATE, synth_stem


def make_split_tree(root, num_test: int, num_train: int, seconds: float, seed: int = 0) -> Path:
    """num_test songs of the layouts' hash test split and num_train of its train split, 3 synthetic stems each.

    Song ids are tried in order and kept when their hash split is still wanted, so a small tree still has
    a test split (5 % of random ids would leave it empty). The stems of a song play in one rhythm (a gate
    of song-specific period, duty and phase), so a stem fits its own song's context better than another's:
    the pairing APA measures is in the audio.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    wanted = {"test": num_test, "train": num_train}
    index = 0
    while any(wanted.values()):
        song_id = f"{index:05d}_synth"
        index += 1
        split = layouts.split_of(layouts.Song(song_id, ()))
        if not wanted.get(split):
            continue
        wanted[split] -= 1
        folder = root / song_id
        folder.mkdir(parents=True)
        stems = []
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        period = rng.uniform(0.25, 0.8)
        gate = (np.mod(t + rng.uniform(0, period), period) < rng.uniform(0.25, 0.5) * period).astype(np.float32)
        for k, kind in enumerate(rng.permutation(INSTRUMENTS)[:3]):
            name = f"{k:02d}_{kind.replace(' ', '_')}.wav"
            sf.write(folder / name, synth_stem(str(kind), rng, seconds) * gate, SAMPLE_RATE, subtype="PCM_24")
            stems.append({"file": name, "instrument": str(kind)})
        (folder / "metadata.json").write_text(json.dumps({"song_id": song_id, "stems": stems}))
    return root


def tiny_eval_config():
    """configs/eval.py:tiny made cheaper: 12 examples, 2 sampler steps, 20 resamples, k = 3."""
    cfg = get_config("tiny")
    cfg.num_examples = 12
    cfg.sampler.steps = 2
    cfg.bootstrap.num_resamples = 20
    cfg.metrics.prdc_k = 3
    cfg.generate_batch = 12
    return cfg


class GateEmbedder:
    """A CLAP stand-in whose features see rhythm: the share of near-silent 10 ms frames and level statistics.

    A mix of stems that share a gate keeps the gate's rests; a mix of two songs' stems fills them, so
    matching and mismatched mixes separate clearly even with 12 examples (a random-weight CLAP does not).
    """

    name = "gate-features"
    dim = 4
    sample_rate = SAMPLE_RATE
    window_seconds = 1.0
    model = type("NoWeights", (), {"state_dict": staticmethod(dict)})()  # what clap_fingerprint reads

    def embed_audio(self, wavs):
        frames = np.asarray(wavs, np.float64)[:, : (np.shape(wavs)[1] // 480) * 480].reshape(len(wavs), -1, 480)
        rms = np.sqrt(np.mean(frames**2, axis=2) + 1e-12)
        level = np.log(rms)
        quiet = (rms < 1e-2 * rms.max(axis=1, keepdims=True)).mean(axis=1)
        return np.stack([4 * quiet, level.mean(1) / 10, level.std(1) / 10, np.ones(len(wavs))], axis=1)


class GateAccompanist:
    """The parts of an Accompanist the real-data stages use, around GateEmbedder (no LDM, no CAE)."""

    sample_rate = SAMPLE_RATE
    window_frames = 16

    def __init__(self):
        self.clap = GateEmbedder()
        self.cae = type("Hop", (), {"hop_samples": 4096})()

    def embed_text(self, texts):
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), self.clap.dim))
        return v / np.linalg.norm(v, axis=1, keepdims=True)
