"""Trains a small CLAP (transformers' ClapModel) contrastively on stems and their instrument captions.

    python -m diffariff_jax.clap train --data data/demo --out runs/clap [--variant small] [--steps N]

No public CLAP weights can be fetched here, so the demo's text prompts get their meaning from this model.
Data: any layout data/layouts.py reads (default `demo`: one folder per song with metadata.json naming each
stem's instrument, as `diffariff_jax.data.render` writes it); captions come from the instrument names.
Songs are split into train / held-out by a seeded shuffle; each stem gives `crops_per_stem` non-silent
10 s windows whose mel features are computed once with the same feature extractor the embedder uses.
Captions are instrument names in templates ("a cello", "solo flute melody", ...). Since many stems share
an instrument, the loss is the symmetric CLIP cross-entropy with every same-instrument pair in the batch
counted as a positive.

The output directory loads with `ClapEmbedder.from_pretrained(out)`; `metrics.json` there holds the
text-to-audio retrieval accuracy on the held-out songs' stems, measured through that public path.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import ml_collections
import numpy as np
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor,
                          ClapTextConfig, RobertaTokenizer)

from diffariff_jax.audio.io import AudioError, is_silent, read_audio

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4, as ClapTextConfig expects


def caption(template: str, name: str) -> str:
    """Fills a caption template: '{a} {name}' + 'english horn' -> 'an english horn'."""
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return template.format(a=article, name=name)


def write_vocabulary(out_dir: str | Path, classes: list[str], templates: tuple[str, ...]) -> None:
    """vocabulary.json: the instruments and every caption word, so prompts outside them get a warning."""
    from diffariff_jax.clap import VOCABULARY_FILE, prompt_words

    words = sorted({w for c in classes for t in templates for w in prompt_words(caption(t, c))})
    (Path(out_dir) / VOCABULARY_FILE).write_text(json.dumps({"instruments": sorted(classes), "words": words}))


def build_tokenizer(texts: list[str], vocab_size: int, max_tokens: int) -> RobertaTokenizer:
    """A byte-level BPE tokenizer trained offline on `texts`, wrapped as transformers' RobertaTokenizer."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        tok = RobertaTokenizer(vocab=f"{tmp}/vocab.json", merges=f"{tmp}/merges.txt")
    tok.model_max_length = max_tokens
    return tok


def build_feature_extractor(features: ml_collections.ConfigDict) -> ClapFeatureExtractor:
    return ClapFeatureExtractor(feature_size=features.num_mel_bins, sampling_rate=features.sample_rate,
                                hop_length=features.hop_length, fft_window_size=features.fft_window_size,
                                max_length_s=features.window_seconds, frequency_max=features.frequency_max,
                                truncation="rand_trunc", padding="repeatpad")


def build_clap(cfg: ml_collections.ConfigDict, texts: list[str]) -> tuple[ClapModel, ClapProcessor]:
    """A randomly initialised ClapModel (seeded by cfg.train.seed) and its processor, from configs/clap.py."""
    m = cfg.model
    tokenizer = build_tokenizer(texts, m.vocab_size, m.max_text_tokens)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=m.text_hidden_size,
                          num_hidden_layers=m.text_layers, num_attention_heads=m.text_heads,
                          intermediate_size=m.text_intermediate_size, hidden_dropout_prob=m.dropout,
                          attention_probs_dropout_prob=m.dropout, max_position_embeddings=m.max_text_tokens + 2)
    depths = list(m.audio_depths)
    audio = ClapAudioConfig(spec_size=m.spec_size, num_mel_bins=cfg.features.num_mel_bins,
                            window_size=m.audio_window_size, patch_size=m.patch_size,
                            patch_stride=[m.patch_size, m.patch_size],
                            patch_embeds_hidden_size=m.audio_patch_hidden_size, depths=depths,
                            num_attention_heads=list(m.audio_heads), hidden_dropout_prob=m.dropout,
                            hidden_size=m.audio_patch_hidden_size * 2 ** (len(depths) - 1), enable_fusion=False)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=m.projection_dim,
                        logit_scale_init_value=m.logit_scale_init)
    torch.manual_seed(cfg.train.seed)
    model = ClapModel(config)
    return model, ClapProcessor(feature_extractor=build_feature_extractor(cfg.features), tokenizer=tokenizer)


@dataclass
class Crop:
    song_id: str
    paths: tuple[str, ...]
    instrument: str
    start: int  # sample offset of the window in the stem


def list_stems(data_dir: str | Path, layout: str = "demo") -> list[tuple[str, tuple[str, ...], str]]:
    """(song_id, stem paths, instrument) of every stem of every song (data/layouts.py scan; bad songs skipped)."""
    from diffariff_jax.data import layouts

    return [(song.song_id, stem.paths, stem.instrument.strip().lower())
            for song in layouts.scan(data_dir, layout) for stem in song.stems]


def iter_crops(stems: list[tuple[str, tuple[str, ...], str]], sample_rate: int, window: int, per_stem: int,
               silence_db: float, rng: np.random.Generator,
               counts: dict[str, int]) -> Iterator[tuple[Crop, np.ndarray]]:
    """Yields (crop, audio [<= window]) for up to `per_stem` random non-silent windows of each stem.

    Unreadable / NaN / empty stems and silent windows are skipped, logged, and counted in `counts`.
    """
    for song_id, paths, inst in stems:
        try:
            wav = _read_stem(paths, sample_rate)
        except AudioError as e:
            log.warning("skip stem: %s", e)
            counts["bad_stems"] = counts.get("bad_stems", 0) + 1
            continue
        positions = len(wav) - window + 1
        starts = [0] if positions <= 1 else sorted(rng.choice(positions, size=min(per_stem, positions), replace=False))
        for s in starts:
            piece = wav[s:s + window]
            if is_silent(piece, silence_db):
                counts["silent_crops"] = counts.get("silent_crops", 0) + 1
                continue
            yield Crop(song_id, paths, inst, int(s)), piece


def _read_stem(paths: tuple[str, ...], sample_rate: int) -> np.ndarray:
    """A stem as mono [samples]: the sum of its files (MoisesDB stems have several), zero-padded to the longest."""
    wavs = [read_audio(p, sample_rate=sample_rate, mono=True)[0] for p in paths]
    out = np.zeros(max(len(w) for w in wavs), np.float32)
    for w in wavs:
        out[:len(w)] += w
    return out


def crop_audio(crop: Crop, sample_rate: int, window: int) -> np.ndarray:
    """Re-reads one crop's window (held-out clips are embedded after training, not kept in memory)."""
    return _read_stem(crop.paths, sample_rate)[crop.start:crop.start + window]


def featurize(fe: ClapFeatureExtractor, pieces: Iterator[tuple[Crop, np.ndarray]],
              chunk: int = 64) -> tuple[list[Crop], torch.Tensor]:
    """Mel features of every crop, computed in chunks so the audio itself is never all in memory."""
    crops, feats, buf = [], [], []
    for crop, piece in pieces:
        crops.append(crop)
        buf.append(piece)
        if len(buf) == chunk:
            feats.append(np.asarray(fe(buf, sampling_rate=fe.sampling_rate, return_tensors="np")["input_features"],
                                    np.float32))
            buf = []
    if buf:
        feats.append(np.asarray(fe(buf, sampling_rate=fe.sampling_rate, return_tensors="np")["input_features"],
                                np.float32))
    return crops, torch.from_numpy(np.concatenate(feats)) if feats else torch.zeros(0)


def retrieval_metrics(audio_emb: np.ndarray, labels: np.ndarray, text_emb: np.ndarray) -> dict[str, float]:
    """audio_emb: [N, D], labels: [N] class ids, text_emb: [C, D] (all L2-normalised).

    top1/top5: for each clip, is its instrument's caption among the 1 / 5 most similar of the C captions.
    text_to_audio_p1/p5: for each class with clips, the fraction of its 1 / 5 nearest clips of that class.
    """
    sim = audio_emb @ text_emb.T  # [N, C]
    rank = (sim > sim[np.arange(len(labels)), labels][:, None]).sum(axis=1)
    out = {"top1": float(np.mean(rank < 1)), "top5": float(np.mean(rank < 5)),
           "chance_top1": 1.0 / text_emb.shape[0], "chance_top5": min(5, text_emb.shape[0]) / text_emb.shape[0],
           "num_clips": int(len(labels)), "num_classes": int(text_emb.shape[0])}
    for k in (1, 5):
        precisions = []
        for c in np.unique(labels):
            nearest = np.argsort(-sim[:, c], kind="stable")[:k]
            precisions.append(float(np.mean(labels[nearest] == c)))
        out[f"text_to_audio_p{k}"] = float(np.mean(precisions))
    return out


def _class_text_embeddings(embedder, classes: list[str], templates: tuple[str, ...]) -> np.ndarray:
    """Prompt ensemble: mean of every template's caption embedding per class, renormalised -> [C, D]."""
    emb = embedder.embed_text([caption(t, c) for c in classes for t in templates])
    emb = emb.reshape(len(classes), len(templates), -1).mean(axis=1)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def _loss(model: ClapModel, feats: torch.Tensor, tokens: dict, labels: torch.Tensor, scale_max: float) -> torch.Tensor:
    a = model.get_audio_features(input_features=feats).pooler_output
    t = model.get_text_features(**tokens).pooler_output
    logits = model.logit_scale_a.exp().clamp(max=scale_max) * a @ t.T
    positives = (labels[:, None] == labels[None, :]).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    return 0.5 * (torch.sum(-targets * logits.log_softmax(1), 1).mean()
                  + torch.sum(-targets * logits.T.log_softmax(1), 1).mean())


def train(cfg: ml_collections.ConfigDict, data_dir: str | Path, out_dir: str | Path, layout: str = "demo") -> dict:
    """Trains, saves model + processor to out_dir, evaluates held-out retrieval; returns the metrics dict."""
    threads = torch.get_num_threads()
    if cfg.train.torch_threads:
        torch.set_num_threads(cfg.train.torch_threads)
    try:
        return _train(cfg, data_dir, out_dir, layout)
    finally:
        torch.set_num_threads(threads)  # a process-wide setting: give the caller its own back


def _train(cfg: ml_collections.ConfigDict, data_dir: str | Path, out_dir: str | Path, layout: str) -> dict:
    from diffariff_jax.clap import ClapEmbedder

    t0 = time.time()
    tc = cfg.train
    rng = np.random.default_rng(tc.seed)
    stems = list_stems(data_dir, layout)
    songs = sorted({s for s, _, _ in stems})
    if len(songs) < 2:
        raise ValueError(f"{data_dir}: {len(songs)} song(s); need at least 2 to hold some out for evaluation")
    order = rng.permutation(len(songs))
    n_held = min(len(songs) - 1, max(1, int(round(tc.holdout_fraction * len(songs)))))
    held = {songs[i] for i in order[:n_held]}
    counts: dict[str, int] = {}
    window = int(cfg.features.window_seconds * cfg.features.sample_rate)
    sr = cfg.features.sample_rate
    train_stems = [s for s in stems if s[0] not in held]
    classes = sorted({inst for _, _, inst in train_stems})
    if len(classes) < 2:
        raise ValueError(f"{data_dir}: training stems name {len(classes)} instrument(s); need at least 2")
    class_id = {c: i for i, c in enumerate(classes)}
    templates = tuple(cfg.captions.templates)
    model, processor = build_clap(cfg, [caption(t, c) for c in classes for t in templates])
    train_crops, feats = featurize(processor.feature_extractor,
                                   iter_crops(train_stems, sr, window, tc.crops_per_stem, tc.silence_db, rng, counts))
    held_crops = [c for c, _ in iter_crops([s for s in stems if s[0] in held and s[2] in class_id], sr, window,
                                           tc.crops_per_stem, tc.silence_db, rng, counts)]
    if not held_crops:
        raise ValueError(f"{data_dir}: no held-out stem has an instrument seen in training")
    labels = np.array([class_id[c.instrument] for c in train_crops])
    by_class = [np.flatnonzero(labels == k) for k in range(len(classes))]
    if any(len(b) == 0 for b in by_class):
        raise ValueError(f"{data_dir}: some instruments have only silent or unreadable stems")
    log.info("CLAP data: %d train crops, %d held-out crops, %d classes, %d held-out songs, skipped %s",
             len(train_crops), len(held_crops), len(classes), len(held), counts or "nothing")

    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / tc.warmup_steps) * 0.5 * (
        1 + math.cos(math.pi * min(s, tc.steps) / tc.steps)))
    torch.manual_seed(tc.seed)
    model.train()
    for step in range(tc.steps):
        # Class-balanced batch: rare instruments are seen as often as common ones.
        batch_classes = rng.integers(0, len(classes), size=tc.batch_size)
        idx = np.array([rng.choice(by_class[k]) for k in batch_classes])
        texts = [caption(templates[rng.integers(len(templates))], classes[k]) for k in batch_classes]
        tokens = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        tokens = {k: tokens[k] for k in ("input_ids", "attention_mask")}
        loss = _loss(model, feats[idx], tokens, torch.from_numpy(batch_classes), cfg.model.logit_scale_max)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % tc.log_every == 0 or step == tc.steps - 1:
            log.info("clap step %d/%d loss %.4f", step, tc.steps, float(loss.detach()))
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    write_vocabulary(out_dir, classes, templates)

    embedder = ClapEmbedder.from_pretrained(str(out_dir))
    audio_emb = np.concatenate([embedder.embed_audio([crop_audio(c, sr, window) for c in held_crops[i:i + 64]])
                                for i in range(0, len(held_crops), 64)])
    metrics = retrieval_metrics(audio_emb, np.array([class_id[c.instrument] for c in held_crops]),
                                _class_text_embeddings(embedder, classes, templates))
    metrics.update({"train_crops": len(train_crops), "held_out_songs": len(held), "classes": classes,
                    "skipped": counts, "steps": tc.steps, "final_loss": float(loss.detach()),
                    "seconds": round(time.time() - t0, 1), "variant": cfg.variant})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out_dir / "clap_train_config.json").write_text(cfg.to_json(indent=1))
    return metrics


def main(argv: list[str] | None = None) -> int:
    from configs.clap import VARIANTS, get_config

    p = argparse.ArgumentParser(prog="python -m diffariff_jax.clap train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="multitrack folder (captions come from stem instrument names)")
    p.add_argument("--layout", default="demo", help="data/layouts.py layout: demo | generic | musdb18hq | "
                   "slakh2100 | moisesdb | medleydb")
    p.add_argument("--out", required=True, help="output directory (save_pretrained model + processor)")
    p.add_argument("--variant", default="small", choices=VARIANTS, help="configs/clap.py variant")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--threads", type=int, help="override train.torch_threads (0 = torch's default)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = get_config(args.variant)
    if args.steps is not None:
        cfg.train.steps = args.steps
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.threads is not None:
        cfg.train.torch_threads = args.threads
    from diffariff_jax import paths

    try:  # soundfile and save_pretrained take local paths only
        m = train(cfg, paths.local(args.data, "--data"), paths.local(args.out, "--out"), args.layout)
    except (FileNotFoundError, ValueError) as e:  # PathError is a ValueError
        log.error("error: %s", str(e).splitlines()[0])
        return 1
    print(f"held-out retrieval over {m['num_classes']} instruments ({m['num_clips']} clips): "
          f"top-1 {m['top1']:.3f} (chance {m['chance_top1']:.3f}), top-5 {m['top5']:.3f} "
          f"(chance {m['chance_top5']:.3f}); text->audio P@1 {m['text_to_audio_p1']:.3f}, "
          f"P@5 {m['text_to_audio_p5']:.3f} -> {args.out}/metrics.json")
    return 0
