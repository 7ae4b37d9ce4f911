"""One TFDS builder for every multitrack layout: examples are songs, each with its stems and names.

Thin over `diffariff_jax.data.layouts` (which songs, which stems, which split) and
`diffariff_jax.data.stems` (validation, decoding, resampling, padding). Fully offline: the catalogue
is read from `manual_dir`; nothing is downloaded. Configs: generic, musdb18hq, slakh2100, moisesdb,
demo (48 kHz mono); pass a MultitrackConfig for another rate or split fractions.

Example features:
  song_id: string
  audio: float32 [num_stems, samples] at the config's sample_rate, mono stems zero-padded at the end
         to the song's longest stem
  instruments: [num_stems] strings
Bad input: every file is decoded before writing (validate="full"): unreadable, empty, NaN, silent
stems and songs left with < 2 stems are skipped with one log line each and counted in one summary line.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from diffariff_jax.audio.io import AudioError
from diffariff_jax.data import layouts
from diffariff_jax.data.stems import load_song, probe_songs

tf.config.set_visible_devices([], "GPU")

log = logging.getLogger(__name__)


@dataclasses.dataclass
class MultitrackConfig(tfds.core.BuilderConfig):
    """layout: a name from layouts.LAYOUTS; split_fractions: (train, validation, test) by song hash."""

    layout: str = "generic"
    sample_rate: int = 48000
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    validate: str = "full"  # "full" decodes every file first (catches NaN/silence); "header" is faster


class DiffariffMultitrack(tfds.core.GeneratorBasedBuilder):
    """Multitrack songs (stems + instrument names) from a local folder in one of the supported layouts."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Songs with mono float32 stems and instrument names.",
                     "1.1.0": "Song ids <dataset>/<song>; can_be_target per stem (groups and bleeding stems are "
                              "context-only); medleydb layout."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at the catalogue's root folder: generic = one folder per song with one audio "
        "file per stem; musdb18hq = the folder holding train/ and test/; slakh2100 = the folder holding "
        "train/, validation/, test/ (redux or split2), omitted/; moisesdb = the folder holding the song folders "
        "(or provider folders); medleydb = the folder holding the track folders and *_METADATA.yaml files; "
        "demo = the --out folder of `python -m diffariff_jax.data.render`.")
    BUILDER_CONFIGS = [MultitrackConfig(name=n, layout=n, description=f"{n} folder layout, 48 kHz mono")
                       for n in layouts.LAYOUTS]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.skips = layouts.Skips()  # what the last build skipped, by reason

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "song_id": tfds.features.Text(),
                # [num_stems, samples]: stems share one length (zero-padded), so one dense tensor
                "audio": tfds.features.Tensor(shape=(None, None), dtype=np.float32,
                                              encoding=tfds.features.Encoding.BYTES),
                "instruments": tfds.features.Sequence(tfds.features.Text()),
                "can_be_target": tfds.features.Sequence(np.bool_),  # False: a group or bleeding stem
            }),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        cfg = self.builder_config
        songs = layouts.scan(dl_manager.manual_dir, cfg.layout, self.skips)
        out = {}
        for split in layouts.SPLITS:
            chosen = layouts.songs_in_split(songs, split, tuple(cfg.split_fractions))
            if chosen:
                out[split] = self._generate_examples(chosen)
            else:
                log.warning("%s: no songs in split %r; it is left out", dl_manager.manual_dir, split)
        return out

    def _generate_examples(self, songs: list[layouts.Song]):
        cfg = self.builder_config
        for song in probe_songs(songs, cfg.sample_rate, 0.0, self.skips, full=cfg.validate == "full"):
            try:
                audio = load_song(song, cfg.sample_rate)
            except AudioError as e:  # header-only validation lets NaN files through to here
                self.skips.add("bad stem", song.song_id, str(e))
                continue
            yield song.song_id, {
                "song_id": song.song_id,
                "audio": audio,
                "instruments": list(song.instruments),
                "can_be_target": list(song.targets()),
            }
        log.info("%s: skipped so far: %s", cfg.name, self.skips.summary())
