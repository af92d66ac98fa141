#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Damage a copy of a bgsnap snapshot in one named way (ramstore/FORMAT.md).

    corrupt.py SRC DST CLASS

Classes: header, regions, rechdr, payload (the first one, lz4), raw (the
first uncompressed payload), attachment, index, footer,
truncate, tail (bytes after the footer), hole (a run of zero bytes over
records), bitK for K in 0..63 (one bit of the first lz4 payload, the
K-th of 64 spread over it). Prints the offset damaged. Format 1.1 and 1.0
alike.
"""
import struct
import sys

FOOTER = 64
RECHDR = 56  # 48 in a 1.0 file: set by main from the header's flags


def rechdr_len(buf):
    """56 with the STORED_SUMS header flag (format 1.1), else 48."""
    return 56 if struct.unpack_from("<I", buf, 20)[0] & 1 else 48


def records(buf):
    """(offset, type, payload_len) of every record before the index."""
    header_len = struct.unpack_from("<I", buf, 12)[0]
    index_off = struct.unpack_from("<Q", buf, len(buf) - FOOTER + 8)[0]
    off = header_len
    while off < index_off:
        rtype = buf[off + 4]
        plen = struct.unpack_from("<Q", buf, off + 24)[0]
        yield off, rtype, plen
        off += RECHDR + plen


def first(buf, rtype, with_payload=False, encoding=None):
    for off, t, plen in records(buf):
        if t == rtype and (plen or not with_payload) and \
                encoding in (None, buf[off + 5]):
            return off, plen
    sys.exit("corrupt.py: no record of type %d" % rtype)


def flip(buf, off):
    buf[off] ^= 0x5A
    return off


def damage(buf, cls):
    size = len(buf)
    index_off = struct.unpack_from("<Q", buf, size - FOOTER + 8)[0]
    if cls == "header":
        return flip(buf, 40), buf          # inside snapshot_id
    if cls == "regions":
        off, _ = first(buf, 1)
        return flip(buf, off + RECHDR + 3), buf  # a region's base
    if cls == "rechdr":
        off, _ = first(buf, 2)
        return flip(buf, off + 16), buf    # the first page number
    if cls == "payload":
        off, plen = first(buf, 2, with_payload=True, encoding=2)
        return flip(buf, off + RECHDR + plen // 2), buf
    if cls.startswith("bit"):
        off, plen = first(buf, 2, with_payload=True, encoding=2)
        bit = int(cls[3:]) * 8 * plen // 64
        buf[off + RECHDR + bit // 8] ^= 1 << (bit % 8)
        return off + RECHDR + bit // 8, buf
    if cls == "raw":                       # stored uncompressed
        off, plen = first(buf, 2, with_payload=True, encoding=1)
        return flip(buf, off + RECHDR + plen // 2), buf
    if cls == "attachment":
        off, plen = first(buf, 3, with_payload=True)
        return flip(buf, off + RECHDR + plen - 1), buf
    if cls == "index":
        return flip(buf, index_off + RECHDR + 32 + 8), buf  # an entry
    if cls == "footer":
        return flip(buf, size - FOOTER + 24), buf  # nrecords
    if cls == "truncate":
        return size - 100, buf[:size - 100]
    if cls == "tail":
        return size, buf + b"\0" * 64
    if cls == "hole":
        off, plen = first(buf, 2, with_payload=True)
        buf[off:off + RECHDR + plen] = bytes(RECHDR + plen)
        return off, buf
    sys.exit("corrupt.py: unknown class " + cls)


def main():
    src, dst, cls = sys.argv[1:4]
    global RECHDR
    with open(src, "rb") as f:
        buf = bytearray(f.read())
    RECHDR = rechdr_len(buf)
    off, buf = damage(buf, cls)
    with open(dst, "wb") as f:
        f.write(buf)
    print(off)


if __name__ == "__main__":
    main()
