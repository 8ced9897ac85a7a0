"""training.corpus.rnc and sky_speech: RNC method 1 streams built bit by bit here (literal runs, overlapping
matches, a table reused by a later block) unpack to what they encode, and a damaged stream is refused by its CRC.
The real files are checked too when the game's Debian package is in the local cache (every CRC must hold)."""

from __future__ import annotations

import struct

import pytest

from training.corpus.rnc import crc16, unpack
from training.corpus.sky_speech import FILE_HEADER_BYTES, section_of, speech_lines, table_entries


class StreamWriter:
    """Bits least-significant first in 16-bit little-endian words; a literal run's bytes go right after the word
    that holds the last bit written, and the bits go on in that word, then in the words after the bytes."""

    def __init__(self) -> None:
        self.bits: list[int] = []
        self.literals: list[tuple[int, bytes]] = []

    def put(self, value: int, count: int) -> StreamWriter:
        self.bits += [(value >> k) & 1 for k in range(count)]
        return self

    def code(self, prefix: str) -> StreamWriter:  # a Huffman code, first bit first
        self.bits += [int(b) for b in prefix]
        return self

    def table(self, lengths: list[int]) -> StreamWriter:
        self.put(len(lengths), 5)
        for length in lengths:
            self.put(length, 4)
        return self

    def literal(self, raw: bytes) -> StreamWriter:
        assert len(self.bits) % 16, "keep literal runs off word boundaries in these tests"
        self.literals.append(((len(self.bits) - 1) // 16, raw))
        return self

    def stream(self, unpacked: bytes, blocks: int) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 16 + 32)
        body = bytearray()
        for index in range(len(bits) // 16):
            body += struct.pack("<H", sum(b << k for k, b in enumerate(bits[16 * index: 16 * index + 16])))
            body += b"".join(raw for at, raw in self.literals if at == index)
        header = struct.pack(">4sIIHHBB", b"RNC\x01", len(unpacked), len(body), crc16(unpacked), crc16(bytes(body)),
                             0, blocks)
        return header + bytes(body)


def test_crc16_is_the_arc_variant() -> None:
    assert crc16(b"123456789") == 0xBB3D and crc16(b"") == 0


def test_literals_then_an_overlapping_match() -> None:
    # raw table: run 0 = code "0", runs 2-3 = code "1" + 1 bit; offsets 2-3: "0" + 1 bit; lengths 4-7: "0" + 2 bits
    writer = StreamWriter().put(0, 2).table([1, 0, 1]).table([0, 0, 1]).table([0, 0, 0, 1]).put(2, 16)
    writer.code("1").put(1, 1).literal(b"abc")  # 3 literal bytes
    writer.code("0").put(0, 1).code("0").put(0, 2)  # match: offset 2 + 1 = 3, length 4 + 2 = 6 (overlaps itself)
    writer.code("0")  # last command: no literals, no match
    assert unpack(writer.stream(b"abcabcabc", blocks=1)) == b"abcabcabc"


def test_a_block_without_tables_reuses_the_previous_ones() -> None:
    writer = StreamWriter().put(0, 2).table([1, 0, 1]).table([0, 0, 1]).table([0, 0, 0, 1]).put(1, 16)
    writer.code("1").put(0, 1).literal(b"hi")  # block 1: one command, 2 literal bytes
    writer.put(0, 5).put(0, 5).put(0, 5).put(1, 16)  # block 2: no codes, the same three tables
    writer.code("1").put(1, 1).literal(b"!!!")
    assert unpack(writer.stream(b"hi!!!", blocks=2)) == b"hi!!!"


def test_damaged_or_foreign_streams_are_refused() -> None:
    writer = StreamWriter().put(0, 2).table([1, 0, 1]).table([0, 0, 1]).table([0, 0, 0, 1]).put(1, 16)
    good = writer.code("1").put(1, 1).literal(b"xyz").stream(b"xyz", blocks=1)
    assert unpack(good) == b"xyz"
    with pytest.raises(ValueError, match="CRC"):
        unpack(good[:-3] + bytes([good[-3] ^ 0xFF]) + good[-2:])
    with pytest.raises(ValueError, match="RNC method 1"):
        unpack(b"RNC\x02" + good[4:])
    with pytest.raises(ValueError, match="length or CRC"):
        unpack(good[:4] + struct.pack(">I", 4) + good[8:])  # says 4 bytes unpacked, the stream gives 3


def test_sky_file_table_and_sections(tmp_path) -> None:
    packed = StreamWriter().put(0, 2).table([1, 0, 1]).table([0, 0, 1]).table([0, 0, 0, 1]).put(1, 16)
    packed = packed.code("1").put(1, 1).literal(b"\x80\x81\x82").stream(b"\x80\x81\x82", blocks=1)
    header = bytes(FILE_HEADER_BYTES)
    files = {50001: header + packed, 50700: header + b"\x7f\x80", 60000: header + b"sprite"}
    dsk, dnr = bytearray(), bytearray(struct.pack("<I", len(files)))
    for number, data in files.items():
        stored_as_is = 0 if number == 50001 else 1
        dnr += struct.pack("<H", number) + len(dsk).to_bytes(3, "little")
        dnr += (len(data) | stored_as_is << 23).to_bytes(3, "little")
        dsk += data
    (tmp_path / "sky.dnr").write_bytes(bytes(dnr))
    (tmp_path / "sky.dsk").write_bytes(bytes(dsk))
    assert [entry[0] for entry in table_entries(bytes(dnr))] == [50001, 50700, 60000]
    assert list(speech_lines(tmp_path / "sky.dnr", tmp_path / "sky.dsk")) == [(50001, b"\x80\x81\x82"),
                                                                             (50700, b"\x7f\x80")]
    assert section_of(50001) == 0 and section_of(50700) == 1 and section_of(55229) == 6 and section_of(55230) == 7
    with pytest.raises(ValueError, match="lists 3 files"):
        list(table_entries(bytes(dnr[:-8])))


@pytest.mark.slow
def test_the_games_own_speech_lines_unpack_with_their_crcs(tmp_path) -> None:
    from itertools import islice

    from training.corpus.gamevox import SKY
    from training.suites.debian import DEFAULT_DEB_CACHE, extract_deb, find_deb

    deb = find_deb(DEFAULT_DEB_CACHE, SKY)
    if deb is None:
        pytest.skip(f"{SKY} is not in the local Debian cache ({DEFAULT_DEB_CACHE})")
    game = extract_deb(deb, tmp_path)
    lines = list(islice(speech_lines(next(game.rglob("sky.dnr")), next(game.rglob("sky.dsk"))), 25))
    assert len(lines) == 25 and all(len(pcm) > 11025 // 4 for _, pcm in lines)  # every CRC held (unpack checks)
