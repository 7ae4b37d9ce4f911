"""The generation API: a trained LDM with its CAE and CLAP, numpy audio in, numpy audio out.

    acc = Accompanist.load("runs/ldm")                 # workdir or release dir; finds its CAE and CLAP
    clap = acc.embed_text(["cello"])                   # [1, clap_dim], unit norm
    stems = acc.generate_batch(context, clap, seed=0)  # context [b, samples] mono at acc.sample_rate
                                                       # -> [b, samples] mono at acc.sample_rate
    out = acc.generate(context=(wav, 44100), text="cello")   # any rate / channels, any length, every mode

`generate_batch` is the fixed-shape workhorse (eval and the demo call it): the context is encoded, ONE
compiled sampler call generates all b examples at once (two-scale CFG, SamplerSettings), the CAE decodes.
`generate` (long_form.py) is the user-facing call behind `python -m diffariff_jax.generate`.
Where the CAE and CLAP come from, and how a release dir bundles them: release_bundle.py.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from diffariff_jax import long_form, release_bundle
from diffariff_jax.audio.io import AudioError, check_waveform, resample
from diffariff_jax.diffusion import samplers
from diffariff_jax.diffusion.edm import Denoiser
from diffariff_jax.long_form import Audio, Modes
from diffariff_jax.release_bundle import CompanionError


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """The sampler knobs a user turns (SPEC.md section 4 defaults); the schedule comes from config.sampler."""

    steps: int = 30
    solver: str = "heun"  # "heun" | "euler"
    churn: float = 0.0  # EDM S_churn; 0 = deterministic
    cfg_context: float = 1.25
    cfg_clap: float = 1.25

    def check(self) -> None:
        """One-line ValueError naming the first setting out of range."""
        if int(self.steps) < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.solver not in samplers.SOLVERS:
            raise ValueError(f"solver {self.solver!r}: choose one of {', '.join(samplers.SOLVERS)}")
        if not (math.isfinite(self.churn) and self.churn >= 0):
            raise ValueError(f"churn must be >= 0, got {self.churn}")
        for name in ("cfg_context", "cfg_clap"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")

    def sampler_config(self, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """A copy of the LDM's config.sampler with these settings applied."""
        self.check()
        cfg = ml_collections.ConfigDict(base.to_dict())
        cfg.update(steps=int(self.steps), solver=self.solver, churn=float(self.churn),
                   cfg_context=float(self.cfg_context), cfg_clap=float(self.cfg_clap))
        return cfg


class Accompanist:
    """An LDM (EMA params + config) with the CAE and CLAP its training records were made with."""

    def __init__(self, config: ml_collections.ConfigDict, params: Any, cae: Any, clap: Any, *, step: int,
                 source: str = ""):
        if cae.latent_dim != int(config.model.latent_dim):
            raise CompanionError(f"--cae gives {cae.latent_dim}-d latents, the LDM {source} needs "
                                 f"{config.model.latent_dim}-d; pass the CAE its records were made with")
        if clap.dim != int(config.model.clap_dim):
            raise CompanionError(f"--clap {clap.name} gives {clap.dim}-d embeddings, the LDM {source} was trained "
                                 f"on {config.model.clap_dim}-d; pass the CLAP its records were made with")
        self.config = config
        self.params = params
        self.cae = cae
        self.clap = clap
        self.step = int(step)
        self.source = source
        self.denoiser = Denoiser.from_config(config)
        self.fingerprint = release_bundle.fingerprint(jax.tree.leaves(params))

    @classmethod
    def load(cls, path: Any, *, cae: str | None = None, clap: str | None = None) -> "Accompanist":
        """From an LDM training workdir (newest readable checkpoint's EMA params) or a release dir.

        cae / clap: a CAE workdir or release dir / a CLAP name or directory overriding the recorded ones.
        Raises CheckpointError (missing, empty, a CAE checkpoint) or CompanionError (CAE / CLAP), one line.
        """
        from diffariff_jax.paths import resolve
        from diffariff_jax.training.checkpoint import load_for_inference, newest_step

        root = resolve(path, "--checkpoint")
        config, params = load_for_inference(root, kind="ldm")
        bundle = release_bundle.read_bundle(root) or {}
        step = bundle.get("step", newest_step(root))
        return cls(config, params, release_bundle.find_cae(root, config, cae),
                   release_bundle.find_clap(root, config, clap), step=step, source=str(root))

    # ---- facts -----------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.cae.sample_rate

    @property
    def clap_dim(self) -> int:
        return self.clap.dim

    @property
    def window_frames(self) -> int:
        """Latent frames of one generation window: the crop length the LDM was trained on."""
        return int(self.config.data.crop_frames)

    def frames_for(self, num_samples: int) -> int:
        return self.cae.frames_for(num_samples)

    # ---- CLAP ------------------------------------------------------------------------------------

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Prompts -> [n, clap_dim] unit-norm text embeddings. A CLAP without a tokenizer is refused."""
        if getattr(self.clap.processor, "tokenizer", None) is None:
            raise CompanionError(f"--clap {self.clap.name} has no text tower (no tokenizer); use an audio prompt")
        emb = np.asarray(self.clap.embed_text(list(texts)), np.float32)
        return emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)

    def embed_audio(self, audio: np.ndarray) -> np.ndarray:
        """audio: [n, samples] mono at acc.sample_rate -> [n, clap_dim] unit-norm audio embeddings."""
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 2:
            raise AudioError(f"audio prompt: expected [n, samples] mono, got shape {audio.shape}")
        wavs = [resample(w[None], self.sample_rate, self.clap.sample_rate)[0] for w in audio]
        return self.clap.embed_audio(wavs)

    # ---- generation ------------------------------------------------------------------------------

    def generate_batch(self, context: np.ndarray | None, clap: np.ndarray | None, *,
                       num_frames: int | None = None, batch_size: int | None = None, seed: int = 0,
                       settings: SamplerSettings = SamplerSettings()) -> np.ndarray:
        """b stems in one compiled sampler call, then one CAE decode.

        context: [b, samples] mono float32 at acc.sample_rate and at training loudness (eval's examples are
        normalised with their target as training was; user audio goes through `generate`, which levels it),
        or None (then num_frames is needed);
        clap: [b, clap_dim] or None; batch_size: b when neither is given (unconditional), default 1.
        Returns [b, samples] float32 (samples = num_frames * 4096 without context).
        """
        sampler_cfg = settings.sampler_config(self.config.sampler)
        k_sample, k_decode = jax.random.split(jax.random.PRNGKey(int(seed)))
        context_latents, samples = None, None
        if context is not None:
            context = check_waveform(np.asarray(context, np.float32), "context")
            samples = context.shape[1]
            num_frames = self.frames_for(samples)
            context_latents = self.cae.encode(context)
        elif num_frames is None or int(num_frames) < 1:
            raise ValueError(f"generate_batch without a context needs num_frames >= 1, got {num_frames}")
        num_frames = int(num_frames)
        batch = None if context is not None or clap is not None else int(batch_size or 1)
        latents = samplers.sample(self.denoiser, self.params, k_sample, num_frames=num_frames,
                                  sampler_cfg=sampler_cfg, batch_size=batch, context=context_latents,
                                  clap=None if clap is None else np.asarray(clap, np.float32))
        return self.cae.decode(np.asarray(latents), k_decode, num_samples=samples)

    def generate(self, context: Audio | None = None, *, text: str | None = None, audio_prompt: Audio | None = None,
                 prompt_mix: float | None = None, seconds: float | None = None, num_samples: int = 1,
                 seed: int = 0, settings: SamplerSettings = SamplerSettings(), mode: Modes = Modes(),
                 progress: long_form.Progress | None = None) -> np.ndarray:
        """The full user-facing call (the CLI wraps it); every mode of SPEC.md section 4, any length.

        context / audio_prompt / mode's stems: (waveform [channels, samples] or [samples], rate), any rate
        and channel count. prompt_mix r: (1 - r) audio + r text. seconds: output length without a context,
        or a cut of the context. Returns [num_samples, channels, samples] at acc.sample_rate (2 channels
        when mode.stereo_width > 0).
        """
        context_wav, clap, samples = self._inputs(context, text, audio_prompt, prompt_mix, seconds, num_samples,
                                                  mode)
        return long_form.generate_audio(
            self, None if context_wav is None else np.repeat(context_wav[None], num_samples, axis=0),
            None if clap is None else np.repeat(clap, num_samples, axis=0), samples=samples, batch=num_samples,
            seed=seed, settings=settings, mode=mode, progress=progress)

    def arrange(self, prompts: Sequence[str | Audio], context: Audio | None = None, *,
                seconds: float | None = None, num_samples: int = 1, seed: int = 0,
                settings: SamplerSettings = SamplerSettings(), stereo_width: float = 0.4,
                progress: long_form.Progress | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """A full arrangement: one track per prompt (text, or (audio, rate) for an audio prompt), each
        generated over the context plus the tracks before it. Returns (stems, mix): stems[k] is
        [num_samples, channels, samples]; mix [num_samples, channels, samples] (context + every stem).
        """
        if not prompts:
            raise ValueError("an arrangement needs at least one prompt")
        mode = Modes(stereo_width=stereo_width)
        context_wav, _, samples = self._inputs(context, None, None, None, seconds, num_samples, mode)
        current = None if context_wav is None else np.repeat(context_wav[None], num_samples, axis=0)
        stems = []
        for k, prompt in enumerate(prompts):
            text, audio = (prompt, None) if isinstance(prompt, str) else (None, prompt)
            clap = np.repeat(long_form.conditioning(self, text, audio, None), num_samples, axis=0)
            stem = long_form.generate_audio(self, current, clap, samples=samples, batch=num_samples,
                                            seed=seed + k, settings=settings, mode=mode, progress=progress)
            stems.append(stem)
            added = stem.mean(axis=1)
            current = added if current is None else current + added
        mix = np.stack([long_form.mix_down(context_wav, [s[i] for s in stems]) for i in range(num_samples)])
        return stems, mix

    def _inputs(self, context: Audio | None, text: str | None, audio_prompt: Audio | None,
                prompt_mix: float | None, seconds: float | None, num_samples: int,
                mode: Modes) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """(context [samples] mono at sample_rate or None, clap [1, d] or None, output samples), checked."""
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        wav = None if context is None else long_form.prepare(context, "context", self.sample_rate,
                                                             min_samples=self.cae.hop_samples)
        samples = long_form.target_length(self, wav, seconds, mode)
        clap = long_form.conditioning(self, text, audio_prompt, prompt_mix)
        return None if wav is None else wav[:samples], clap, samples

    def save_release(self, out: Any) -> None:
        """A release dir with this LDM, its CAE and its CLAP bundled: it generates on another machine."""
        from diffariff_jax.paths import resolve

        release_bundle.write_release(resolve(out, "--out"), self.config, self.params, cae=self.cae,
                                     clap=self.clap, step=self.step, ldm_fingerprint=self.fingerprint)

