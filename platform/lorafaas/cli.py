"""The `lorafaas` command: set-up, serving, administration, and the wsk-style client verbs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lorafaas.admin import add_admin_parser, run_admin
from lorafaas.client.parser import add_client_commands, add_global_options, is_client_command
from lorafaas.client.parser import run as run_client
from lorafaas.errors import LoraFaasError
from lorafaas.settings import Role, Settings, SettingsError, load_settings

if TYPE_CHECKING:  # the image machinery imports the Docker SDK: only `setup` needs it
    from lorafaas.images.variant import ImageVariant

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]


def setup(settings: Settings) -> None:
    """Everything the platform needs besides the venv and the engine, each step idempotent."""
    import docker

    from lorafaas.demo import build_demo_models
    from lorafaas.images.runtime_image import ensure_runtime_image
    from lorafaas.registry.db import upgrade

    settings.home.mkdir(parents=True, exist_ok=True)
    build_demo_models(settings.models_dir)
    client = docker.from_env(timeout=600)
    try:
        variant, device = image_variant(settings)
        tag = ensure_runtime_image(client, home=settings.home, repo_root=REPO_ROOT,
                                   variant=variant, gpu_device=device)
    finally:
        client.close()
    logger.info("runtime image %s", tag)
    upgrade(settings.database_url)


def image_variant(settings: Settings) -> tuple[ImageVariant, int]:
    """The runtime image's variant for LORAFAAS_ACCELERATOR on this host, and its GPU."""
    from lorafaas.backbone.accelerator import choose_transport, host_facts
    from lorafaas.images.variant import ImageVariant

    choice = choose_transport(settings.accelerator, host_facts())
    return (ImageVariant.CUDA if choice.is_cuda else ImageVariant.CPU), choice.device or 0


def serve(settings: Settings, role: Role = Role.ALL) -> None:
    """Run controller, invoker and backbone servers (or one role of them, over the broker)
    in the foreground until SIGINT/SIGTERM."""
    from lorafaas.controller.app import create_app
    from lorafaas.controller.bootstrap import ensure_guest
    from lorafaas.controller.serving import run_platform
    from lorafaas.props import write_props
    from lorafaas.registry.db import upgrade

    settings.check_role(role)
    settings.check_backbone_folders()
    if role is Role.INVOKER:  # no API, no sign-in; its controllers migrate the registry
        print(f"LoRAFaaS invoker {settings.invoker_id} is starting; health on "
              f"{settings.api_host}/health", flush=True)
        run_platform(create_app(settings, role=role), settings.host, settings.port,
                     lambda message: print(message, flush=True))
        return
    upgrade(settings.database_url)
    credential = asyncio.run(ensure_guest(settings))
    write_props(settings.props_file, {"APIHOST": settings.api_host, "AUTH": credential})
    print(f"LoRAFaaS is starting on {settings.api_host}", flush=True)
    print(f"guest namespace key (AUTH): {credential}", flush=True)
    print(f"props written to {settings.props_file}", flush=True)
    run_platform(create_app(settings, role=role), settings.host, settings.port,
                 lambda message: print(message, flush=True))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lorafaas` command."""
    parser = argparse.ArgumentParser(prog="lorafaas", description="LoRAFaaS platform")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="build the runtime image, demo models and registry")
    serve_parser = commands.add_parser("serve", help="run the platform in the foreground")
    serve_parser.add_argument(
        "--role", choices=[r.value for r in Role], default=Role.ALL.value,
        help="all: controller and invoker in one process, no broker (the default); "
             "controller or invoker: one part, over the broker at LORAFAAS_BROKER_URL, with "
             "a PostgreSQL registry")
    commands.add_parser("migrate", help="migrate the registry to the newest revision")
    add_admin_parser(commands)
    add_client_commands(commands)
    args = parser.parse_args(argv)
    if is_client_command(args):  # wsk-style verbs: no logging set-up, wsk's output only
        sys.exit(run_client(args))
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "admin":  # its output is the answer alone (a key, say): no migrations
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = load_settings()
    except SettingsError as error:
        sys.exit(f"lorafaas: {error}")
    if args.command == "setup":
        setup(settings)
    elif args.command == "serve":
        try:
            serve(settings, Role(args.role))
        except SettingsError as error:  # no checkpoint in a backbone's folder, or a role's
            # broker or registry missing
            sys.exit(f"lorafaas: {error}")
    elif args.command == "migrate":
        from lorafaas.registry.db import upgrade

        upgrade(settings.database_url)
    elif args.command == "admin":
        try:
            print(run_admin(args, settings), flush=True)
        except LoraFaasError as error:
            sys.exit(f"lorafaas: {error.message}")


if __name__ == "__main__":
    main()
