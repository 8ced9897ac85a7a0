"""Enrolled speakers in PostgreSQL: the store every replica of a scaled-out deployment shares.

Same records and errors as the file store (``server.speakers``): one row per speaker and
verification adapter version, the embedding as little-endian float32 bytes (plain ``bytea``, so any
PostgreSQL works; no extension needed). Selected by ``ELP_SPEAKERS_URL=postgresql://...``. Each call
opens its own short connection: enrolment and lookup are rare next to inference, and a restarted
database then needs no reconnect logic.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from elp.tasks.verification import mean_unit_embedding
from server.errors import SpeakerNotFoundError
from server.speakers import EnrolledSpeaker, not_enrolled, validate_speaker_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS elp_speakers (
    speaker TEXT NOT NULL,
    adapter_id TEXT NOT NULL,
    adapter_sha256 TEXT NOT NULL,
    num_clips INTEGER NOT NULL,
    total_duration_s DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    embedding BYTEA NOT NULL,
    PRIMARY KEY (speaker, adapter_id, adapter_sha256)
)
"""
_COLUMNS = "speaker, adapter_id, adapter_sha256, num_clips, total_duration_s, created_at"


class PostgresSpeakerStore:
    """``SpeakerBackend`` on one PostgreSQL table (created on first use)."""

    def __init__(self, url: str, *, connect_timeout_s: int = 5) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._schema_ready = False

    def _connect(self):  # noqa: ANN202 - psycopg's Connection
        import psycopg

        connection = psycopg.connect(self.url, connect_timeout=self.connect_timeout_s, autocommit=True)
        if not self._schema_ready:
            connection.execute(_SCHEMA)
            self._schema_ready = True
        return connection

    def enroll(
        self, speaker_id: str, adapter_id: str, adapter_sha256: str, embeddings: list[torch.Tensor],
        total_duration_s: float,
    ) -> EnrolledSpeaker:
        validate_speaker_id(speaker_id)
        mean = mean_unit_embedding(embeddings)
        record = EnrolledSpeaker(
            speaker_id, f"{adapter_id}@{adapter_sha256[:12]}", adapter_sha256, len(embeddings),
            round(total_duration_s, 3), time.time(), mean,
        )
        blob = mean.numpy().astype("<f4").tobytes()
        with self._connect() as connection:
            connection.execute(
                f"INSERT INTO elp_speakers ({_COLUMNS}, embedding) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (speaker, adapter_id, adapter_sha256) DO UPDATE SET num_clips = EXCLUDED.num_clips, "
                "total_duration_s = EXCLUDED.total_duration_s, created_at = EXCLUDED.created_at, "
                "embedding = EXCLUDED.embedding",
                (speaker_id, adapter_id, adapter_sha256, record.num_clips, record.total_duration_s,
                 record.created_at, blob),
            )
        return record

    def get(self, speaker_id: str, adapter_id: str, adapter_sha256: str) -> EnrolledSpeaker:
        validate_speaker_id(speaker_id)
        with self._connect() as connection:
            row = connection.execute(
                f"SELECT {_COLUMNS}, embedding FROM elp_speakers "
                "WHERE speaker = %s AND adapter_id = %s AND adapter_sha256 = %s",
                (speaker_id, adapter_id, adapter_sha256),
            ).fetchone()
            if row is None:
                older = connection.execute(
                    "SELECT 1 FROM elp_speakers WHERE speaker = %s AND adapter_id = %s LIMIT 1",
                    (speaker_id, adapter_id),
                ).fetchone()
                raise not_enrolled(speaker_id, adapter_id, adapter_sha256, older is not None)
        return _record(row)

    def list(self) -> list[EnrolledSpeaker]:
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM elp_speakers ORDER BY adapter_id, adapter_sha256, speaker"
            ).fetchall()
        return [_record(row) for row in rows]

    def gallery(self, adapter_id: str, adapter_sha256: str) -> list[EnrolledSpeaker]:
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS}, embedding FROM elp_speakers WHERE adapter_id = %s AND adapter_sha256 = %s "
                "ORDER BY speaker", (adapter_id, adapter_sha256),
            ).fetchall()
        return [_record(row) for row in rows]

    def delete(self, speaker_id: str) -> int:
        """Remove every enrolment of ``speaker_id`` (all adapters, all versions)."""
        validate_speaker_id(speaker_id)
        with self._connect() as connection:
            deleted = connection.execute("DELETE FROM elp_speakers WHERE speaker = %s", (speaker_id,)).rowcount
        if not deleted:
            raise SpeakerNotFoundError(f"speaker '{speaker_id}' is not enrolled")
        return deleted


def _record(row: tuple) -> EnrolledSpeaker:
    """A row of ``_COLUMNS``, with the embedding decoded when the query selected it too (a seventh column)."""
    speaker, adapter_id, sha, num_clips, total_duration_s, created_at = row[:6]
    embedding = torch.from_numpy(np.frombuffer(bytes(row[6]), dtype="<f4").copy()) if len(row) > 6 else None
    return EnrolledSpeaker(speaker=speaker, adapter=f"{adapter_id}@{sha[:12]}", adapter_sha256=sha,
                           num_clips=int(num_clips), total_duration_s=float(total_duration_s),
                           created_at=float(created_at), embedding=embedding)
