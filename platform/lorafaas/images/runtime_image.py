"""Build the function-container runtime image ``lorafaas/runtime-python`` idempotently.

The image tag carries a hash of everything that goes into the image (Dockerfile,
requirements and the runtime sources), so an existing tag means there is nothing to do.
Otherwise the steps are: find or make a bookworm base image (offline with debootstrap when
no registry answers), fill a wheelhouse on the host (containers have no usable network),
assemble a build context and build. Every step is skipped when already done and logged
with its duration. All Docker SDK calls of the image machinery live in this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import docker
import docker.errors
import requests

import lorafaas
from lorafaas.images.variant import (
    CUDA_FLAVOUR,
    GPU_SMOKE_TEST,
    ImageVariant,
    index_arguments,
    variant_requirements,
    wheelhouse_name,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

IMAGE_REPO = "lorafaas/runtime-python"
BASE_REPO, BASE_TAG = "lorafaas/base-bookworm", "1"
BASE_IMAGE = f"{BASE_REPO}:{BASE_TAG}"
UPSTREAM_REPO, UPSTREAM_TAG = "python", "3.11-slim-bookworm"
UPSTREAM_IMAGE = f"{UPSTREAM_REPO}:{UPSTREAM_TAG}"
REGISTRY_ADDRESS = ("registry-1.docker.io", 443)
REGISTRY_PROBE_SECONDS = 3.0
PULL_DEADLINE_SECONDS = 180.0
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_PACKAGES = "python3,python3-pip,ca-certificates"
DEBOOTSTRAP_TIMEOUT_SECONDS = 1200.0
PIP_DOWNLOAD_TIMEOUT_SECONDS = 1800.0
BUILD_TIMEOUT_SECONDS = 3600
LOG_TAIL_LINES = 40
# The base image has no config of its own after `docker import`.
BASE_IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
# Wheels for the image's interpreter (bookworm: CPython 3.11, glibc 2.36, x86_64), whatever
# the host's interpreter is. pip 23 does not expand manylinux_2_X downwards by itself.
# Environment markers are still evaluated on the host, so build on linux/x86_64.
WHEEL_PLATFORMS = [
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
WHEEL_TARGET_ARGS = [
    "--only-binary=:all:",
    "--implementation=cp",
    "--python-version=3.11",
    "--abi=cp311",
    *(f"--platform={platform}" for platform in WHEEL_PLATFORMS),
]
WHEELHOUSE_STAMP = ".requirements.sha256"
# lorafaas.runtime imports lorafaas.wire (the protocol it shares with the invoker).
SHIPPED_SUBPACKAGES = ("runtime", "wire")
SKIPPED_DIRS = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = frozenset({".pyc", ".pyo"})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class RuntimeImageError(RuntimeError):
    """The runtime image (or one of its ingredients) could not be made."""


# --------------------------------------------------------------------------- layout


def dockerfile_path(repo_root: Path) -> Path:
    """Path of the runtime image's Dockerfile."""
    return repo_root / "runtime_images" / "python" / "Dockerfile"


def requirements_path(repo_root: Path) -> Path:
    """Path of the runtime image's pinned requirements."""
    return repo_root / "runtime_images" / "python" / "requirements.txt"


def package_dir(repo_root: Path) -> Path:
    """Directory of the ``lorafaas`` package inside the repository."""
    return repo_root / "platform" / "lorafaas"


def image_inputs(repo_root: Path) -> dict[str, Path]:
    """Everything the image is made of (but the wheels): build-context name -> source file."""
    pkg = package_dir(repo_root)
    inputs = {
        "Dockerfile": dockerfile_path(repo_root),
        "requirements.txt": requirements_path(repo_root),
        "lorafaas/__init__.py": pkg / "__init__.py",
    }
    for name in SHIPPED_SUBPACKAGES:
        subpackage = pkg / name
        if not (subpackage / "__init__.py").is_file():
            raise RuntimeImageError(f"package shipped in the runtime image not found: {subpackage}")
        for path in subpackage.rglob("*"):
            rel = path.relative_to(pkg)
            # Bytecode caches appear as soon as anything imports the package; they must
            # neither change the tag nor end up in the image.
            if path.is_file() and not _is_cache(rel):
                inputs[f"lorafaas/{rel.as_posix()}"] = path
    return inputs


def _is_cache(rel: Path) -> bool:
    """Whether a relative path is a Python bytecode cache."""
    return bool(SKIPPED_DIRS.intersection(rel.parts)) or rel.suffix in SKIPPED_SUFFIXES


def _tag_for(files: dict[str, Path], variant: ImageVariant = ImageVariant.CPU) -> str:
    """Image tag ``<repo>:<version>-<variant>-<hash12>`` for files keyed by build-context
    name; the variant (and the CUDA flavour it installs) is part of the hash too."""
    digest = hashlib.sha256(_variant_key(variant).encode())
    for name in sorted(files):
        # Hash names too, so moving a file changes the tag.
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(files[name].read_bytes()).digest())
    return f"{IMAGE_REPO}:{lorafaas.__version__}-{variant.value}-{digest.hexdigest()[:12]}"


def _variant_key(variant: ImageVariant) -> str:
    return variant.value if variant is ImageVariant.CPU else f"{variant.value}:{CUDA_FLAVOUR}"


def runtime_image_tag(repo_root: Path, variant: ImageVariant = ImageVariant.CPU) -> str:
    """Tag ``lorafaas/runtime-python:<version>-<variant>-<hash12>`` for the current sources."""
    return _tag_for(image_inputs(repo_root), variant)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _timed(step: str) -> Iterator[None]:
    """Log the start and the duration of a step."""
    log.info("%s ...", step)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        log.error("%s failed after %.1f s", step, time.monotonic() - start)
        raise
    log.info("%s done in %.1f s", step, time.monotonic() - start)


@contextlib.contextmanager
def _build_lock(home: Path) -> Iterator[None]:
    """Serialise builds sharing one home (wheelhouse, base image, tags)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".runtime-image.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    """Whether the engine has an image with this reference."""
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def _run_with_deadline(fn: Callable[[], T], seconds: float, name: str) -> T:
    """Run ``fn`` in a daemon thread; raise TimeoutError if it is not done in time."""
    # Neither getaddrinfo nor the Docker SDK's pull (timeout=None) can be bounded directly.
    results: list[T] = []
    errors: list[Exception] = []

    def target() -> None:
        try:
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)

    worker = threading.Thread(target=target, name=name, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"{name} did not finish within {seconds:.0f} s")
    if errors:
        raise errors[0]
    return results[0]


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """Last lines of a log, for error messages."""
    return "\n".join(text.splitlines()[-lines:])


def _run_command(cmd: list[str], *, timeout: float, what: str) -> str:
    """Run a command, return its combined output, raise with the tail on failure."""
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output if isinstance(exc.output, str) else ""
        raise RuntimeImageError(
            f"{what} timed out after {timeout:.0f} s:\n{_tail(output)}"
        ) from exc
    if proc.returncode != 0:
        raise RuntimeImageError(f"{what} failed (exit {proc.returncode}):\n{_tail(proc.stdout)}")
    log.debug("%s output (tail):\n%s", what, _tail(proc.stdout))
    return proc.stdout


# --------------------------------------------------------------------------- base image


def ensure_base_image(client: docker.DockerClient, *, home: Path) -> str:
    """Reference of a bookworm image with python3 3.11 and pip, made if needed."""
    with _timed("base image"):
        for ref in (BASE_IMAGE, UPSTREAM_IMAGE):
            if _image_exists(client, ref):
                log.info("base image: using existing %s", ref)
                return ref
        if _pull_upstream(client):
            return UPSTREAM_IMAGE
        _bootstrap_base(client, home=home)
        return BASE_IMAGE


def _registry_reachable() -> bool:
    """Whether a TCP connection to Docker Hub's registry opens within the probe time."""

    def connect() -> None:
        socket.create_connection(REGISTRY_ADDRESS, timeout=REGISTRY_PROBE_SECONDS).close()

    start = time.monotonic()
    try:
        # The deadline also covers DNS, which create_connection's timeout does not.
        _run_with_deadline(connect, REGISTRY_PROBE_SECONDS, "registry probe")
    except (OSError, TimeoutError) as exc:
        log.info(
            "registry %s:%d unreachable after %.2f s: %s",
            *REGISTRY_ADDRESS,
            time.monotonic() - start,
            exc,
        )
        return False
    return True


def _pull_upstream(client: docker.DockerClient) -> bool:
    """Try to pull the upstream python image; False when no registry answers in time."""
    if not _registry_reachable():
        return False
    start = time.monotonic()
    try:
        _run_with_deadline(
            lambda: client.images.pull(UPSTREAM_REPO, UPSTREAM_TAG),
            PULL_DEADLINE_SECONDS,
            f"pull of {UPSTREAM_IMAGE}",
        )
    except (docker.errors.DockerException, TimeoutError) as exc:
        log.info(
            "pull of %s failed after %.1f s: %s", UPSTREAM_IMAGE, time.monotonic() - start, exc
        )
        return False
    log.info("pulled %s in %.1f s", UPSTREAM_IMAGE, time.monotonic() - start)
    return True


def _debootstrap_executable() -> str:
    """Path of debootstrap, or a clear error telling how to get it."""
    # /usr/sbin is often missing from a non-login PATH.
    found = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeImageError(
            "no registry reachable and debootstrap is not installed; "
            "run `apt-get install debootstrap` to build the base image offline"
        )
    if os.geteuid() != 0:
        raise RuntimeImageError("building the base image with debootstrap needs root")
    return found


def _bootstrap_base(client: docker.DockerClient, *, home: Path) -> None:
    """Make ``lorafaas/base-bookworm:1`` with debootstrap and ``docker import``."""
    debootstrap = _debootstrap_executable()
    # Under home rather than /tmp: debootstrap refuses noexec/nodev mounts, common for /tmp.
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=home))
    try:
        rootfs, archive = work / "rootfs", work / "rootfs.tar"
        with _timed(f"debootstrap {DEBIAN_SUITE} into {rootfs}"):
            _run_command(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={DEBOOTSTRAP_PACKAGES}",
                    DEBIAN_SUITE,
                    str(rootfs),
                    DEBIAN_MIRROR,
                ],
                timeout=DEBOOTSTRAP_TIMEOUT_SECONDS,
                what="debootstrap",
            )
        with _timed(f"import {BASE_IMAGE}"):
            _run_command(
                [
                    "tar",
                    "-C",
                    str(rootfs),
                    "--numeric-owner",
                    "--exclude=./var/cache/apt/archives/*.deb",
                    "--exclude=./var/lib/apt/lists/*",
                    "-cf",
                    str(archive),
                    ".",
                ],
                timeout=600,
                what="tar of the base rootfs",
            )
            # A file path (not a stream) makes the SDK upload without a read timeout.
            result = client.api.import_image(
                src=str(archive), repository=BASE_REPO, tag=BASE_TAG, changes=BASE_IMAGE_CHANGES
            )
            if not _image_exists(client, BASE_IMAGE):
                raise RuntimeImageError(f"docker import did not produce {BASE_IMAGE}: {result}")
    finally:
        with _timed(f"remove {work}"):
            _remove_tree(work)


def _mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = str(path.resolve())
    points: list[str] = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            # Field 5 is the mount point, with spaces etc. escaped as \ooo.
            point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Remove a debootstrap work dir, unmounting what a killed debootstrap left mounted."""
    for point in _mounts_below(path):
        subprocess.run(["umount", "-l", point], check=False)
    leftover = _mounts_below(path)
    if leftover:
        # rmtree through a bind mount of /dev or /proc would reach the host's files.
        log.error("not removing %s: still mounted below it: %s", path, leftover)
        return
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- wheelhouse


def _wheelhouse_key(requirements: Path, variant: ImageVariant = ImageVariant.CPU) -> str:
    """Hash of what decides the wheelhouse's content (the variant's requirements and index
    included; the CPU variant's key is what it was before variants)."""
    text = variant_requirements(requirements.read_text(), variant)
    digest = hashlib.sha256(text.encode())
    digest.update("\0".join([*WHEEL_TARGET_ARGS, *index_arguments(variant)]).encode())
    return digest.hexdigest()


def ensure_wheelhouse(*, home: Path, requirements: Path,
                      variant: ImageVariant = ImageVariant.CPU) -> Path:
    """``<home>/wheelhouse`` (``wheelhouse-cuda`` for that variant) holding wheels for the
    variant's requirements, downloaded if needed."""
    wheelhouse = home / wheelhouse_name(variant)
    stamp = wheelhouse / WHEELHOUSE_STAMP
    key = _wheelhouse_key(requirements, variant)
    home.mkdir(parents=True, exist_ok=True)
    with _timed("wheelhouse"):
        if stamp.is_file() and stamp.read_text().strip() == key:
            log.info("wheelhouse: %s is up to date", wheelhouse)
            return wheelhouse
        # Download into a fresh dir and swap it in, so a failed or interrupted download
        # never leaves a half-filled (or stale-mixed) wheelhouse behind a valid stamp.
        partial = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=home))
        wanted = partial / "requirements.txt"
        wanted.write_text(variant_requirements(requirements.read_text(), variant))
        try:
            _run_command(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--progress-bar",
                    "off",
                    "-d",
                    str(partial),
                    *WHEEL_TARGET_ARGS,
                    *index_arguments(variant),
                    "-r",
                    str(wanted),
                ],
                timeout=PIP_DOWNLOAD_TIMEOUT_SECONDS,
                what="pip download",
            )
            wanted.unlink()
            (partial / WHEELHOUSE_STAMP).write_text(key + "\n")
            _swap_dir(partial, wheelhouse)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        wheels = list(wheelhouse.glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels)
        log.info("wheelhouse: %d wheels, %.0f MB", len(wheels), size / 1e6)
    return wheelhouse


def _swap_dir(new: Path, target: Path) -> None:
    """Replace ``target`` by ``new`` with renames."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- build


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``, copying when linking is impossible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _make_world_readable(tree: Path) -> None:
    """Give a tree 755 dirs and 644 files."""
    # The container runs as nobody: the sources must be readable whatever the local umask.
    tree.chmod(0o755)
    for path in tree.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _make_context(context: Path, *, repo_root: Path, wheelhouse: Path,
                  variant: ImageVariant = ImageVariant.CPU) -> str:
    """Fill a build context (Dockerfile, requirements, wheels/, lorafaas/); return its tag."""
    copies: dict[str, Path] = {}
    for name, source in image_inputs(repo_root).items():
        copies[name] = context / name
        copies[name].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copies[name])
    _make_world_readable(context / "lorafaas")
    (context / "wheels").mkdir()
    for wheel in sorted(wheelhouse.glob("*.whl")):
        _link_or_copy(wheel, context / "wheels" / wheel.name)
    # Hash the copies, not the sources: sources edited meanwhile must not end up
    # under a tag computed from their earlier content.
    tag = _tag_for(copies, variant)
    # After the hash (the variant is in it): the variant's torch pin, as its wheelhouse has.
    requirements = context / "requirements.txt"
    requirements.write_text(variant_requirements(requirements.read_text(), variant))
    return tag


def _log_build_line(line: str) -> None:
    """Log one line of the build output; step headers at INFO, the rest at DEBUG."""
    if line.startswith("Step "):
        log.info("build: %s", line)
    elif line:
        log.debug("build: %s", line)


def _build(client: docker.DockerClient, context: Path, *, tag: str, base: str,
           variant: ImageVariant = ImageVariant.CPU) -> None:
    """Build ``tag`` from ``context``, streaming the log, raising with its tail on failure."""
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    try:
        # The low-level API streams the log and takes a timeout long enough for pip's
        # silent phases (the client's default read timeout is 60 s).
        for chunk in client.api.build(
            path=str(context),
            tag=tag,
            buildargs={"BASE": base, "VARIANT": variant.value},
            rm=True,
            forcerm=True,
            decode=True,
            timeout=BUILD_TIMEOUT_SECONDS,
        ):
            for line in str(chunk.get("stream", "")).splitlines():
                tail.append(line)
                _log_build_line(line.rstrip())
            if "error" in chunk:
                tail.append(str(chunk["error"]))
                raise RuntimeImageError(f"build of {tag} failed:\n" + "\n".join(tail))
    except (docker.errors.DockerException, requests.RequestException) as exc:
        # RequestException: a read timeout or a dropped connection while streaming the log.
        raise RuntimeImageError(f"build of {tag} failed: {exc}\n" + "\n".join(tail)) from exc
    if not _image_exists(client, tag):
        raise RuntimeImageError(
            f"build of {tag} reported success but no image:\n" + "\n".join(tail)
        )


def build_runtime_image(
    client: docker.DockerClient, *, base: str, repo_root: Path, wheelhouse: Path, home: Path,
    variant: ImageVariant = ImageVariant.CPU, gpu_device: int = 0,
) -> str:
    """Build the image from a snapshot of the sources in a temp dir; return its tag."""
    # In home, next to the wheelhouse, so the wheels can be hard-linked instead of copied.
    context = Path(tempfile.mkdtemp(prefix="build-context-", dir=home))
    try:
        with _timed("build context"):
            tag = _make_context(context, repo_root=repo_root, wheelhouse=wheelhouse,
                                variant=variant)
        if _image_exists(client, tag):
            log.info("runtime image %s already exists (sources changed meanwhile)", tag)
            return tag
        with _timed(f"docker build {tag}"):
            _build(client, context, tag=tag, base=base, variant=variant)
        if variant is ImageVariant.CUDA:  # before `latest` moves to it
            smoke_test_gpu(client, tag, gpu_device)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    image = client.images.get(tag)
    image.tag(IMAGE_REPO, "latest")
    log.info("built %s (%s), %.0f MB", tag, image.short_id, image.attrs.get("Size", 0) / 1e6)
    return tag


def ensure_runtime_image(client: docker.DockerClient, *, home: Path, repo_root: Path,
                         variant: ImageVariant = ImageVariant.CPU, gpu_device: int = 0) -> str:
    """Return the runtime image tag for the current sources and variant, building the image
    if needed; a CUDA image is smoke-tested on `gpu_device` once built."""
    tag = runtime_image_tag(repo_root, variant)
    if _image_exists(client, tag):
        log.info("runtime image %s already exists", tag)
        return tag
    with _timed(f"runtime image {tag}"), _build_lock(home):
        # Another process may have built it while we waited for the lock.
        if _image_exists(client, tag):
            log.info("runtime image %s was built concurrently", tag)
            return tag
        base = ensure_base_image(client, home=home)
        wheelhouse = ensure_wheelhouse(
            home=home, requirements=requirements_path(repo_root), variant=variant
        )
        built = build_runtime_image(
            client, base=base, repo_root=repo_root, wheelhouse=wheelhouse, home=home,
            variant=variant, gpu_device=gpu_device,
        )

    if built != tag:
        log.warning("sources changed during the build: built %s instead of %s", built, tag)
    return built


def smoke_test_gpu(client: docker.DockerClient, tag: str, device: int) -> str:
    """Run the CUDA image on one GPU (as function containers get it) and check that torch
    sees it: `torch.cuda.is_available()`. Its output (CUDA version and device name), or
    RuntimeImageError; the image is removed when it fails, so no later start reuses it."""
    from docker.types import DeviceRequest

    with _timed(f"GPU smoke test of {tag} on device {device}"):
        try:
            output = client.containers.run(
                tag, entrypoint=["python3", "-c", GPU_SMOKE_TEST], remove=True,
                network_mode="none", device_requests=[DeviceRequest(
                    driver="nvidia", device_ids=[str(device)], capabilities=[["gpu"]])])
        except docker.errors.DockerException as exc:
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(tag, force=True)
            raise RuntimeImageError(f"{tag} does not see GPU {device}: {exc}") from exc
    text = output.decode(errors="replace").strip() if isinstance(output, bytes) else str(output)
    log.info("GPU smoke test: %s", text)
    return text
