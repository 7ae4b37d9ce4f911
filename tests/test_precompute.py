"""Precompute core with stand-in CAE/CLAP: records match their stems, resume, host split, bad input."""
import json

import numpy as np
import pytest
import soundfile as sf

from diffariff_jax.audio.io import read_audio
from diffariff_jax.data.latents import LatentReader, decode_example, list_shards, read_info
from diffariff_jax.precompute import precompute_config, run
from diffariff_jax.testing.synth_stems import make_tree

SR, HOP, FRAMES, CLAP_DIM = 48000, 4096, 8, 16
W = np.random.default_rng(0).standard_normal((HOP, 64)).astype(np.float32) / 64


def stand_in_encode(wav):
    """A linear 'CAE': each 4096-sample frame times W -> [B, frames, 64]."""
    b, n = wav.shape
    return wav.reshape(b, n // HOP, HOP) @ W


def stand_in_clap(wavs):
    """A gain-invariant 'CLAP': mean |sample| of each of 16 polyphase parts of the window, L2-normalised."""
    v = np.stack([[np.abs(w[i::CLAP_DIM]).mean() for i in range(CLAP_DIM)] for w in wavs])
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cfg(**kw):
    cfg = precompute_config()
    cfg.update({"split_fractions": (1.0, 0.0, 0.0), "mixes_per_song": 2, "segment_frames": FRAMES,
                "clap_segments": 2, "clap_seconds": 0.25, "songs_per_shard": 2, "encode_batch": 4, **kw})
    return cfg


def _run(data, out, cfg, **kw):
    return run(data, out, stand_in_encode, stand_in_clap, cfg, sample_rate=SR, hop_samples=HOP, latent_dim=64,
               clap_dim=CLAP_DIM, clap_rate=SR, **kw)


def _records(out):
    from array_record.python.array_record_module import ArrayRecordReader

    return {p.name: [decode_example(b) for b in ArrayRecordReader(str(p)).read_all()] for p in list_shards(out)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("data"), num_songs=5, seconds=3.0)


def test_records_match_their_stems(data, tmp_path):
    s = _run(data, tmp_path, _cfg())
    assert (s["shards"], s["shards_written"], s["examples_written"]) == (3, 3, 10)  # 5 songs x 2 mixes
    info = read_info(tmp_path)
    assert (info["frames"], info["clap_dim"], info["clap_segments"], info["hop_samples"]) == (FRAMES, 16, 2, HOP)
    length = FRAMES * HOP
    recs = [r for rs in _records(tmp_path).values() for r in rs]
    assert sorted(r.song_id for r in recs) == sorted([f"0000{i}_synth" for i in range(5)] * 2)
    for r in recs:
        meta = json.loads((data / r.song_id / "metadata.json").read_text())
        (stem,) = [m["file"] for m in meta["stems"] if m["instrument"] == r.instrument]
        seg = read_audio(data / r.song_id / stem, mono=True)[0][r.offset:r.offset + length]
        # The pipeline scales the target by one loudness gain: latents are a positive multiple of the reference.
        ref = stand_in_encode(seg[None])[0].ravel()
        got = r.target.astype(np.float32).ravel()
        assert r.target.shape == r.context.shape == (FRAMES, 64)
        assert got @ ref / np.linalg.norm(got) / np.linalg.norm(ref) > 0.999
        assert r.clap.shape == (2, CLAP_DIM) and len(r.clap_offsets) == 2
        for k, o in enumerate(r.clap_offsets):
            assert 0 <= o <= length - int(0.25 * SR)
            np.testing.assert_allclose(r.clap[k], stand_in_clap([seg[o:o + int(0.25 * SR)]])[0], atol=1e-5)
    batch = LatentReader(tmp_path, batch_size=4, crop_frames=6).batch(0)
    assert batch["target"].shape == (4, 6, 64) and batch["clap"].shape == (4, CLAP_DIM)


def test_resume_skips_finished_shards_and_host_split(data, tmp_path):
    first = _run(data, tmp_path / "a", _cfg())
    before = {p.name: p.read_bytes() for p in list_shards(tmp_path / "a")}
    again = _run(data, tmp_path / "a", _cfg())
    assert (again["shards_written"], again["shards_already_done"]) == (0, 3)
    victim = sorted(before)[1]
    (tmp_path / "a" / victim).unlink()
    (tmp_path / "a" / f"{victim}.tmp-99999").write_bytes(b"half a shard from a killed run")
    redo = _run(data, tmp_path / "a", _cfg())
    assert (redo["shards_written"], redo["shards_already_done"]) == (1, 2)
    assert (tmp_path / "a" / victim).read_bytes() == before[victim]  # same content: (seed, shard) only
    assert not list((tmp_path / "a").glob("*.tmp-*"))
    hosts = [_run(data, tmp_path / "b", _cfg(), process_index=h, process_count=2) for h in (1, 0)]
    assert [h["shards_written"] for h in hosts] == [1, 2]
    assert {p.name: p.read_bytes() for p in list_shards(tmp_path / "b")} == before
    assert first["examples_written"] == sum(h["examples_written"] for h in hosts)
    with pytest.raises(ValueError, match="other settings.*mixes_per_song"):
        _run(data, tmp_path / "a", _cfg(mixes_per_song=3))


def test_bad_inputs_are_skipped_and_counted(tmp_path):
    data = make_tree(tmp_path / "d", num_songs=5, seconds=3.0)
    song0 = json.loads((data / "00000_synth" / "metadata.json").read_text())["stems"]
    for m in song0[:2]:  # song 0 keeps one stem with sound: skipped as a song
        sf.write(data / "00000_synth" / m["file"], np.zeros(3 * SR, np.float32), SR)
    meta = json.loads((data / "00001_synth" / "metadata.json").read_text())
    (data / "00001_synth" / "09_bad.wav").write_bytes(b"garbage")
    nan = np.full(3 * SR, 0.1, np.float32)
    nan[100] = np.nan
    sf.write(data / "00001_synth" / "10_nan.wav", nan, SR, subtype="FLOAT")
    sf.write(data / "00001_synth" / "11_empty.wav", np.zeros(0, np.float32), SR)
    meta["stems"] += [{"file": "09_bad.wav", "instrument": "cello"}, {"file": "10_nan.wav", "instrument": "oboe"},
                      {"file": "11_empty.wav", "instrument": "tuba"}]
    (data / "00001_synth" / "metadata.json").write_text(json.dumps(meta))
    for m in json.loads((data / "00003_synth" / "metadata.json").read_text())["stems"]:
        sf.write(data / "00003_synth" / m["file"], np.zeros(SR // 4, np.float32) + 0.1, SR)  # 0.25 s < a segment
    # Song 4: a stereo 44.1 kHz stem is resampled and downmixed, not skipped.
    first = json.loads((data / "00004_synth" / "metadata.json").read_text())["stems"][0]["file"]
    wav = read_audio(data / "00004_synth" / first, sample_rate=44100)[0]
    sf.write(data / "00004_synth" / first, np.stack([wav, 0.5 * wav], axis=1), 44100)
    s = _run(data, tmp_path / "o", _cfg(songs_per_shard=3))
    assert s["skipped"]["bad stem: silent"] == 2
    assert s["skipped"]["bad stem: unreadable"] == 1
    assert s["skipped"]["bad stem: contains NaN or inf samples"] == 1
    assert s["skipped"]["bad stem: empty file"] == 1
    assert s["skipped"]["fewer than 2 usable stems"] == 1
    assert s["skipped"]["too short"] == 1
    assert s["examples_written"] == 3 * 2
    recs = [r for rs in _records(tmp_path / "o").values() for r in rs]
    assert {r.song_id for r in recs} == {"00001_synth", "00002_synth", "00004_synth"}
    assert not {"cello", "oboe", "tuba"} & {r.instrument for r in recs}


def test_bad_settings_fail_in_one_line(data, tmp_path):
    with pytest.raises(ValueError, match="mixes_per_song must be >= 1, got 0; latent_dtype must be float16"):
        _run(data, tmp_path, _cfg(mixes_per_song=0, latent_dtype="int8"))
    with pytest.raises(ValueError, match="clap_seconds 1.0 is longer than a segment"):
        _run(data, tmp_path, _cfg(clap_seconds=1.0))
    with pytest.raises(ValueError, match="process_index 2 not in"):
        _run(data, tmp_path, _cfg(), process_index=2, process_count=2)
    assert not list(tmp_path.iterdir())  # nothing written


def test_resume_refuses_any_setting_or_song_list_that_changes_records(data, tmp_path):
    import shutil

    _run(data, tmp_path / "a", _cfg())
    for change, named in [({"clap_seconds": 0.2}, "clap_seconds"), ({"silence_db": -40.0}, "silence_db"),
                          ({"split": "validation", "split_fractions": (0.0, 1.0, 0.0)}, "split"),
                          ({"mixes_per_minute": 30.0}, "mixes_per_minute"), ({"clap_tries": 2}, "clap_tries")]:
        with pytest.raises(ValueError, match=f"other settings .*{named}"):
            _run(data, tmp_path / "a", _cfg(**change))
    # another dataset, or songs added to this one (song-to-shard ranges would shift)
    more = tmp_path / "more"
    shutil.copytree(data, more)
    shutil.copytree(data / "00004_synth", more / "00005_synth")
    meta = json.loads((more / "00005_synth" / "metadata.json").read_text())
    (more / "00005_synth" / "metadata.json").write_text(json.dumps({**meta, "song_id": "00005_synth"}))
    with pytest.raises(ValueError, match=r"the song list \(5 songs then, 6 now\)"):
        _run(more, tmp_path / "a", _cfg())
    # the same songs in another folder are the same records: resuming is fine
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    assert _run(moved, tmp_path / "a", _cfg())["shards_already_done"] == 3
    # the encode batch only changes speed
    assert _run(data, tmp_path / "a", _cfg(encode_batch=3))["shards_already_done"] == 3


def test_mixes_per_minute_and_silence_checked_before_gain(tmp_path):
    data = make_tree(tmp_path / "d", num_songs=2, seconds=3.0)
    for m in json.loads((data / "00001_synth" / "metadata.json").read_text())["stems"]:
        wav = read_audio(data / "00001_synth" / m["file"], mono=True)[0]
        sf.write(data / "00001_synth" / m["file"], wav * 10 ** (-62 / 20) / np.sqrt(np.mean(wav ** 2) + 1e-12), SR,
                 subtype="FLOAT")  # stems at -62 dBFS: the shared gain used to lift them to -20 dBFS targets
    s = _run(data, tmp_path / "o", _cfg(mixes_per_song=2, mixes_per_minute=120.0, validate="header"))
    recs = [r for rs in _records(tmp_path / "o").values() for r in rs]
    assert {r.song_id for r in recs} == {"00000_synth"}
    assert len(recs) == 6  # 3 s at 120 per minute = 6 > the minimum 2
    assert s["skipped"]["target silent in its segment"] == 6


def test_host_split_from_flags_or_the_launchers_environment():
    from diffariff_jax.precompute_plan import host_split

    assert host_split(None, None, {}) == (0, 1)
    assert host_split(3, 4, {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}) == (3, 4)  # flags win
    assert host_split(None, None, {"JAX_PROCESS_ID": "1", "JAX_NUM_PROCESSES": "3"}) == (1, 3)
    assert host_split(None, None, {"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}) == (5, 8)
    assert host_split(None, None, {"TPU_WORKER_ID": "2", "TPU_WORKER_HOSTNAMES": "a,b,c,d"}) == (2, 4)


def test_clap_windows_keep_the_loudest_candidate():
    """Each window is the loudest of its `tries` random offsets (brute-force mean square as the reference)."""
    from diffariff_jax.precompute import clap_windows

    rng = np.random.default_rng(5)
    target = (0.01 * rng.standard_normal(20_000)).astype(np.float32)
    target[12_000:13_000] *= 50.0  # one loud note among quiet noise
    wins, offsets = clap_windows(target, 3, 2_000, 6, np.random.default_rng(9))
    draws = np.random.default_rng(9)
    for win, off in zip(wins, offsets):
        cands = draws.integers(0, target.shape[0] - 2_000 + 1, size=6)
        energy = [np.mean(target[o:o + 2_000].astype(np.float64) ** 2) for o in cands]
        assert off == cands[int(np.argmax(energy))]
        np.testing.assert_array_equal(win, target[off:off + 2_000])


def test_latent_statistics_are_reported_and_a_misfit_latent_scale_named(data, tmp_path):
    """The LDM's noise levels assume latents of about unit std: records far from it (a CAE trained here with
    Music2Latent's 0.06 scale) get one warning naming the scale that fits; unit-std records get none."""
    from diffariff_jax.data.latents import LatentReader as Reader

    def stats_of(out):
        reader = Reader(out, 2, FRAMES)
        z = np.concatenate([np.concatenate([e.target, e.context]) for e in reader.read(np.arange(reader.num_examples))])
        return float(np.mean(z.astype(np.float64))), float(np.std(z.astype(np.float64)))

    def scaled(factor):
        return lambda wav: factor * stand_in_encode(wav)

    plain = _run(data, tmp_path / "plain", _cfg(), names={"cae_latent_scale": 0.06})
    mean, std = stats_of(tmp_path / "plain")
    raw_std = std
    assert plain["latents"]["mean"] == pytest.approx(mean, abs=2e-3)
    assert plain["latents"]["std"] == pytest.approx(std, rel=2e-3)  # float16 records vs float32 sums
    fit = 1.0 / raw_std  # a stand-in whose latents have unit std
    ok = run(data, tmp_path / "unit", scaled(fit), stand_in_clap, _cfg(), sample_rate=SR, hop_samples=HOP,
             latent_dim=64, clap_dim=CLAP_DIM, clap_rate=SR, names={"cae_latent_scale": 0.06})
    assert ok["latents"]["std"] == pytest.approx(1.0, rel=1e-2) and "warning" not in ok
    loud = run(data, tmp_path / "six", scaled(6 * fit), stand_in_clap, _cfg(), sample_rate=SR, hop_samples=HOP,
               latent_dim=64, clap_dim=CLAP_DIM, clap_rate=SR, names={"cae_latent_scale": 0.06})
    assert loud["latents"]["std"] == pytest.approx(6.0, rel=1e-2)
    assert "the latents written have std 6.00" in loud["warning"]
    assert "set inference.latent_scale to 0.36 in the CAE's config.json" in loud["warning"]  # 0.06 x 6
    assert read_info(tmp_path / "six")["cae_latent_scale"] == 0.06
