"""Take Pride and Prejudice out of Debian's r-cran-janeaustenr package (how data/ got its corpus).

    apt-get download r-cran-janeaustenr            # 1.0.0-1, MIT; the novel is public domain
    dpkg-deb -x r-cran-janeaustenr_1.0.0-1_all.deb pkg
    python scripts/extract_austen.py pkg/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb

R keeps a package's data in a lazy-load database: Rdata.rdb is a run of zlib blocks, each a
4-byte big-endian length and one object serialized in R's XDR format; the six novels are stored
in alphabetical order of their names. Each is a character vector, one line of the book an element.
No R is needed to read such a vector: a header, then (flags, length, bytes) per string.
"""
import struct
import sys
import zlib
from pathlib import Path

NAMES = ["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
         "sensesensibility"]


def read_character_vector(blob):
    if blob[:2] != b"X\n":
        raise ValueError("not an R XDR serialization")
    pos = 2 + 12  # format version, writer version, minimal reader version
    (n_enc,) = struct.unpack(">i", blob[pos:pos + 4])
    pos += 4 + n_enc  # native encoding name
    flags, n = struct.unpack(">Ii", blob[pos:pos + 8])
    pos += 8
    if flags & 0xFF != 16:
        raise ValueError("not a character vector (STRSXP)")
    lines = []
    for _ in range(n):
        flags, length = struct.unpack(">Ii", blob[pos:pos + 8])
        pos += 8
        if flags & 0xFF != 9:
            raise ValueError("not a string (CHARSXP)")
        if length < 0:  # NA
            lines.append("")
            continue
        lines.append(blob[pos:pos + length].decode("utf-8"))
        pos += length
    return lines


def read_books(rdb):
    data, pos, books = Path(rdb).read_bytes(), 0, {}
    for name in NAMES:
        inflate = zlib.decompressobj()
        blob = inflate.decompress(data[pos + 4:])
        pos = len(data) - len(inflate.unused_data)
        books[name] = read_character_vector(blob)
    return books


if __name__ == "__main__":
    books = read_books(sys.argv[1])
    out = Path(__file__).resolve().parent.parent / "data" / "pride_and_prejudice.txt"
    out.write_text("\n".join(books["prideprejudice"]) + "\n", encoding="utf-8", newline="\n")
    print(f"wrote data/{out.name}: {out.stat().st_size} bytes")
