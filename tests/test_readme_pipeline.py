"""README's pipeline, typed as README prints it: every `python -m diffariff_jax...` line of the section
"The pipeline, command by command", run in order from a folder laid out like the repository root
(configs/ beside it, relative paths such as runs/cae and data/demo), with smoke-size flags appended
(argparse and absl keep the last value of a repeated flag, so README's own values are overridden, not
edited). A command README shows that needs a file no test can have (a downloaded Music2Latent
checkpoint) is listed in SKIP and must fail for that reason only."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SECTION = "## The pipeline, command by command"

# (module, first positional or flag that identifies the command) -> smoke-size flags appended to README's line
SMOKE = {
    "diffariff_jax.data.render": ["--num-songs", "5", "--seconds-max", "8", "--workers", "1"],
    "diffariff_jax.train cae": ["--config.train.num_steps=2", "--config.train.ckpt_every=2",
                                "--config.train.batch_size=1", "--config.train.eval_batches=0"],
    "diffariff_jax.clap": ["--variant", "tiny", "--steps", "2"],
    "diffariff_jax.precompute": ["--mixes-per-song", "1", "--segment-frames", "16", "--clap-segments", "1",
                                 "--clap-seconds", "1"],
    "diffariff_jax.train ldm": ["--config.train.num_steps=2", "--config.train.ckpt_every=2",
                                "--config.train.batch_size=2", "--config.train.eval_batches=0"],
    "diffariff_jax.generate": ["--steps", "2"],
    "diffariff_jax.eval": ["--config", "configs/eval.py:tiny", "--config.num_examples=4", "--config.metrics.prdc_k=1",
                           "--cache-dir="],
}
SKIP = {"--from music2latent": "needs music2latent.pt, Music2Latent's downloaded checkpoint"}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    assert SECTION in text, f"README lost its section {SECTION!r}"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("python -m diffariff_jax")]


def smoke_key(argv: list[str]) -> str:
    module = argv[2]
    if module == "diffariff_jax.train":
        config = argv[argv.index("--config") + 1]
        return f"{module} {'cae' if 'cae.py' in config else 'ldm'}"
    return module


def test_readme_lists_the_whole_pipeline():
    modules = {shlex.split(c)[2] for c in readme_commands()}
    assert {"diffariff_jax.data.render", "diffariff_jax.train", "diffariff_jax.clap",
            "diffariff_jax.precompute"} <= modules


@pytest.mark.pipeline
def test_readme_pipeline_runs_as_typed(tmp_path):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    failures = []
    for line in readme_commands():
        if any(marker in line for marker in SKIP):
            continue
        argv = shlex.split(line)
        if "song.wav" in argv and not (tmp_path / "song.wav").exists():
            _song_wav(tmp_path)
        argv = [sys.executable] + argv[1:] + SMOKE.get(smoke_key(argv), [])
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            failures.append(f"{line}\n    exit {res.returncode}: {(res.stderr.strip().splitlines() or [''])[-1]}")
            break  # later commands need this one's output
    assert not failures, "README commands that fail as typed:\n" + "\n".join(failures)


def _song_wav(root: Path) -> None:
    """README's `--context song.wav`: the mix of the first rendered song."""
    song = sorted(p for p in (root / "data" / "demo").iterdir() if p.is_dir())[0]
    stems = [sf.read(str(f), dtype="float32")[0] for f in sorted(song.glob("*.wav"))]
    n = min(len(s) for s in stems)
    sf.write(str(root / "song.wav"), np.sum([s[:n] for s in stems], axis=0) * 0.5, 48000)
