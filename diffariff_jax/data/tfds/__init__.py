"""TFDS builders for multitrack catalogues (offline, manual_dir style); importing registers them.

    import diffariff_jax.data.tfds  # registers "diffariff_multitrack"
    builder = tfds.builder("diffariff_multitrack/musdb18hq", data_dir=DATA_DIR)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=MUSDB_ROOT))
"""
from diffariff_jax.data.tfds.multitrack import DiffariffMultitrack, MultitrackConfig

__all__ = ["DiffariffMultitrack", "MultitrackConfig"]
