"""The speech lines of *Beneath a Steel Sky*'s CD release (Debian ``beneath-a-steel-sky``): 8-bit unsigned mono PCM
at 11,025 Hz, one file per line inside ``sky.dsk``, most of them RNC-packed (``training.corpus.rnc``).

``sky.dnr`` is the file table: a little-endian entry count, then 8 bytes an entry: the file number (16 bits), a
24-bit offset into ``sky.dsk`` (bit 23: the offset counts 16-byte units), and 24 bits of flags whose low 22 bits
are the stored size and bit 23 says "stored as is". Every file starts with a 22-byte header; a packed file's RNC
stream follows it. Speech lines are the files numbered 50000 and up (below the 60000s, which hold the rest).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from training.corpus.rnc import MAGIC, unpack

FILE_HEADER_BYTES = 22
FIRST_SPEECH_FILE, FIRST_OTHER_FILE = 50000, 60000
#: first speech file number of each of the game's sections (its text numbers' high digit picks the section)
SECTION_STARTS = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)


def section_of(file_number: int) -> int:
    line = file_number - FIRST_SPEECH_FILE
    return max(i for i, start in enumerate(SECTION_STARTS) if line >= start)


def table_entries(dnr: bytes) -> Iterator[tuple[int, int, int, bool]]:
    """(file number, offset, stored size, stored as is) of every entry of a ``sky.dnr`` table."""
    (count,) = struct.unpack("<I", dnr[:4])
    if len(dnr) < 4 + 8 * count:
        raise ValueError(f"sky.dnr lists {count} files but holds {(len(dnr) - 4) // 8}")
    for index in range(count):
        entry = dnr[4 + 8 * index: 12 + 8 * index]
        (number,) = struct.unpack("<H", entry[:2])
        offset = int.from_bytes(entry[2:5], "little")
        flags = int.from_bytes(entry[5:8], "little")
        offset = (offset & 0x7FFFFF) << 4 if offset >> 23 & 1 else offset & 0x7FFFFF
        yield number, offset, flags & 0x3FFFFF, bool(flags >> 23 & 1)


def speech_lines(dnr_path: Path, dsk_path: Path) -> Iterator[tuple[int, bytes]]:
    """(file number, 8-bit unsigned PCM) of every speech line, unpacked and CRC-checked."""
    dsk = dsk_path.read_bytes()
    for number, offset, size, stored in sorted(table_entries(dnr_path.read_bytes())):
        if not FIRST_SPEECH_FILE <= number < FIRST_OTHER_FILE:
            continue
        body = dsk[offset + FILE_HEADER_BYTES: offset + size]
        yield number, body if stored or body[:4] != MAGIC else unpack(body)
