"""Model import/export command line.

  python -m diffariff_jax.export --from music2latent --checkpoint music2latent.pt --out DIR
      converts the public Music2Latent PyTorch checkpoint into a CAE release dir (config.json + orbax
      params) that `Autoencoder.load(DIR)` and `--cae DIR` accept.

Each direction is one entry of IMPORTERS / EXPORTERS; `--to FORMAT` selects an exporter.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _import_music2latent(args: argparse.Namespace) -> str:
    import jax

    from diffariff_jax.export.music2latent import convert_checkpoint
    from diffariff_jax.training.checkpoint import save_release

    config, params = convert_checkpoint(args.checkpoint)
    save_release(Path(args.out).absolute(), config, params)
    count = sum(int(v.size) for v in jax.tree.leaves(params))
    return f"wrote {args.out}: Music2Latent CAE, {count:,} parameters, sample rate {config.data.sample_rate} Hz"


IMPORTERS = {"music2latent": _import_music2latent}
EXPORTERS: dict = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffariff_jax.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=sorted(IMPORTERS),
                           help="import a foreign checkpoint into a release dir")
    if EXPORTERS:
        direction.add_argument("--to", dest="target", choices=sorted(EXPORTERS),
                               help="export one of our checkpoints")
    parser.add_argument("--checkpoint", required=True, help="input checkpoint (file or dir)")
    parser.add_argument("--out", required=True, help="output directory (must not hold params yet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "source", None):
        run = IMPORTERS[args.source]
    else:
        run = EXPORTERS[args.target]
    try:
        print(run(args))
    except ValueError as e:  # ConversionError, CheckpointError, AudioError: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
