"""Generate a stem that fits a piece of music (every mode of Diff-A-Riff, SPEC.md section 4), any length.

    python -m diffariff_jax.generate --checkpoint runs/ldm --context song.wav --text "cello" --out out/
    python -m diffariff_jax.generate --checkpoint runs/ldm --no-context --audio-prompt ref.wav --seconds 25 --out out/
    python -m diffariff_jax.generate --checkpoint runs/ldm --context song.wav --arrange "bass, drums, piano" --out out/
    python -m diffariff_jax.generate --checkpoint runs/ldm --context song.wav --inpaint stem.wav --region 2-4 --out out/

Writes 48 kHz WAVs (stereo unless --stereo-width 0) into --out (a folder, or a .wav/.flac file name),
each with a JSON sidecar holding every setting, the seed and the checkpoint's step and fingerprint: the
same command writes the same file. Errors are one line naming the input, exit status 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

AUDIO_SUFFIXES = (".wav", ".flac")
AUDIO_PROMPTS = AUDIO_SUFFIXES + (".ogg", ".mp3", ".aiff", ".aif")  # an --arrange entry with these is a file


def _region(text: str) -> tuple[float, float]:
    match = re.fullmatch(r"\s*([0-9.]+)\s*-\s*([0-9.]+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"region {text!r}: write START-END in seconds, e.g. 2.5-4")
    return float(match.group(1)), float(match.group(2))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffariff_jax.generate", description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--checkpoint", required=True, help="LDM training workdir or release dir")
    a("--cae", help="CAE workdir or release dir (default: the one the LDM's records were made with, or bundled)")
    a("--clap", help="CLAP hub name or directory (default: the one the LDM's records were made with, or bundled)")
    a("--out", required=True, help="output folder, or a .wav/.flac file name (with --num-samples > 1: NAME_i)")
    g = p.add_argument_group("conditions")
    g.add_argument("--context", help="audio file the stem must fit (any rate, any channels); the output covers it")
    g.add_argument("--no-context", action="store_true", help="generate without a context (CLAP only or unconditional)")
    g.add_argument("--text", help="text prompt, embedded by the CLAP's text tower")
    g.add_argument("--audio-prompt", help="audio file whose CLAP embedding steers the stem")
    g.add_argument("--prompt-mix", type=float, help="with --text and --audio-prompt: r in [0, 1], "
                   "CLAP = (1 - r) audio + r text (default 0.5)")
    g.add_argument("--arrange", help="comma-separated prompts (text, or audio files): generate one track each, "
                   "adding every track to the context of the next; writes every stem and the mix")
    s = p.add_argument_group("sampler (SPEC.md section 4 defaults)")
    s.add_argument("--steps", type=int, default=30, help="solver steps T")
    s.add_argument("--solver", default="heun", help="heun or euler")
    s.add_argument("--churn", type=float, default=0.0, help="EDM S_churn (0 = deterministic ODE sampler)")
    s.add_argument("--cfg-context", type=float, default=1.25, help="guidance scale of the context")
    s.add_argument("--cfg-clap", type=float, default=1.25, help="guidance scale of the CLAP prompt")
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed and settings: same file)")
    s.add_argument("--num-samples", type=int, default=1, help="samples to generate, batched in one compiled call")
    m = p.add_argument_group("modes")
    m.add_argument("--seconds", type=float, help="output length without a context, or a cut of the context")
    m.add_argument("--inpaint", help="stem file whose --region spans are regenerated (the rest is kept)")
    m.add_argument("--region", type=_region, action="append", default=[],
                   help="START-END in seconds to regenerate with --inpaint (repeatable)")
    m.add_argument("--variation-of", help="audio file to make a variation of")
    m.add_argument("--strength", type=float, default=0.5, help="variation strength in [0, 1] (1 = a fresh sample)")
    m.add_argument("--loop-repeats", type=int, help="make a loop: the stem repeats one block this many times")
    m.add_argument("--loop-strength", type=float, default=0.3, help="fraction in [0, 1] of steps forcing the loop")
    m.add_argument("--stereo-width", type=float, default=0.4, help="pseudo-stereo width in [0, 1] (0 writes mono)")
    m.add_argument("--write-mix", action="store_true", help="also write context + stem, at the context's level")
    return p


def _audio(path: str | None, flag: str) -> tuple[np.ndarray, int] | None:
    """(wav [channels, samples], rate) of a local audio file; one-line AudioError naming it."""
    if path is None:
        return None
    from diffariff_jax.audio.io import AudioError
    from diffariff_jax.paths import local

    import soundfile as sf

    file = local(path, flag)
    if not file.is_file():
        raise AudioError(f"{flag} {path}: no such file")
    try:
        data, rate = sf.read(str(file), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types; the user needs the path and the reason
        raise AudioError(f"{flag} {path}: cannot be read as audio ({str(err).splitlines()[0]})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{flag} {path}: the file holds no samples")
    return data.T, int(rate)


def _outputs(out: str, names: list[str]) -> list[Path]:
    from diffariff_jax.paths import local

    path = local(out, "--out")
    if path.suffix.lower() in AUDIO_SUFFIXES:  # NAME.wav, NAME_1.wav, NAME_mix.wav, ...
        tails = [n[len("stem"):].lstrip("_") if n.startswith("stem") else n for n in names]
        return [path.with_name(f"{path.stem}{'_' + t if t else ''}{path.suffix}") for t in tails]
    return [path / f"{n}.wav" for n in names]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"


def run(args: argparse.Namespace) -> list[Path]:
    """Loads, generates and writes; returns the written audio paths."""
    from tqdm import tqdm

    from diffariff_jax import long_form
    from diffariff_jax.accompanist import Accompanist, SamplerSettings
    from diffariff_jax.audio.io import write_audio

    if args.no_context and args.context:
        raise ValueError("--no-context and --context exclude each other")
    if args.region and not args.inpaint:
        raise ValueError("--region needs the stem to inpaint: --inpaint FILE")
    if args.arrange and (args.text or args.audio_prompt or args.inpaint or args.variation_of or args.loop_repeats):
        raise ValueError("--arrange takes its prompts from its own list; drop --text/--audio-prompt/--inpaint/"
                         "--variation-of/--loop-repeats")
    settings = SamplerSettings(steps=args.steps, solver=args.solver, churn=args.churn,
                               cfg_context=args.cfg_context, cfg_clap=args.cfg_clap)
    settings.check()
    mode = long_form.Modes(inpaint=_audio(args.inpaint, "--inpaint"), regions=tuple(args.region),
                           variation_of=_audio(args.variation_of, "--variation-of"), strength=args.strength,
                           loop_repeats=args.loop_repeats, loop_strength=args.loop_strength,
                           stereo_width=args.stereo_width)
    for name in ("strength", "loop_strength", "stereo_width", "prompt_mix"):
        long_form.check_unit("--" + name.replace("_", "-"), getattr(args, name))
    acc = Accompanist.load(args.checkpoint, cae=args.cae, clap=args.clap)
    raw = _audio(args.context, "--context")
    # Checked, resampled and downmixed once here; generate() sees 48 kHz mono and does no more work.
    base = None if raw is None else long_form.prepare(raw, f"--context {args.context}", acc.sample_rate,
                                                      min_samples=acc.cae.hop_samples)
    context = None if base is None else (base, acc.sample_rate)
    samples = long_form.target_length(acc, base, args.seconds, mode)
    prompts = [p.strip() for p in (args.arrange or "").split(",") if p.strip()]
    windows = long_form.passes(acc, acc.frames_for(samples), args.stereo_width > 0) * max(len(prompts), 1)
    started = time.perf_counter()
    with tqdm(total=windows, unit="window", desc="generate", file=sys.stderr) as bar:
        if prompts:
            loaded = [_audio(p, "--arrange") if Path(p).suffix.lower() in AUDIO_PROMPTS else p for p in prompts]
            stems, mix = acc.arrange(loaded, context, seconds=args.seconds, num_samples=args.num_samples,
                                     seed=args.seed, settings=settings, stereo_width=args.stereo_width,
                                     progress=bar.update)
            tracks = {f"{k}_{_slug(p)}": s for k, (p, s) in enumerate(zip(prompts, stems))}
            tracks["mix"] = mix
        else:
            stem = acc.generate(context, text=args.text, audio_prompt=_audio(args.audio_prompt, "--audio-prompt"),
                                prompt_mix=args.prompt_mix, seconds=args.seconds, num_samples=args.num_samples,
                                seed=args.seed, settings=settings, mode=mode, progress=bar.update)
            tracks = {"stem": stem}
            if args.write_mix:
                cut = None if base is None else base[:samples]
                tracks["mix"] = np.stack([long_form.mix_down(cut, [s]) for s in stem])
    elapsed = time.perf_counter() - started
    clips = sum(t.shape[0] for name, t in tracks.items() if name != "mix")
    written = []
    for name, batch in tracks.items():
        names = [name if args.num_samples == 1 else f"{name}_{i}" for i in range(batch.shape[0])]
        for path, wav in zip(_outputs(args.out, names), batch):
            write_audio(path, wav, acc.sample_rate)
            sidecar = {"settings": vars(args), "seed": args.seed,
                       "checkpoint": {"path": acc.source, "step": acc.step, "fingerprint": acc.fingerprint},
                       "sample_rate": acc.sample_rate, "channels": int(wav.shape[0]),
                       "seconds": wav.shape[-1] / acc.sample_rate}
            path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True))
            written.append(path)
    print(f"wrote {len(written)} files to {_outputs(args.out, ['stem'])[0].parent} "
          f"({elapsed / max(clips, 1):.2f} s per clip)", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        run(args)
    except (ValueError, FileNotFoundError) as err:  # AudioError, CheckpointError, CompanionError, PathError
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
