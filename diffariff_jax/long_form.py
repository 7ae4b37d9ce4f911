"""Every inference mode at any length: the user-facing generation behind `Accompanist.generate`.

Audio in (any rate, any channel count) is checked, resampled to the CAE's rate and downmixed; the output
covers the whole context (or `seconds`), in windows of the LDM's training length. Each window after the
first is inpainted with the last `sampler.outpaint_overlap_frames` frames already generated as its known
part (samplers.outpaint's plan, modes.outpaint_windows), so windows join without clicks; user-kept frames
(inpainting) and variation sources are cut window by window the same way. All windows of a pass share one
shape, so one compiled sampler serves them.

Pseudo-stereo (SPEC.md section 4) is a second pass over the whole length: the first channel, re-noised to
the level of step round((1 - width) T), denoised again window by window (its own overlaps carried), so
width 0 gives two identical channels. The CAE decodes both. Loops force one window, so a loop must fit in
one window.

Full arrangements: generate a track, add it (downmixed) to the context, generate the next (`arrange`).

Loudness: training normalised each context + target pair to -20 dBFS RMS, so a training context alone sat
about 2 dB under that (median -22.2 dB on the demo set) and the LDM writes stems at their level relative to
it. The audio a user brings (the context, else the inpaint stem or variation source) is scaled to
`sampler.context_loudness_db` before encoding, the boost capped at `sampler.max_context_gain_db` as training
capped it, and the output is scaled back by the same gain: the stem comes out at the level it should have
beside the user's own context (`training_gain`).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

from diffariff_jax.audio.io import AudioError, check_waveform, is_silent, resample, to_mono
from diffariff_jax.diffusion import modes, samplers

Audio = tuple[np.ndarray, int]  # (waveform [channels, samples] or [samples], sample rate in Hz)
Progress = Callable[[int], None]  # called with 1 after every window of every pass
SILENCE_DB = -60.0
# For checkpoints whose config predates these sampler keys (configs/ldm.py documents them).
CONTEXT_LOUDNESS_DB = -22.0
MAX_CONTEXT_GAIN_DB = 20.0


class Modes(NamedTuple):
    """The per-call inference modes (None / empty = off). Strengths and widths are in [0, 1]."""

    inpaint: Audio | None = None  # the stem whose `regions` are regenerated
    regions: Sequence[tuple[float, float]] = ()  # (start, end) in seconds
    variation_of: Audio | None = None
    strength: float = 0.5  # variation strength
    loop_repeats: int | None = None
    loop_strength: float = 0.3
    stereo_width: float = 0.4  # 0 = mono output


def prepare(audio: Audio, name: str, sample_rate: int, *, min_samples: int = 1) -> np.ndarray:
    """Any rate / channels -> mono float32 [samples] at sample_rate; one-line AudioError naming `name`."""
    wav, rate = audio
    wav = check_waveform(np.asarray(wav, np.float32), name)
    if wav.shape[0] > wav.shape[1]:
        wav = wav.T  # [samples, channels] as soundfile returns it
    wav = to_mono(resample(wav, int(rate), sample_rate))[0]
    if wav.shape[0] < min_samples:
        raise AudioError(f"{name}: {wav.shape[0] / sample_rate:.3f} s is shorter than one latent frame "
                         f"({min_samples / sample_rate:.3f} s)")
    if is_silent(wav, SILENCE_DB):
        raise AudioError(f"{name}: the audio is silent (below {SILENCE_DB:.0f} dBFS)")
    return wav


def fit_length(wav: np.ndarray, samples: int) -> np.ndarray:
    """Cut or zero-pad [..., n] to [..., samples]."""
    if wav.shape[-1] >= samples:
        return wav[..., :samples]
    return np.pad(wav, [(0, 0)] * (wav.ndim - 1) + [(0, samples - wav.shape[-1])])


def check_unit(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def keep_mask(regions: Sequence[tuple[float, float]], frames: int, frames_per_second: float,
              duration: float, name: str) -> np.ndarray:
    """[frames] bool, True = keep; the frames touching any (start, end) region (seconds) are regenerated."""
    if not regions:
        raise ValueError(f"{name}: inpainting needs at least one region START-END (seconds)")
    keep = np.ones(frames, bool)
    for start, end in regions:
        if not 0.0 <= start < end:
            raise ValueError(f"region {start}-{end}: needs 0 <= START < END (seconds)")
        if end > duration + 1e-6:
            raise ValueError(f"region {start}-{end}: ends after {name} ({duration:.2f} s)")
        keep[int(math.floor(start * frames_per_second)):int(math.ceil(end * frames_per_second))] = False
    return keep


def sample_long(acc: Any, key: jax.Array, sampler_cfg: Any, *, frames: int, batch: int,
                context: np.ndarray | None, clap: np.ndarray | None, known: np.ndarray | None = None,
                keep: np.ndarray | None = None, init: np.ndarray | None = None, strength: float | None = None,
                loop_repeats: int | None = None, loop_strength: float | None = None,
                progress: Progress | None = None) -> np.ndarray:
    """Latents [batch, frames, 64] window by window.

    context / known / init: [batch, frames, 64] or None; keep: [frames] bool (True = keep `known`).
    """
    window, plan = window_plan(acc, frames)
    width = acc.denoiser.latent_dim
    out = np.zeros((batch, frames, width), np.float32) if known is None else np.array(known, np.float32)
    inpainting = keep is not None or len(plan) > 1
    for n, (start, carried) in enumerate(plan):
        span = slice(start, start + window)
        mask = np.arange(window) < carried
        if keep is not None:
            mask |= keep[span]
        latents = samplers.sample(
            acc.denoiser, acc.params, jax.random.fold_in(key, n), num_frames=window, sampler_cfg=sampler_cfg,
            batch_size=batch, clap=clap, context=None if context is None else context[:, span],
            inpaint_latents=out[:, span] if inpainting else None,
            inpaint_mask=mask.astype(np.float32) if inpainting else None,
            init_latents=None if init is None else init[:, span], variation_strength=strength,
            loop_repeats=loop_repeats, loop_strength=loop_strength)
        out[:, span] = np.asarray(latents)
        if progress is not None:
            progress(1)
    return out


def window_plan(acc: Any, frames: int) -> tuple[int, list[tuple[int, int]]]:
    """(window frames, [(start, carried frames)]) for `frames` frames. The carried overlap is the config's
    (29 frames = 2.5 s of a 117-frame window), at most a quarter window so short-window models advance."""
    window = min(acc.window_frames, frames)
    overlap = min(int(acc.config.sampler.outpaint_overlap_frames), window // 4)
    return window, modes.outpaint_windows(frames, window, overlap)


def passes(acc: Any, frames: int, stereo: bool) -> int:
    """Number of windows `generate_audio` runs (for a progress bar's total)."""
    return len(window_plan(acc, frames)[1]) * (2 if stereo else 1)


def training_gain(acc: Any, reference: np.ndarray | None) -> np.ndarray:
    """reference [batch, samples] (or None) -> [batch, 1] linear gains bringing each row to the level of a
    training context (sampler.context_loudness_db, the boost capped at sampler.max_context_gain_db); 1 for None."""
    if reference is None:
        return np.ones((1, 1), np.float32)
    sampler = acc.config.sampler
    rms_db = 10.0 * np.log10(np.mean(np.square(reference.astype(np.float64)), axis=-1, keepdims=True) + 1e-20)
    gain_db = np.minimum(float(sampler.get("context_loudness_db", CONTEXT_LOUDNESS_DB)) - rms_db,
                         float(sampler.get("max_context_gain_db", MAX_CONTEXT_GAIN_DB)))
    return (10.0 ** (gain_db / 20.0)).astype(np.float32)


def generate_audio(acc: Any, context: np.ndarray | None, clap: np.ndarray | None, *, samples: int, batch: int,
                   seed: int, settings: Any, mode: Modes, progress: Progress | None = None) -> np.ndarray:
    """The core: context [batch, samples] mono at acc.sample_rate or None; clap [batch, d] or None ->
    stems [batch, channels, samples] (channels 2 when mode.stereo_width > 0, else 1)."""
    for name in ("strength", "loop_strength", "stereo_width"):
        check_unit(name.replace("_", " "), getattr(mode, name))
    sampler_cfg = settings.sampler_config(acc.config.sampler)
    frames = acc.frames_for(samples)
    fps = acc.cae.frames_per_second
    k_left, k_right, k_decode = jax.random.split(jax.random.PRNGKey(int(seed)), 3)
    stem = None if mode.inpaint is None else prepare(mode.inpaint, "inpaint stem", acc.sample_rate)
    source = None if mode.variation_of is None else prepare(mode.variation_of, "variation source", acc.sample_rate)
    reference = context if context is not None else next((w[None] for w in (stem, source) if w is not None), None)
    gain = training_gain(acc, None if reference is None else reference[:, :samples])  # [batch or 1, 1]

    def encode(wav: np.ndarray) -> np.ndarray:  # [batch or 1, n] -> [batch, frames, d] at training loudness
        latents = acc.cae.encode(fit_length(wav * gain, frames * acc.cae.hop_samples))
        return np.repeat(latents, batch // latents.shape[0], axis=0)

    context_latents = None if context is None else encode(context)
    known = keep = init = None
    if stem is not None:
        keep = keep_mask(mode.regions, frames, fps, min(stem.shape[0], samples) / acc.sample_rate, "inpaint stem")
        known = encode(stem[None])
    elif mode.regions:
        raise ValueError("regions need the stem to inpaint (--inpaint FILE)")
    if source is not None:
        init = encode(source[None])
    if mode.loop_repeats is not None and frames > acc.window_frames:
        raise ValueError(f"loops fit in one window: at most {acc.window_frames * acc.cae.hop_samples / acc.sample_rate:.1f} s "
                         f"here, asked for {samples / acc.sample_rate:.1f} s")
    common = dict(frames=frames, batch=batch, context=context_latents, clap=clap, known=known, keep=keep,
                  progress=progress)
    left = sample_long(acc, k_left, sampler_cfg, init=init, strength=None if init is None else mode.strength,
                       loop_repeats=mode.loop_repeats,
                       loop_strength=None if mode.loop_repeats is None else mode.loop_strength, **common)
    unscale = lambda wav: np.clip(wav / gain.reshape((-1,) + (1,) * (wav.ndim - 1)), -1.0, 1.0)  # noqa: E731
    if not mode.stereo_width:
        return unscale(acc.cae.decode(left, k_decode, num_samples=samples))[:, None]
    right = sample_long(acc, k_right, sampler_cfg, init=left, strength=mode.stereo_width, **common)
    return unscale(acc.cae.decode(np.stack([left, right], axis=1), k_decode, num_samples=samples))


def conditioning(acc: Any, text: str | None, audio_prompt: Audio | None, prompt_mix: float | None) -> np.ndarray | None:
    """[1, d] CLAP of the text and/or audio prompt ((1 - r) audio + r text when both), or None."""
    check_unit("prompt mix", prompt_mix)
    if prompt_mix is not None and (text is None or audio_prompt is None):
        raise ValueError("a prompt mix needs both a text and an audio prompt")
    embeds = {}
    if text is not None:
        embeds["text"] = acc.embed_text([text])
    if audio_prompt is not None:
        embeds["audio"] = acc.embed_audio(prepare(audio_prompt, "audio prompt", acc.sample_rate)[None])
    if len(embeds) == 2:
        return np.asarray(modes.interpolate_clap(embeds["audio"], embeds["text"], 0.5 if prompt_mix is None
                                                 else prompt_mix), np.float32)
    return next(iter(embeds.values()), None)


def target_length(acc: Any, context: np.ndarray | None, seconds: float | None, mode: Modes) -> int:
    """Output samples: the context's (cut to `seconds`), else `seconds`, else the inpaint / variation
    source's, else one training window."""
    rate = acc.sample_rate
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if context is not None:
        if seconds is not None and seconds * rate > context.shape[0] + 1:
            raise ValueError(f"seconds={seconds} is longer than the context ({context.shape[0] / rate:.2f} s); "
                             "leave it out to cover the whole context")
        return context.shape[0] if seconds is None else int(round(seconds * rate))
    if seconds is not None:
        return max(1, int(round(seconds * rate)))
    for source, name in ((mode.inpaint, "inpaint stem"), (mode.variation_of, "variation source")):
        if source is not None:
            return prepare(source, name, rate).shape[0]
    return acc.window_frames * acc.cae.hop_samples


def mix_down(context: np.ndarray | None, stems: Sequence[np.ndarray], headroom: float = 0.99) -> np.ndarray:
    """context [n] (or None) + stems (each [channels, n]) -> [channels, n]: at the context's RMS level when
    there is a context, then scaled down (never clipped) so the peak stays below `headroom`."""
    channels = max(s.shape[0] for s in stems)
    mix = sum(np.broadcast_to(s, (channels, s.shape[1])) for s in stems).astype(np.float64)
    if context is not None:
        mix = mix + context[None]
        rms = lambda x: float(np.sqrt(np.mean(np.square(x)) + 1e-20))  # noqa: E731
        mix *= rms(context) / rms(mix)
    peak = float(np.max(np.abs(mix)))
    if peak > headroom:
        mix *= headroom / peak
    return mix.astype(np.float32)
