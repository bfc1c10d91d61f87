"""The content-addressed artifact store: adapter folders named by the sha256 of their zip."""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.adapters.archive import adapter_prefix, check_members, extract_adapter, open_zip
from lorafaas.adapters.validation import AdapterSummary, validate_adapter
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Artifact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredAdapter:
    """An adapter in the store: its digest, folder, and what validation learnt."""

    digest: str
    directory: Path
    size_bytes: int
    summary: AdapterSummary
    created: bool  # this upload put the files there (so a failed commit must remove them)


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

    def put(self, data: bytes, backbone: Mapping[str, list[int]], max_bytes: int) -> StoredAdapter:
        """Validate an adapter zip and place it in the store; nothing is left behind on error."""
        digest = hashlib.sha256(data).hexdigest()
        staging = self.root / ".staging" / uuid.uuid4().hex
        try:
            archive = open_zip(data)
            check_members(archive, max_bytes)
            extract_adapter(archive, adapter_prefix(archive), staging)
            summary = validate_adapter(staging, backbone)
            created = self._publish(digest, staging, data)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return StoredAdapter(digest, self.folder(digest), len(data), summary, created)

    def _publish(self, digest: str, staging: Path, data: bytes) -> bool:
        if self.folder(digest).exists():
            return False
        self.zip_path(digest).write_bytes(data)
        staging.rename(self.folder(digest))
        for path in [self.folder(digest), *self.folder(digest).iterdir()]:
            # Containers run as an unprivileged user: the folder must be world-readable.
            path.chmod(0o755 if path.is_dir() else 0o644)
        return True

    def remove(self, digest: str) -> None:
        """Delete an artifact's files (its last reference is gone, or its commit failed)."""
        shutil.rmtree(self.folder(digest), ignore_errors=True)
        self.zip_path(digest).unlink(missing_ok=True)
        logger.info("artifact %s removed from the store", digest)


# The counts are changed by single statements that compute them in the database: reading a
# count and writing it back loses a concurrent transaction's reference (PostgreSQL's READ
# COMMITTED lets both read the same count; so does SQLite outside a write transaction), and
# two first uploads of one adapter would both INSERT its row.


async def add_reference(session: AsyncSession, stored: StoredAdapter) -> None:
    """Count one more action version using the artifact (creating its row)."""
    insert = _artifact_insert(session).values(digest=stored.digest, size_bytes=stored.size_bytes,
                                              ref_count=1, created_ms=now_ms())
    await session.execute(insert.on_conflict_do_update(
        index_elements=[Artifact.digest], set_={"ref_count": Artifact.ref_count + 1}))


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
