"""The evaluation, stage by stage: examples -> real-data embeddings (cached) -> baselines and the codec's
reconstruction distances -> per condition: generate, embed, score; then the denoising losses per
conditioning pattern. `prepare` does what one checkpoint shares with every other checkpoint of a run
(examples, real embeddings, baselines, codec); `score_checkpoint` and `denoising` do the rest for one set of
LDM weights.

Every stage is timed (`Timer.seconds`) and shows a progress bar; embeddings are batched through
metrics.embed_waveforms and counted per stage (`Prepared.clips_embedded`), so a cached run can show
that it embedded no real audio.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import ml_collections
import numpy as np
from tqdm import tqdm

from diffariff_jax import metrics
from diffariff_jax.evaluation import baselines as baselines_lib
from diffariff_jax.evaluation import codec as codec_lib
from diffariff_jax.evaluation import conditions as conditions_lib
from diffariff_jax.evaluation import denoising as denoising_lib
from diffariff_jax.evaluation import examples as examples_lib
from diffariff_jax.evaluation import scoring
from diffariff_jax.evaluation.cache import EmbeddingCache
from diffariff_jax.release_bundle import cae_fingerprint, clap_fingerprint

CACHE_VERSION = 4  # bump when what an entry holds changes


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


@dataclass
class Prepared:
    sample_rate: int
    examples: examples_lib.Examples
    reference: examples_lib.Examples
    data_info: dict
    vocab: list[str]
    emb: dict[str, np.ndarray]           # real-data and baseline embeddings (see _real_embeddings)
    prompts: dict[str, np.ndarray]       # conditioning CLAP embeddings: "audio", "text" [n, clap_dim]
    apa_skipped: str | None               # why APA cannot be computed (fewer than 2 test songs), else None
    rows: dict[str, dict] = field(default_factory=dict)        # baseline rows of the report
    per_example: dict[str, dict] = field(default_factory=dict)  # system -> per-example scores
    audio: dict[str, np.ndarray] = field(default_factory=dict)  # system -> stems of the audio examples
    clips_embedded: dict[str, int] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    codec: dict | None = None  # codec.summary of the CAE's reconstructions (with the cae_roundtrip baseline)
    latents: dict[str, np.ndarray] = field(default_factory=dict)  # CAE latents of targets and contexts


def embed(acc: Any, wavs: np.ndarray, cfg: ml_collections.ConfigDict, desc: str, counts: dict[str, int]) -> np.ndarray:
    """CLAP audio embeddings of clips [n, samples] at acc.sample_rate -> [n, dim], with a progress bar."""
    m = cfg.metrics
    chunk = 4 * int(m.embed_batch_size)
    out = []
    for start in tqdm(range(0, len(wavs), chunk), desc=f"embed {desc}", unit="batch", leave=False):
        out.append(metrics.embed_waveforms(acc.clap, list(wavs[start:start + chunk]), acc.sample_rate,
                                           batch_size=int(m.embed_batch_size), hop_seconds=float(m.embed_hop_seconds),
                                           min_seconds=min(float(m.embed_min_seconds), wavs.shape[1] / acc.sample_rate)))
    counts[desc] = counts.get(desc, 0) + len(wavs)
    return np.concatenate(out)


def mismatch_seed(cfg: ml_collections.ConfigDict, k: int) -> int:
    """The seed of APA's k-th mismatched pairing (the random-stem baseline draws with seed + 1)."""
    return int(cfg.seed) * 1009 + 100 + k


def segment_samples(acc: Any, cfg: ml_collections.ConfigDict) -> int:
    frames = int(cfg.examples.segment_frames) or acc.window_frames
    return frames * acc.cae.hop_samples


def prepare(acc: Any, cfg: ml_collections.ConfigDict, *, data_root: str, layout: str, clap_seconds: float,
            cache: EmbeddingCache, timer: Timer) -> Prepared:
    """Examples, conditioning prompts, real-data embeddings and every baseline's scores."""
    ex = cfg.examples
    length = segment_samples(acc, cfg)
    with timer.stage("examples"):
        songs = examples_lib.test_songs(data_root, layout, tuple(ex.split_fractions), acc.sample_rate,
                                        length / acc.sample_rate)
        examples, reference, info = examples_lib.draw(
            songs, int(cfg.num_examples), length, acc.sample_rate, int(round(clap_seconds * acc.sample_rate)), ex,
            int(cfg.seed), min_examples=int(cfg.metrics.prdc_k) + 1)
    info.update(root=data_root, layout=layout, split="test", split_fractions=list(ex.split_fractions),
                note_split="the song-level split of data/layouts.py that training used: no test song was trained on")
    vocab = sorted(set(examples.instruments) | set(reference.instruments))
    apa_skipped = None if len(set(examples.song_ids)) >= 2 else (
        "APA and the random-stem baseline need examples from at least 2 test songs")
    needed = {c.clap for c in conditions_lib.get_conditions(cfg.conditions) if c.clap}
    with timer.stage("prompts"):
        prompts = conditions_lib.clap_prompts(acc, examples, cfg.text_template, needed)
    description = {"version": CACHE_VERSION, "data": info, "examples": ex.to_dict(), "seed": int(cfg.seed),
                   "clap_seconds": clap_seconds, "sample_rate": acc.sample_rate, "length": length,
                   "embed": {k: v for k, v in cfg.metrics.items() if k.startswith("embed_")},
                   "template": cfg.text_template, "baselines": sorted(cfg.baselines), "clap": acc.clap.name,
                   "clap_weights": clap_fingerprint(acc.clap)}
    prep = Prepared(acc.sample_rate, examples, reference, info, vocab, {}, prompts, apa_skipped)
    with timer.stage("real_embeddings"):
        prep.emb, key = cache.get_or_compute(description, lambda: _real_embeddings(acc, prep, cfg))
    prep.cache = {"directory": str(cache.directory) if cache.directory else None, "real_key": key}
    if "cae_roundtrip" in cfg.baselines:
        with timer.stage("cae_roundtrip"):
            codec, prep.cache["codec_key"] = cache.get_or_compute(
                codec_description(description, acc.cae), lambda: _codec_embeddings(acc, prep, cfg))
            prep.emb.update(codec)
        prep.codec = codec_lib.summary({k[len("codec/"):]: v for k, v in prep.emb.items() if k.startswith("codec/")})
    prep.cache.update(hits=cache.hits, misses=cache.misses)
    with timer.stage("score_baselines"):
        for name in cfg.baselines:
            _score_baseline(acc, prep, cfg, name)
    return prep


def codec_description(description: dict[str, Any], cae: Any) -> dict[str, Any]:
    """The cache description of the CAE round trip: the real data's, the CAE's weights and every decoding
    setting (decode steps, band matching and its cap, chunking), since each changes what it decodes."""
    return {**description, "cae_weights": cae_fingerprint(cae), "cae_inference": cae.config.inference.to_dict()}


def _real_embeddings(acc: Any, prep: Prepared, cfg: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """Every embedding that depends on the data and the CLAP only."""
    e, r, counts = prep.examples, prep.reference, prep.clips_embedded
    out = {"real": embed(acc, e.target, cfg, "real", counts),
           "matching": embed(acc, e.context + e.target, cfg, "real", counts),
           "vocab": acc.embed_text(conditions_lib.text_prompts(prep.vocab, cfg.text_template))}
    if prep.apa_skipped is None:
        perms = [metrics.mismatch_permutation(e.song_ids, mismatch_seed(cfg, k)) for k in range(int(cfg.apa_pairings))]
        out["mismatched"] = np.concatenate([embed(acc, e.context[p] + e.target, cfg, "real", counts) for p in perms])
    names = set(cfg.baselines)
    if "real_other_spans" in names:
        out["real_other_spans/stems"] = embed(acc, r.target, cfg, "real", counts)
        out["real_other_spans/mixes"] = embed(acc, r.context + r.target, cfg, "real", counts)
    if "random_stem" in names and prep.apa_skipped is None:
        perm = baselines_lib.random_stem_permutation(e, int(cfg.seed))
        out["random_stem/stems"] = out["real"][perm]
        out["random_stem/mixes"] = embed(acc, e.context + e.target[perm], cfg, "real", counts)
    # The DSP codec has no weights, so its reconstructions belong here; the mel_codec row and the codec
    # table (which exists with the cae_roundtrip baseline) share them.
    mel_stems = None
    if names & {"mel_codec", "cae_roundtrip"}:
        mel_stems = codec_lib.mel_codec_stems(e.target, acc.sample_rate, int(cfg.seed))
    if "mel_codec" in names:
        out["mel_codec/stems"] = embed(acc, mel_stems, cfg, "mel_codec", counts)
        out["mel_codec/mixes"] = embed(acc, e.context + mel_stems, cfg, "mel_codec", counts)
        out["mel_codec/audio"] = mel_stems[: int(cfg.num_audio_examples)]
    if "cae_roundtrip" in names:
        refs = codec_lib.references(e)
        yardsticks = codec_lib.yardsticks(refs, acc.sample_rate, int(cfg.seed), mel_stems)
        out.update({f"codec/{k}": v for k, v in codec_lib.distances(refs, yardsticks, acc.sample_rate).items()})
    if "silence" in names:
        one = embed(acc, np.zeros_like(e.target[:1]), cfg, "real", counts)  # CLAP is deterministic: one suffices
        out["silence/stems"] = np.repeat(one, len(e), axis=0)
        out["silence/mixes"] = embed(acc, e.context, cfg, "real", counts)
    return out


def _codec_embeddings(acc: Any, prep: Prepared, cfg: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """The CAE round trip's embeddings and audio, and its codec.distances entries (as "codec/...")."""
    seed = int(cfg.seed)
    system = baselines_lib.baseline("cae_roundtrip", prep.examples, prep.reference, acc.cae, seed, acc.sample_rate)
    counts = prep.clips_embedded
    refs = codec_lib.references(prep.examples)
    decoded = {"stems": system.stems, "mixes": codec_lib.roundtrip(acc.cae, refs["mixes"], seed)}
    dist = codec_lib.distances(refs, {"cae_roundtrip": decoded}, acc.sample_rate)
    return {"cae_roundtrip/stems": embed(acc, system.stems, cfg, "cae_roundtrip", counts),
            "cae_roundtrip/mixes": embed(acc, system.contexts + system.stems, cfg, "cae_roundtrip", counts),
            "cae_roundtrip/audio": system.stems[: int(cfg.num_audio_examples)],
            **{f"codec/{k}": v for k, v in dist.items()}}


def _score_baseline(acc: Any, prep: Prepared, cfg: ml_collections.ConfigDict, name: str) -> None:
    label = baselines_lib.LABELS[name]
    if f"{name}/stems" not in prep.emb:
        prep.rows[name] = {"label": label, "kind": "baseline", "metrics": None, "skipped": prep.apa_skipped}
        return
    if f"{name}/audio" in prep.emb:  # the codecs' reconstructions are kept with their embeddings
        stems_audio = prep.emb[f"{name}/audio"]
    else:
        stems_audio = baselines_lib.baseline(name, prep.examples, prep.reference, acc.cae, int(cfg.seed),
                                             acc.sample_rate).stems
    instruments = prep.reference.instruments if name == "real_other_spans" else prep.examples.instruments
    _score_system(prep, cfg, name, label, "baseline", prep.emb[f"{name}/stems"], prep.emb[f"{name}/mixes"],
                  instruments, aligned=name != "real_other_spans", audio=stems_audio)


def _score_system(prep: Prepared, cfg: ml_collections.ConfigDict, name: str, label: str, kind: str,
                  stems: np.ndarray, mixes: np.ndarray, instruments: Sequence[str], *, aligned: bool,
                  audio: np.ndarray) -> None:
    emb = prep.emb
    labels = np.array([prep.vocab.index(i) for i in instruments])
    per = scoring.per_example(stems, emb["vocab"][labels], emb["vocab"], labels, emb["real"] if aligned else None)
    apa_sets = None if prep.apa_skipped else (emb["matching"], emb["mismatched"])
    values = scoring.score(emb["real"], stems, mixes, apa_sets, per, cfg.metrics, cfg.bootstrap, int(cfg.seed))
    prep.rows[name] = {"label": label, "kind": kind, "metrics": values}
    prep.per_example[name] = per
    prep.audio[name] = np.asarray(audio[: int(cfg.num_audio_examples)])


def score_checkpoint(acc: Any, prep: Prepared, cfg: ml_collections.ConfigDict, settings: Any,
                     timer: Timer) -> dict[str, dict]:
    """Generates, embeds and scores every condition with acc's weights -> the condition rows."""
    e = prep.examples
    for condition in conditions_lib.get_conditions(cfg.conditions):
        with timer.stage(f"generate/{condition.name}"), tqdm(total=len(e), desc=f"generate {condition.name}",
                                                             unit="example", leave=False) as bar:
            stems = conditions_lib.generate(acc, e, condition, prep.prompts, settings, int(cfg.generation_seed),
                                            int(cfg.generate_batch), bar.update)
        with timer.stage(f"embed/{condition.name}"):
            g = embed(acc, stems, cfg, condition.name, prep.clips_embedded)
            c = embed(acc, e.context + stems, cfg, condition.name, prep.clips_embedded)
        with timer.stage(f"score/{condition.name}"):
            _score_system(prep, cfg, condition.name, condition.label, "condition", g, c, e.instruments,
                          aligned=True, audio=stems)
    return {c: prep.rows[c] for c in cfg.conditions}


def denoising(acc: Any, prep: Prepared, cfg: ml_collections.ConfigDict, timer: Timer) -> dict:
    """denoising.summary of acc's losses on the examples under each conditioning pattern."""
    e = prep.examples
    with timer.stage("denoising"):
        if not prep.latents:  # the CAE is shared by every checkpoint: encode once per evaluation
            prep.latents = {k: np.asarray(acc.cae.encode(v), np.float32) for k, v in
                            (("target", e.target), ("context", e.context))}
        clap = prep.prompts["audio"] if "audio" in prep.prompts else acc.embed_audio(e.clap_audio)
        losses = denoising_lib.per_example_losses(acc, prep.latents["target"], prep.latents["context"], clap,
                                                  draws=int(cfg.denoising.draws), batch=int(cfg.generate_batch),
                                                  seed=int(cfg.seed))
        return denoising_lib.summary(losses, resamples=int(cfg.bootstrap.num_resamples),
                                     confidence=float(cfg.bootstrap.confidence), seed=int(cfg.seed))
