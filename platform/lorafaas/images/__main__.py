"""``python -m lorafaas.images``: build (or find) the runtime image and print its tag."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import docker

from lorafaas.backbone.accelerator import choose_transport, host_facts, parse_accelerator
from lorafaas.images.runtime_image import RuntimeImageError, ensure_runtime_image
from lorafaas.images.variant import ImageVariant


def default_home() -> Path:
    """``$LORAFAAS_HOME``, or ``~/.lorafaas``."""
    return Path(os.environ.get("LORAFAAS_HOME") or Path.home() / ".lorafaas")


def default_repo_root() -> Path:
    """The repository holding this package (platform/lorafaas/images/ is three levels down)."""
    return Path(__file__).resolve().parent.parents[2]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m lorafaas.images", description=__doc__)
    parser.add_argument(
        "--home",
        type=Path,
        default=default_home(),
        help="state dir for the wheelhouse and temp dirs (default: %(default)s)",
    )
    parser.add_argument(
        "--repo-root",
        type=Path,
        default=default_repo_root(),
        help="repository root (default: %(default)s)",
    )
    parser.add_argument(
        "--accelerator",
        default=os.environ.get("LORAFAAS_ACCELERATOR", "auto"),
        help="auto, cpu, cuda or cuda:N: the CUDA variant where the backbone would be "
        "served by CUDA IPC (default: $LORAFAAS_ACCELERATOR or auto)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also log the build output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build the runtime image if needed and print its tag."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # urllib3 logs every request to the engine at DEBUG.
    logging.getLogger("urllib3").setLevel(logging.INFO)
    choice = choose_transport(parse_accelerator(args.accelerator), host_facts())
    variant = ImageVariant.CUDA if choice.is_cuda else ImageVariant.CPU
    client = docker.from_env()
    try:
        tag = ensure_runtime_image(
            client,
            home=args.home.expanduser(),
            repo_root=args.repo_root.resolve(),
            variant=variant,
            gpu_device=choice.device or 0,
        )
    except RuntimeImageError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 1
    finally:
        client.close()
    print(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
