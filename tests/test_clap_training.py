"""Small-CLAP training on a synthetic demo-layout tree: learns instrument captions, saves a loadable model."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from configs.clap import get_config
from diffariff_jax.clap import ClapEmbedder
from diffariff_jax.clap import main as clap_main
from diffariff_jax.clap_training import caption, list_stems, retrieval_metrics, train
from diffariff_jax.testing.synth_stems import make_tree

SR = 48000


def test_retrieval_metrics_reference():
    text = np.eye(3, dtype=np.float32)
    audio = np.array([[1, 0, 0], [0.2, 0.9, 0], [0.8, 0.1, 0.1], [0, 0, 1]], np.float32)
    m = retrieval_metrics(audio, np.array([0, 1, 1, 2]), text)
    assert m["top1"] == 0.75 and m["top5"] == 1.0 and m["chance_top1"] == pytest.approx(1 / 3)
    # class 0 -> nearest clip 0 (right); class 1 -> clip 1 (right); class 2 -> clip 3 (right)
    assert m["text_to_audio_p1"] == 1.0


def test_caption_articles():
    assert caption("{a} {name}", "english horn") == "an english horn"
    assert caption("solo {name} melody", "flute") == "solo flute melody"


def test_train_beats_chance_and_loads(tmp_path):
    data = make_tree(tmp_path / "data")
    # Bad inputs in the tree: an unreadable stem and a silent one are skipped and counted.
    (data / "00000_synth" / "00_bad.wav").write_bytes(b"not audio")
    meta = json.loads((data / "00001_synth" / "metadata.json").read_text())
    sf.write(data / "00001_synth" / "00_silent.wav", np.zeros(3 * SR, np.float32), SR)
    meta["stems"].append({"file": "00_silent.wav", "instrument": "flute"})
    (data / "00001_synth" / "metadata.json").write_text(json.dumps(meta))
    meta = json.loads((data / "00000_synth" / "metadata.json").read_text())
    meta["stems"].append({"file": "00_bad.wav", "instrument": "violin"})
    (data / "00000_synth" / "metadata.json").write_text(json.dumps(meta))

    cfg = get_config("tiny")
    cfg.train.holdout_fraction = 0.34
    m = train(cfg, data, tmp_path / "clap")
    assert m["skipped"] == {"bad_stems": 1, "silent_crops": 1}  # the unreadable file, the silent stem
    assert m["num_classes"] == 4 and m["held_out_songs"] == 4
    assert m["top1"] > 0.5 > m["chance_top1"]
    emb = ClapEmbedder.from_pretrained(str(tmp_path / "clap"))
    assert emb.embed_text(["a flute"]).shape == (1, cfg.model.projection_dim)
    assert emb.vocabulary["instruments"] == m["classes"]  # vocabulary.json: what prompts it understands
    assert emb.unknown_words("A Flute melody") == [] and emb.unknown_words("a theremin") == ["theremin"]
    assert json.loads((tmp_path / "clap" / "metrics.json").read_text())["top1"] == m["top1"]


def test_cli_errors(tmp_path, capsys):
    assert clap_main([]) == 2
    assert clap_main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert clap_main(["train", "--data", str(tmp_path), "--out", "gs://bucket/clap"]) == 1  # one line, no "gs:" dir
    assert not (Path.cwd() / "gs:").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse: one usage line + one error line, no traceback
        clap_main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--variant", "huge"])
    assert exit_info.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no \\*/metadata.json"):
        list_stems(tmp_path / "empty")
