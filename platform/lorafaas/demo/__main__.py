"""Command line entry: `python -m lorafaas.demo <models_dir>` builds and prints the paths."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from lorafaas.demo.build import build_demo_models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m lorafaas.demo",
        description="Build (or reuse) the LoRAFaaS demo backbone and demo LoRA adapters.",
    )
    parser.add_argument("models_dir", type=Path, help="directory to hold demo-backbone/ etc.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the demo models and print where they are."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    started = time.monotonic()
    models = build_demo_models(args.models_dir)
    print(f"backbone: {models.backbone_dir}")
    for name, path in sorted(models.adapters.items()):
        print(f"adapter {name}: {path}")
    print(f"done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
