"""Rob Northen ProPack (RNC) method 1 decompression, for the speech lines of *Beneath a Steel Sky* (``sky.dsk``).

Why here: the game's CD release (Debian ``beneath-a-steel-sky``) holds ~3,600 lines of English voice acting by a
cast that no other source of this project has, and nearly every line is RNC-packed. No maintained Python package
unpacks RNC, so this is a small decoder written from the format: an 18-byte big-endian header (``RNC\\x01``,
unpacked and packed lengths, CRCs of both, leftover byte, block count), then blocks of three Huffman tables
(literal-run lengths, match offsets, match lengths) and LZ77 commands, read least-significant bit first from 16-bit
little-endian words, with literal bytes taken straight from the byte stream. Both CRC-16s (reflected 0xA001) are
checked, so a wrong decode fails loudly instead of writing noise.
"""

from __future__ import annotations

import struct

HEADER_BYTES = 18
MAGIC = b"RNC\x01"


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


class _Bits:
    """The packer's bit reader. ``low`` shows the next 16 bits, least significant first; ``pos`` is the byte offset
    of the last word loaded, a look-ahead whose unread rest sits in ``high``; the lowest ``count`` bits of ``low``
    come from the words before it. A literal run's bytes start at ``pos``: the look-ahead was not bits after all, so
    only those ``count`` bits are kept and the words after the run refill the rest."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos, self.high, self.count = data, pos, 0, 0
        self.low = self._word(pos)

    def _word(self, at: int) -> int:  # past the end of the stream: zero bits
        return int.from_bytes(self.data[at: at + 2], "little")

    def read(self, amount: int) -> int:
        value = self.low & ((1 << amount) - 1)
        count = self.count - amount
        if count < 0:  # ``high`` runs dry: shift what it has into ``low`` and load the next word
            count += amount
            carried = (self.high << (16 - count)) & 0xFFFF
            self.high >>= count
            self.low = ((self.low >> count) | carried) & 0xFFFF
            self.pos += 2
            self.high = self._word(self.pos)
            amount -= count
            count = 16 - amount
        carried = (self.high << (16 - amount)) & 0xFFFF
        self.high >>= amount
        self.low = ((self.low >> amount) | carried) & 0xFFFF
        self.count = count
        return value

    def literals(self, length: int) -> bytes:
        """``length`` raw bytes from the byte stream at the reader's word position; the bits continue after them."""
        raw = self.data[self.pos: self.pos + length]
        if len(raw) != length:
            raise ValueError("RNC stream ends inside a literal run")
        self.pos += length
        first, second = self._word(self.pos), self._word(self.pos + 2)
        keep = self.count
        self.low = ((self.low & ((1 << keep) - 1)) | (first << keep)) & 0xFFFF
        self.high = ((first >> (16 - keep)) | (second << keep)) & 0xFFFF
        return raw


def _huffman_table(bits: _Bits) -> list[tuple[int, int, int, int]] | None:
    """(mask, bit-reversed code, code length, symbol) rows of one canonical table; None when the block reuses the
    previous one (no codes)."""
    count = bits.read(5)
    if not count:
        return None
    lengths = [bits.read(4) for _ in range(count)]
    rows, code = [], 0
    for length in range(1, 17):
        for symbol, symbol_length in enumerate(lengths):
            if symbol_length != length:
                continue
            prefix = code >> (16 - length)
            reversed_prefix = int(f"{prefix:0{length}b}"[::-1], 2)
            rows.append(((1 << length) - 1, reversed_prefix, length, symbol))
            code += 1 << (16 - length)
    return rows


def _value(bits: _Bits, table: list[tuple[int, int, int, int]]) -> int:
    for mask, code, length, symbol in table:
        if bits.low & mask == code:
            bits.read(length)
            if symbol < 2:
                return symbol
            return bits.read(symbol - 1) | (1 << (symbol - 1))
    raise ValueError("RNC stream holds a code its Huffman table does not")


def unpack(packed: bytes) -> bytes:
    """The unpacked bytes of one RNC method 1 stream (``packed`` starts at its header)."""
    if packed[:4] != MAGIC:
        raise ValueError("not an RNC method 1 stream")
    unpacked_length, packed_length, unpacked_crc, packed_crc = struct.unpack(">IIHH", packed[4:16])
    blocks = packed[17]
    body = packed[HEADER_BYTES: HEADER_BYTES + packed_length]
    if len(body) != packed_length or crc16(body) != packed_crc:
        raise ValueError("RNC packed data is truncated or corrupt (CRC)")
    bits = _Bits(packed, HEADER_BYTES)
    bits.read(2)  # the lock and key flags: unused by method 1 without a key
    out = bytearray()
    tables: list = [None, None, None]
    for _ in range(blocks):
        tables = [_huffman_table(bits) or old for old in tables]
        commands = bits.read(16)
        for command in range(commands, 0, -1):
            run = _value(bits, tables[0])
            if run:
                out += bits.literals(run)
            if command > 1:
                offset, length = _value(bits, tables[1]) + 1, _value(bits, tables[2]) + 2
                if offset > len(out):
                    raise ValueError("RNC match reaches before the start of the output")
                for _ in range(length):  # byte by byte: a match may overlap what it writes
                    out.append(out[-offset])
    if len(out) != unpacked_length or crc16(bytes(out)) != unpacked_crc:
        raise ValueError("RNC unpacked data has the wrong length or CRC")
    return bytes(out)
