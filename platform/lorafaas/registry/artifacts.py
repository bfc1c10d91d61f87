"""The content-addressed artifact store: adapter folders named by the sha256 of their zip.

An upload is written to a staging folder beside the store (`staging`), validated there
(`stage`), and moved into place (`publish`) inside the registry transaction that adds its
reference, while that transaction holds the artifact's row lock; its files are removed
(`collect_unreferenced`) under the same lock, only when no row references them, after the
commit that dropped the last reference. So a create and a delete of the same adapter at the
same moment never leave a referenced artifact without its files, on SQLite (one writer at a
time) as on PostgreSQL (a row lock), across any number of platform instances.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.adapters.archive import (
    CONFIG_NAME,
    adapter_prefix,
    check_members,
    extract_adapter,
    open_zip,
)
from lorafaas.adapters.validation import AdapterSummary, validate_adapter
from lorafaas.registry.clock import now_ms
from lorafaas.registry.code_artifacts import StoredCode
from lorafaas.registry.models import Artifact

logger = logging.getLogger(__name__)
UPLOAD_NAME = "upload.zip"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredAdapter:
    """A validated adapter: its digest, staged folder, size, and what validation learnt."""

    digest: str
    directory: Path  # the staged, validated folder (moved into the store by `publish`)
    size_bytes: int
    summary: AdapterSummary
    created: bool = False


class ArtifactStore:
    """Adapter zips and their unpacked folders under one root, named by digest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, digest: str) -> Path:
        """The unpacked adapter folder of `digest` (mounted read-only into containers)."""
        return self.root / digest

    def zip_path(self, digest: str) -> Path:
        """The zip as uploaded."""
        return self.root / f"{digest}.zip"

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder on the store's filesystem for one upload, removed afterwards."""
        folder = self.root / ".staging" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def stage(self, upload: Path, backbone: Mapping[str, list[int]],
              max_bytes: int) -> StoredAdapter:
        """Validate the zip at `upload` (in a staging folder) and unpack it beside it."""
        digest, size = _file_digest(upload)
        with open_zip(upload) as archive:
            check_members(archive, max_bytes)
            target = upload.parent / "adapter"
            extract_adapter(archive, adapter_prefix(archive), target)
        summary = validate_adapter(target, backbone)
        # The runtime reads the config with every pattern resolved to module names.
        (target / CONFIG_NAME).write_text(json.dumps(summary.config, indent=2))
        return StoredAdapter(digest, target, size, summary)

    def publish(self, staged: StoredAdapter | StoredCode) -> bool:
        """Move a staged adapter into the store unless its files are there; True if moved.

        Called while the caller's transaction holds the artifact's row (see add_reference),
        so no `collect_unreferenced` of the same digest runs meanwhile.
        """
        if self.folder(staged.digest).exists() and self.zip_path(staged.digest).exists():
            return False
        self.remove(staged.digest)  # a half-removed artifact (a crash in remove) is redone
        for path in [staged.directory, *staged.directory.iterdir()]:
            # Containers run as an unprivileged user: the folder must be world-readable.
            path.chmod(0o755 if path.is_dir() else 0o644)
        (staged.directory.parent / UPLOAD_NAME).rename(self.zip_path(staged.digest))
        staged.directory.rename(self.folder(staged.digest))
        return True

    def remove(self, digest: str) -> None:
        """Delete an artifact's files (its last reference is gone, or its commit failed)."""
        if self.folder(digest).exists() or self.zip_path(digest).exists():
            logger.info("artifact %s removed from the store", digest)
        shutil.rmtree(self.folder(digest), ignore_errors=True)
        self.zip_path(digest).unlink(missing_ok=True)


def _file_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# The counts are changed by single statements that compute them in the database: reading a
# count and writing it back loses a concurrent transaction's reference (PostgreSQL's READ
# COMMITTED lets both read the same count; so does SQLite outside a write transaction), and
# two first uploads of one adapter would both INSERT its row.


async def add_reference(session: AsyncSession, stored: StoredAdapter | StoredCode) -> None:
    """Count one more action version using the artifact (creating its row)."""
    insert = _artifact_insert(session).values(digest=stored.digest, size_bytes=stored.size_bytes,
                                              ref_count=1, created_ms=now_ms())
    await session.execute(insert.on_conflict_do_update(
        index_elements=[Artifact.digest], set_={"ref_count": Artifact.ref_count + 1}))


async def keep_reference(session: AsyncSession, digest: str) -> None:
    """Count one more version using a stored artifact (an update that keeps its adapter);
    its row exists, since the version it is taken from references it, and is locked."""
    await session.execute(update(Artifact).where(Artifact.digest == digest)
                          .values(ref_count=Artifact.ref_count + 1))


def _artifact_insert(session: AsyncSession) -> postgresql.Insert | sqlite.Insert:
    # The registry's two backends spell INSERT ... ON CONFLICT alike, in their own dialects.
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(Artifact)
    return sqlite.insert(Artifact)


async def drop_reference(session: AsyncSession, digest: str) -> bool:
    """Count one reference less; return True when none is left (the row is deleted)."""
    # The UPDATE locks the row until commit, so no reference can be added before the DELETE.
    left = await session.scalar(update(Artifact).where(Artifact.digest == digest)
                                .values(ref_count=Artifact.ref_count - 1)
                                .returning(Artifact.ref_count))
    if left is None or left > 0:
        return False
    await session.execute(delete(Artifact).where(Artifact.digest == digest))
    return True


async def claim_unreferenced(session: AsyncSession, digest: str) -> bool:
    """Lock the artifact's row and delete it if no version references it; True if deleted.

    The upsert takes the row lock (or, with no row, the unique key's) until commit, so an
    `add_reference` of the same digest waits: the caller removes the files before committing.
    """
    insert = _artifact_insert(session).values(digest=digest, size_bytes=0, ref_count=0,
                                              created_ms=now_ms())
    left = await session.scalar(insert.on_conflict_do_update(
        index_elements=[Artifact.digest], set_={"ref_count": Artifact.ref_count})
        .returning(Artifact.ref_count))
    if left:
        return False
    await session.execute(delete(Artifact).where(Artifact.digest == digest))
    return True
