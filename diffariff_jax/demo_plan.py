"""What `python -m diffariff_jax.demo` runs: the pipeline's real CLIs, in order, at one of two sizes.

    full   `make demo`: a 120-song render, the `demo` CAE / CLAP / LDM recipes (configs/*.py:demo),
           generation in every mode the issue lists, evaluation; <= 30 minutes on two idle cores.
    quick  `make demo-quick` and tests/test_demo.py: the same stages and commands with a handful of
           songs and steps (minutes), to prove the chain runs, not that it learns.

Every stage is a list of commands (argv lists) run as subprocesses in the repository root, so the
demo exercises exactly what a user types; all paths are absolute, under the demo's --out folder.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # configs/ live beside the package


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """Every number that differs between `full` and `quick`."""

    songs: int
    song_seconds: float
    cae_steps: int
    clap_steps: int
    mixes_per_song: int
    segment_frames: int
    clap_seconds: float  # audio-CLAP sub-segments of the target, shorter than a segment
    ldm_steps: int
    eval_examples: int  # > metrics.prdc_k (5): density and coverage need k neighbours
    eval_sampler_steps: int  # eval's Heun steps per generated stem
    eval_resamples: int  # bootstrap resamples of every interval in the report
    sampler_steps: int  # generate's --steps (SPEC's 30 at full size)


SIZES = {
    "full": DemoSize(songs=120, song_seconds=35.0, cae_steps=1200, clap_steps=600, mixes_per_song=6,
                     segment_frames=48, clap_seconds=3.0, ldm_steps=5000, eval_examples=32, eval_sampler_steps=8,
                     eval_resamples=50, sampler_steps=30),
    # 67 songs is the fewest whose song-level test split (5 %) holds 3 songs: 12 spans of 2.7 s at 12 s a
    # song, i.e. 6 examples + 6 reference spans, the least density/coverage (prdc_k = 5) can score.
    "quick": DemoSize(songs=67, song_seconds=12.0, cae_steps=6, clap_steps=4, mixes_per_song=1,
                      segment_frames=32, clap_seconds=2.0, ldm_steps=6, eval_examples=6, eval_sampler_steps=2,
                      eval_resamples=10, sampler_steps=2),
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the demo: a name, what it makes, the commands that make it, and the folders they write.

    `outputs` are deleted before the stage is redone (--redo, changed commands, an earlier stage redone):
    the tools resume from what they find there (train from its checkpoints, precompute from its shards),
    which is right after an interruption and wrong after a change upstream.
    """

    name: str
    summary: str
    commands: tuple[tuple[str, ...], ...]
    outputs: tuple[Path, ...] = ()


def _py(*args: object) -> tuple[str, ...]:
    return (sys.executable, "-m", *map(str, args))


def plan(out: Path, size: DemoSize) -> list[Stage]:
    """The demo's stages for output folder `out` (absolute) at `size`."""
    data, runs, latents, inputs = out / "data", out / "runs", out / "latents", out / "inputs"
    report = out / "report"
    examples = report / "examples"
    cae, clap, ldm = runs / "cae", runs / "clap", runs / "ldm"
    precompute = [_py("diffariff_jax.precompute", "--cae", cae, "--clap", clap, "--data", data,
                      "--split", split, "--out", latents / split, "--mixes-per-song", size.mixes_per_song,
                      "--segment-frames", size.segment_frames, "--clap-segments", 2,
                      "--clap-seconds", size.clap_seconds)
                  for split in ("train", "validation")]
    return [
        Stage("render", f"{size.songs} songs rendered stem by stem with fluidsynth",
              (_py("diffariff_jax.data.render", "--out", data, "--num-songs", size.songs,
                   "--seconds-max", size.song_seconds),), (data,)),
        Stage("cae", f"consistency autoencoder, {size.cae_steps} steps",
              (_py("diffariff_jax.train", "--config", f"{REPO / 'configs/cae.py'}:demo", "--workdir", cae,
                   f"--config.data.root={data}", f"--config.train.num_steps={size.cae_steps}"),), (cae,)),
        Stage("clap", f"small CLAP on the stems' instrument captions, {size.clap_steps} steps",
              (_py("diffariff_jax.clap", "train", "--data", data, "--out", clap, "--variant", "demo",
                   "--steps", size.clap_steps),), (clap,)),
        Stage("precompute", f"latents + CLAP of {size.mixes_per_song} mixes per song (train, validation)",
              tuple(precompute), (latents,)),
        Stage("ldm", f"latent diffusion model, {size.ldm_steps} steps",
              (_py("diffariff_jax.train", "--config", f"{REPO / 'configs/ldm.py'}:demo", "--workdir", ldm,
                   f"--config.data.records_dir={latents / 'train'}",
                   f"--config.data.val_records_dir={latents / 'validation'}",
                   f"--config.train.num_steps={size.ldm_steps}"),), (ldm,)),
        Stage("eval", f"the paper's table on {size.eval_examples} held-out examples, with baselines",
              (_py("diffariff_jax.eval", "--checkpoint", ldm, "--data", data, "--out", report,
                   "--config", f"{REPO / 'configs/eval.py'}:tiny", f"--config.num_examples={size.eval_examples}",
                   f"--config.sampler.steps={size.eval_sampler_steps}",
                   f"--config.bootstrap.num_resamples={size.eval_resamples}",
                   "--cache-dir", out / "cache", "--overwrite"),), (report,)),
        Stage("generate", "context + text, context + audio prompt, a two-track arrangement, "
              "a 30 s outpainted stem, pseudo-stereo",
              (_py("diffariff_jax.demo_inputs", "--data", data, "--out", inputs),
               *_generate(ldm, inputs, examples, size)), (inputs, examples)),
    ]


def _generate(ldm: Path, inputs: Path, examples: Path, size: DemoSize) -> list[tuple[str, ...]]:
    """One generate command per mode the demo shows (WAV + JSON sidecar each, in report/examples)."""
    common = ("--checkpoint", ldm, "--steps", size.sampler_steps)
    context, long_context = inputs / "context.wav", inputs / "context_long.wav"
    return [
        _py("diffariff_jax.generate", *common, "--context", context, "--text", "flute", "--stereo-width", 0,
            "--write-mix", "--out", examples / "context_text_flute.wav"),
        _py("diffariff_jax.generate", *common, "--context", context, "--audio-prompt", inputs / "prompt.wav",
            "--stereo-width", 0, "--write-mix", "--out", examples / "context_audio_prompt.wav"),
        _py("diffariff_jax.generate", *common, "--context", context, "--arrange", "contrabass, violin",
            "--stereo-width", 0, "--out", examples / "arrangement"),
        _py("diffariff_jax.generate", *common, "--context", long_context, "--text", "cello", "--stereo-width", 0,
            "--write-mix", "--out", examples / "outpainted_30s_cello.wav"),
        _py("diffariff_jax.generate", *common, "--context", context, "--text", "flute", "--stereo-width", 0.4,
            "--out", examples / "pseudo_stereo_flute.wav"),
    ]
