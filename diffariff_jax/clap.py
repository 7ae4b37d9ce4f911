"""CLAP audio and text embeddings through transformers' ClapModel (PyTorch), batched, numpy in and out.

Diff-A-Riff conditions its LDM on CLAP embeddings (SPEC.md section 3): the audio embedding of a random
sub-segment of the target stem in training, an audio or text embedding at inference. The paper's model is
LAION's music CLAP (`laion/larger_clap_music`, 512-d, 48 kHz, 10 s windows); any directory written by
`save_pretrained` (for example the small CLAP from `python -m diffariff_jax.clap train`) loads the same way.

Audio longer than one window is cut into the fewest full windows that cover it (evenly spaced, so the last
ones overlap a little rather than being padded), each window is embedded, and the mean of the window
embeddings is L2-normalised again. Audio shorter than a window is repeat-padded by the feature extractor.
Because no input ever exceeds a window, the extractor's random cropping never runs: results are deterministic.

Text prompts are normalised the way training captions were written (lowercase, "_"/"-" as spaces, single
spaces): "Snare  Drum" and "snare drum" are one prompt. A small CLAP trained here knows only its training
instruments; its directory holds vocabulary.json, and a prompt with words outside it ("cello" for a CLAP
that never heard one) gets a warning listing the instruments it knows, instead of a silent nearest match.

CLI: `python -m diffariff_jax.clap train --data DIR --out DIR` trains a small CLAP (see clap_training.py).
"""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.fft
import torch
from transformers import ClapModel, ClapProcessor

from diffariff_jax.audio.io import AudioError, check_waveform

log = logging.getLogger(__name__)

DEFAULT_CLAP = "laion/larger_clap_music"
VOCABULARY_FILE = "vocabulary.json"  # {"instruments": [...], "words": [...]}, written by clap_training


def normalize_prompt(text: str) -> str:
    """'  Snare_Drum ' -> 'snare drum': prompts spelled like the captions the CLAP was trained on."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", text)).strip().lower()


def prompt_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", normalize_prompt(text))


def _read_vocabulary(directory: Path) -> dict | None:
    path = directory / VOCABULARY_FILE
    if not path.is_file():
        return None
    vocab = json.loads(path.read_text())
    return {"instruments": list(vocab.get("instruments", [])), "words": set(vocab.get("words", []))}


class ClapLoadError(ValueError):
    """A CLAP model that cannot be loaded, with its name or path."""


def window_starts(num_samples: int, window: int) -> list[int]:
    """Start offsets of the fewest length-`window` windows covering `num_samples` samples.

    One window (start 0) when the audio fits; otherwise ceil(num_samples / window) windows evenly spaced
    from 0 to num_samples - window, so every window is full and together they cover every sample.
    """
    if num_samples <= window:
        return [0]
    count = -(-num_samples // window)
    return [int(s) for s in np.round(np.linspace(0, num_samples - window, count)).astype(np.int64)]


def _repeat_pad(wav: np.ndarray, length: int) -> np.ndarray:
    """The extractor's "repeatpad": whole repeats of a shorter window, then zeros up to `length`."""
    if wav.size < length:
        wav = np.tile(wav, length // wav.size)
    return np.pad(wav, (0, length - wav.size))


def log_mel_batch(fe, windows: list[np.ndarray]) -> np.ndarray:
    """[N, 1, frames, mel] float32: ClapFeatureExtractor's unfused features of windows <= its max length, batched.

    The extractor computes each window's spectrogram in a Python loop over frames (about 0.15 s per
    5 s window on one core, more than the small CLAP itself); this is the same arithmetic (repeat-padded,
    reflect-padded centred frames, periodic Hann, power spectrum, slaney mel filters, floor 1e-10, dB)
    as one vectorised call, in float32 (within 1e-5 dB of the extractor's float64).
    """
    length = int(fe.nb_max_samples)
    n_fft, hop = int(fe.fft_window_size), int(fe.hop_length)
    x = np.stack([_repeat_pad(np.asarray(w, np.float32), length) for w in windows])
    x = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=1)[:, ::hop]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    spec = scipy.fft.rfft(frames * window, axis=-1, workers=-1)
    power = (spec.real ** 2 + spec.imag ** 2).reshape(-1, spec.shape[-1])  # 2-D: one BLAS call, not N
    mel = np.maximum(1e-10, power @ fe.mel_filters_slaney.astype(np.float32))
    return (10.0 * np.log10(mel)).reshape(len(windows), 1, frames.shape[1], -1)


class ClapEmbedder:
    """Batched CLAP embeddings. Attributes: name, dim, sample_rate (Hz), window_seconds."""

    def __init__(self, model: ClapModel, processor: ClapProcessor, name: str, device: str = "cpu",
                 batch_size: int = 16, vocabulary: dict | None = None):
        self.model = model.to(device).eval()
        self.processor = processor
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.vocabulary = vocabulary  # None: an open-vocabulary model (LAION's), no warnings
        fe = processor.feature_extractor
        self.sample_rate = int(fe.sampling_rate)
        self.window_seconds = float(fe.max_length_s)
        self.dim = int(model.config.projection_dim)
        self._fused = bool(model.config.audio_config.enable_fusion)
        # Unfused models take one mel crop; "fusion" would stack four and break their patch embedding.
        self._truncation = "fusion" if self._fused else "rand_trunc"

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_CLAP, device: str = "cpu",
                        batch_size: int = 16) -> "ClapEmbedder":
        """Loads model + processor (feature extractor and tokenizer) from a hub name or a local directory."""
        name_or_path = str(name_or_path)
        # Hub names look like "org/name"; absolute, relative-dot and home paths are surely local.
        looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
        if looks_local and not Path(name_or_path).expanduser().is_dir():
            raise ClapLoadError(f"{name_or_path}: no such CLAP model directory")
        try:
            source = str(Path(name_or_path).expanduser()) if looks_local else name_or_path
            model = ClapModel.from_pretrained(source)
            processor = ClapProcessor.from_pretrained(source)
        except (OSError, ValueError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ClapLoadError(f"{name_or_path}: cannot load a CLAP model and processor ({reason})") from None
        vocabulary = _read_vocabulary(Path(source)) if looks_local or Path(source).is_dir() else None
        return cls(model, processor, name_or_path, device=device, batch_size=batch_size, vocabulary=vocabulary)

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    def _as_list(self, wavs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        if isinstance(wavs, np.ndarray):
            if wavs.ndim != 2:
                raise AudioError(f"CLAP input: expected [batch, samples] or a list of 1-D arrays, "
                                 f"got shape {wavs.shape}")
            wavs = list(wavs)
        out = []
        for i, w in enumerate(wavs):
            w = np.asarray(w)
            if w.ndim != 1:
                raise AudioError(f"CLAP input {i}: expected a mono 1-D waveform, got shape {w.shape}")
            out.append(check_waveform(w, f"CLAP input {i}")[0])
        return out

    @torch.inference_mode()
    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """windows: each [<= window_samples] -> [len(windows), dim] normalised."""
        fe = self.processor.feature_extractor
        out = []
        for i in range(0, len(windows), self.batch_size):
            chunk = windows[i:i + self.batch_size]
            if self._fused or fe.padding != "repeatpad":
                feats = fe(chunk, sampling_rate=self.sample_rate, truncation=self._truncation, return_tensors="np")
                feats = np.asarray(feats["input_features"], np.float32)
            else:
                feats = log_mel_batch(fe, chunk)
            kwargs = {"input_features": torch.from_numpy(feats)}
            if self._fused:
                # No window is longer than max_length; the extractor would flag a random one as "longer".
                kwargs["is_longer"] = torch.zeros((len(chunk), 1), dtype=torch.bool)
            kwargs = {k: v.to(self.device) for k, v in kwargs.items()}
            emb = self.model.get_audio_features(**kwargs).pooler_output
            out.append(emb.float().cpu().numpy())
        return np.concatenate(out, axis=0)

    def embed_audio(self, wavs: np.ndarray | Sequence[np.ndarray], sample_rate: int | None = None) -> np.ndarray:
        """wavs: [batch, samples] or a list of 1-D arrays at self.sample_rate -> [batch, dim] L2-normalised.

        Raises AudioError for another sample rate, non-mono input, empty or NaN/inf audio.
        """
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise AudioError(f"CLAP input: sample rate {sample_rate} Hz, {self.name} expects {self.sample_rate} Hz")
        items = self._as_list(wavs)
        if not items:
            return np.zeros((0, self.dim), np.float32)
        win = self.window_samples
        windows, owner = [], []
        for i, w in enumerate(items):
            for s in window_starts(len(w), win):
                windows.append(w[s:s + win])
                owner.append(i)
        emb = self._embed_windows(windows)
        owner = np.asarray(owner)
        sums = np.zeros((len(items), emb.shape[1]), np.float64)
        np.add.at(sums, owner, emb)
        means = sums / np.bincount(owner, minlength=len(items))[:, None]
        return (means / np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)

    def unknown_words(self, text: str) -> list[str]:
        """Words of a prompt outside a small CLAP's training vocabulary ([] for open-vocabulary models)."""
        if self.vocabulary is None:
            return []
        return [w for w in prompt_words(text) if w not in self.vocabulary["words"]]

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """texts: list of prompts -> [batch, dim] L2-normalised (prompts normalised like the captions)."""
        texts = list(texts)
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"CLAP text input: expected non-empty strings, got {texts!r}")
        texts = [normalize_prompt(t) for t in texts]
        for text in dict.fromkeys(texts):
            unknown = self.unknown_words(text)
            if unknown:
                log.warning("prompt %r: %s not in the vocabulary of %s, which knows only: %s", text,
                            ", ".join(repr(w) for w in unknown), self.name, ", ".join(self.vocabulary["instruments"]))
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.processor.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                           return_tensors="pt")
            tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            out.append(self.model.get_text_features(**tok).pooler_output.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out, axis=0)


def main(argv: list[str] | None = None) -> int:
    """`python -m diffariff_jax.clap train ...`: the small-CLAP trainer (clap_training.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train",):
        print("usage: python -m diffariff_jax.clap train --data DIR --out DIR [options]  (see --help)",
              file=sys.stderr)
        return 2
    from diffariff_jax import clap_training

    return clap_training.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
