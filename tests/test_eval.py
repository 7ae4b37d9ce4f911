"""`python -m diffariff_jax.eval` end to end on a tiny LDM and a synthetic multitrack tree, and its bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffariff_jax.accompanist import Accompanist
from diffariff_jax.evaluation import examples as examples_lib
from diffariff_jax.evaluation.run import evaluate_command
from diffariff_jax.testing.tiny_ldm import STEP, build_tiny_ldm
from eval_fixtures import make_split_tree, tiny_eval_config

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ("context_audio", "context_text", "context_only", "audio_only", "unconditional")
BASELINES = ("real_other_spans", "random_stem", "cae_roundtrip", "mel_codec", "silence")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tiny = build_tiny_ldm(root / "tiny")
    data = make_split_tree(root / "data", num_test=4, num_train=1, seconds=10.0)
    return tiny, data, root


def _run(setup, out, **overrides):
    tiny, data, root = setup
    kwargs = dict(data=str(data), config=tiny_eval_config(), cae=None, clap=None, all_checkpoints=False,
                  overwrite=False, cache_dir=str(root / "cache"), loader=Accompanist)
    kwargs.update(overrides)
    return evaluate_command(tiny.workdir, out, **kwargs)


@pytest.fixture(scope="module")
def first(setup):
    out = setup[2] / "report1"
    return _run(setup, out), out


def test_report_has_every_file_row_and_interval(first, setup):
    report, out = first
    for name in ("report.json", "examples.csv", "metrics.png", "spectrograms.png", "index.html"):
        assert (out / name).is_file(), name
    assert {p.name for p in (out / "audio" / "ex0").iterdir()} >= {"context.wav", "real.wav", "context_text.wav",
                                                                   "context_text_mix.wav", "cae_roundtrip.wav"}
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert list(report["rows"]) == list(CONDITIONS + BASELINES)
    for name, row in report["rows"].items():
        for metric, m in row["metrics"].items():
            assert m["low"] <= m["high"], (name, metric)
            assert np.isfinite([m["value"], m["low"], m["high"]]).all(), (name, metric)
    assert report["num_examples"] == 12 and report["checkpoint"]["step"] == STEP
    assert len(report["checkpoint"]["fingerprint"]) == 16
    assert report["data"]["split"] == "test" and "no test song was trained on" in report["data"]["note_split"]
    assert report["intervals"]["num_resamples"] == 20
    assert len((out / "examples.csv").read_text().splitlines()) == 13
    assert all(s in report["seconds"] for s in ("examples", "real_embeddings", "generate/context_text", "denoising"))
    codec = report["codec"]  # the codec's distances beside its yardsticks, on the same 12 examples
    assert list(codec) == ["cae_roundtrip", "mel_codec_baseline", "silence"]
    for material in ("stems", "mixes"):
        assert all(codec[s][material]["count"] == 12 for s in codec)
        assert codec["mel_codec_baseline"][material]["median"] < 0.6 * codec["silence"][material]["median"]
    denoise = report["denoising"]
    assert set(denoise["losses"]) == {"context_clap", "context_only", "clap_only", "unconditional"}
    assert all(np.isfinite(v["value"]) and v["value"] > 0 for v in denoise["losses"].values())
    gain = denoise["context_gain"]
    assert gain["low"] <= gain["value"] <= gain["high"] and denoise["num_examples"] == 12
    page = (out / "index.html").read_text()
    assert "Codec: log-mel distance" in page and "Denoising loss on the test examples" in page
    from diffariff_jax.evaluation.run import summary

    printed = summary(report, out, 1.0)  # what the CLI prints
    assert "codec log-mel distance" in printed and "CAE round trip" in printed and "context gain" in printed
    from diffariff_jax.training.logging import read_metrics

    logged = read_metrics(str(setup[0].workdir), "eval")[0]  # the run's TensorBoard twin, at the checkpoint's step
    assert logged["step"] == STEP and logged["context_text/fad"] == report["rows"]["context_text"]["metrics"]["fad"]["value"]
    assert list((setup[0].workdir / "tensorboard" / "eval").iterdir())


def test_baselines_order_apa_even_with_a_random_clap(first):
    """With the tiny random-weight CLAP and 12 examples APA is noisy (test_eval_scoring checks that the
    baselines reach 1 and 0 with an embedder that sees pairing); the order must hold all the same."""
    rows = first[0]["rows"]
    real, random = (rows[n]["metrics"]["apa"]["value"] for n in ("real_other_spans", "random_stem"))
    assert real >= 0.8 and real > random + 0.3, (real, random)
    # the random stems are the real stems, re-paired: their distribution equals the real one
    assert rows["random_stem"]["metrics"]["fad"]["value"] == pytest.approx(0.0, abs=1e-6)


def test_same_command_twice_same_numbers_and_cached_real_embeddings(first, setup):
    report, _ = first
    assert report["cache"]["misses"] == 2 and report["clips_embedded"]["real"] > 0
    again = _run(setup, setup[2] / "report2")
    assert again["rows"] == report["rows"] and again["codec"] == report["codec"]
    assert again["denoising"] == report["denoising"]
    assert again["cache"]["hits"] == 2 and again["cache"]["misses"] == 0
    assert "real" not in again["clips_embedded"] and "cae_roundtrip" not in again["clips_embedded"]
    assert again["seconds"]["real_embeddings"] < report["seconds"]["real_embeddings"]


def test_index_html_renders_table_and_plots_in_a_browser(first, tmp_path):
    browser = shutil.which("chromium-headless-shell")
    if browser is None:
        pytest.skip("chromium-headless-shell is not installed (make test installs it with apt)")
    from PIL import Image

    from diffariff_jax.evaluation.html import HEADER_COLOR
    from diffariff_jax.evaluation.plots import CONDITION_COLOR

    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,2000",
                    (first[1] / "index.html").as_uri()], check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)

    def rows_with(color: str, count: int) -> np.ndarray:
        """Screen rows holding more than `count` pixels of `color`."""
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        return np.flatnonzero((np.abs(pixels - rgb).sum(axis=2) < 30).sum(axis=1) > count)

    header, bars = rows_with(HEADER_COLOR, 600), rows_with(CONDITION_COLOR, 20)  # a band across the table
    assert header.size > 10 and header.max() < 400             # the table's header band, near the top
    assert bars.size > 50 and bars.min() > header.max()          # the metric bars, below the table
    page_rows = (np.abs(pixels - 255).sum(axis=2) > 60).any(axis=1)
    assert page_rows.mean() > 0.5                                 # not a blank page


def test_examples_come_from_test_songs_only_and_are_fixed(setup):
    from diffariff_jax.data import layouts

    _, data, _ = setup
    cfg = tiny_eval_config().examples
    songs = examples_lib.test_songs(str(data), "demo", tuple(cfg.split_fractions), 48000, 1.0)
    a, ref, info = examples_lib.draw(songs, 6, 65536, 48000, 48000, cfg, seed=0, min_examples=4)
    b, _, _ = examples_lib.draw(songs, 6, 65536, 48000, 48000, cfg, seed=0, min_examples=4)
    c, _, _ = examples_lib.draw(songs, 6, 65536, 48000, 48000, cfg, seed=1, min_examples=4)
    train = {s.song_id for s in layouts.songs_in_split(layouts.scan(data, "demo"), "train")}
    assert train and not train & set(a.song_ids + ref.song_ids)
    np.testing.assert_array_equal(a.context, b.context)
    assert not np.array_equal(a.context, c.context)
    assert not {(s, o) for s, o in zip(a.song_ids, a.offsets)} & {(s, o) for s, o in zip(ref.song_ids, ref.offsets)}
    assert len(set(a.song_ids)) == 4 and np.all(np.abs(a.context).max(axis=1) > 0)  # every song, no empty context
    assert info["num_examples"] == 6


def test_more_examples_than_the_test_split_holds(setup):
    _, data, _ = setup
    cfg = tiny_eval_config().examples
    songs = examples_lib.test_songs(str(data), "demo", tuple(cfg.split_fractions), 48000, 1.0)
    spans = sum(s.num_samples // 65536 for s in songs)
    a, _, info = examples_lib.draw(songs, 1000, 65536, 48000, 48000, cfg, seed=0, min_examples=4)
    assert len(a) == spans // 2 and info["note"].startswith(f"N lowered from 1000 to {spans // 2}")
    cfg.allow_fewer = False
    with pytest.raises(examples_lib.ExamplesError, match="lower --config.num_examples to"):
        examples_lib.draw(songs, 1000, 65536, 48000, 48000, cfg, seed=0, min_examples=4)


def test_bad_input_is_one_line(setup, tmp_path):
    from diffariff_jax.evaluation.outputs import OutputError
    from diffariff_jax.release_bundle import CompanionError
    from diffariff_jax.testing.tiny_clap import build_tiny_clap
    from diffariff_jax.training.checkpoint import CheckpointError

    tiny, data, _ = setup
    with pytest.raises(CheckpointError, match="holds a 'cae' model, not 'ldm'"):
        evaluate_command(
            tiny.cae, tmp_path / "a", data=str(data), config=tiny_eval_config(), cae=None, clap=None,
            all_checkpoints=False, overwrite=False, cache_dir=None, loader=Accompanist)
    wide = build_tiny_clap(tmp_path / "wide_clap", projection_dim=16)
    with pytest.raises(CompanionError, match="16-d embeddings, the LDM .* was trained on 32-d"):
        _run(setup, tmp_path / "b", clap=str(wide))
    only_train = make_split_tree(tmp_path / "train_only", num_test=0, num_train=2, seconds=2.0)
    with pytest.raises(examples_lib.ExamplesError, match="the test split holds no song"):
        _run(setup, tmp_path / "c", data=str(only_train))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "report.json").write_text(json.dumps({"identity": {"checkpoint": "runs/other"}}))
    with pytest.raises(OutputError, match="holds the report of another evaluation .*runs/other.*--overwrite"):
        _run(setup, tmp_path / "d")


def test_cli_errors_are_one_line_and_exit_1(setup, tmp_path):
    tiny, data, _ = setup
    for args, expected in (
            (["--checkpoint", str(tiny.cae), "--out", str(tmp_path / "x")], "holds a 'cae' model, not 'ldm'"),
            (["--checkpoint", str(tiny.workdir), "--out", str(tmp_path / "y"), "--config",
              f"{REPO}/configs/eval.py:tiny", "--config.conditions=('context_text','karaoke')"], "'karaoke'"),
            # fewer examples than prdc_k + 1 (was a numpy "kth out of bounds" traceback); without --config the
            # override applies to the checkpoint's variant (tiny, 32 examples), so only an applied override fails
            (["--checkpoint", str(tiny.workdir), "--out", str(tmp_path / "z"), "--config.num_examples=3"],
             "--config.num_examples=3: density and coverage need more than --config.metrics.prdc_k=5"),
            (["--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "w"), "--config.seed=1"],
             "nowhere")):
        proc = subprocess.run([sys.executable, "-m", "diffariff_jax.eval", "--data", str(data), *args],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 1, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_all_checkpoints_loads_every_kept_step(setup, tmp_path):
    """Each kept step is scored with its own EMA weights; the plot over steps renders."""
    from PIL import Image

    from diffariff_jax.evaluation import plots
    from diffariff_jax.evaluation.run import EvalError, _accompanists, kept_steps

    tiny = setup[0]
    other = build_tiny_ldm(tmp_path / "other", seed=1)
    workdir = tmp_path / "ldm"
    shutil.copytree(tiny.workdir, workdir)
    shutil.copytree(other.workdir / "checkpoints" / str(STEP), workdir / "checkpoints" / "3")
    assert kept_steps(workdir) == [3, STEP]
    accs = list(_accompanists(Accompanist, workdir, None, None, True))
    assert [a.step for a in accs] == [3, STEP]
    assert accs[0].fingerprint == Accompanist.load(other.workdir).fingerprint != accs[1].fingerprint
    with pytest.raises(EvalError, match="not a training workdir"):
        kept_steps(tiny.release)
    rows = {"context_text": {"label": "context + text CLAP", "kind": "condition",
                             "metrics": {m: {"value": v, "low": v - 0.1, "high": v + 0.1} for m, v in
                                         zip(plots.TITLES, np.linspace(0.2, 0.8, len(plots.TITLES)))}}}
    plots.metrics_over_steps([{"step": 3, "rows": rows}, {"step": STEP, "rows": rows}], tmp_path / "steps.png")
    image = np.asarray(Image.open(tmp_path / "steps.png").convert("L"))
    assert (image < 200).mean() > 0.01


def test_override_without_checkpoint_is_one_line():
    """--config.KEY overrides look up the checkpoint's variant first; with no --checkpoint the missing flag
    is still one `error:` line, not absl's traceback."""
    out = subprocess.run([sys.executable, "-m", "diffariff_jax.eval", "--config.num_examples=3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1
