#!/usr/bin/env python3
"""Prints the membership an etcd snapshot was taken in, one JSON object a line.

`etcdutl/etcdctl snapshot status` reports hash, revision, keys and size, not the members, and
`snapshot restore` overwrites the membership with --initial-cluster. The members are still in
the snapshot: it is a bbolt database whose bucket "members" holds one JSON value per member,
keyed by the member id in hex (etcd: server/etcdserver/api/membership/store.go,
mustSaveMemberToBackend, json.Marshal of Member: "id", "peerURLs", "name", "clientURLs",
"isLearner"). This reads that bucket with the bbolt page layout (go.etcd.io/bbolt: page.go,
the page header {id u64, flags u16, count u16, overflow u32}, branch elements {pos u32, ksize
u32, pgid u64}, leaf elements {flags u32, pos u32, ksize u32, vsize u32}, flag 1 = a bucket;
db.go, the two meta pages {magic 0xED0CDAED, version, pageSize, flags, root bucket {root pgid,
sequence}, freelist, pgid, txid, checksum}, the valid one with the higher txid is current;
bucket.go, a bucket value {root pgid u64, sequence u64}, root 0 = an inline page follows).

Usage: etcd-snapshot-members.py SNAPSHOT. Exit 0 with the members; 1 when the file is not a
bbolt database or has no "members" bucket.
"""
import json
import struct
import sys

PAGE_HEADER = 16
MAGIC = 0xED0CDAED


def fail(message):
    sys.stderr.write(f"etcd-snapshot-members: {message}\n")
    sys.exit(1)


def read_meta(data, offset):
    magic, version, page_size = struct.unpack_from("<III", data, offset + PAGE_HEADER)
    if magic != MAGIC:
        return None
    root, = struct.unpack_from("<Q", data, offset + PAGE_HEADER + 16)
    txid, = struct.unpack_from("<Q", data, offset + PAGE_HEADER + 48)
    return page_size, root, txid


def elements(data, page_offset):
    """(key, value, flags) of every leaf element under the page at page_offset, in order."""
    flags, count = struct.unpack_from("<HH", data, page_offset + 8)
    base = page_offset + PAGE_HEADER
    for i in range(count):
        if flags & 0x01:  # branch
            pos, ksize, pgid = struct.unpack_from("<IIQ", data, base + 16 * i)
            yield from elements(data, pgid * PAGE_SIZE)
        elif flags & 0x02:  # leaf
            eflags, pos, ksize, vsize = struct.unpack_from("<IIII", data, base + 16 * i)
            start = base + 16 * i + pos
            yield data[start : start + ksize], data[start + ksize : start + ksize + vsize], eflags
        else:
            fail(f"unexpected page flags {flags:#x} at offset {page_offset}")


def bucket_items(data, value):
    """The elements of the bucket whose bucket value is `value`."""
    root, = struct.unpack_from("<Q", value, 0)
    if root == 0:  # inline bucket: a page follows the 16-byte bucket header
        inline = value[16:]
        yield from elements(inline, 0)
    else:
        yield from elements(data, root * PAGE_SIZE)


def main():
    global PAGE_SIZE
    if len(sys.argv) != 2:
        fail("usage: etcd-snapshot-members.py SNAPSHOT")
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    first = read_meta(data, 0) if len(data) >= 4096 else None
    if first is None:
        fail(f"{sys.argv[1]} is not a bbolt database")
    PAGE_SIZE = first[0]
    second = read_meta(data, PAGE_SIZE) if len(data) >= 2 * PAGE_SIZE else None
    page_size, root, _ = max([m for m in (first, second) if m], key=lambda m: m[2])
    for key, value, eflags in elements(data, root * PAGE_SIZE):
        if key == b"members" and eflags & 0x01:
            for _, member, _ in bucket_items(data, value):
                sys.stdout.write(json.dumps(json.loads(member), sort_keys=True) + "\n")
            return
    fail(f"{sys.argv[1]} has no members bucket")


PAGE_SIZE = 4096
if __name__ == "__main__":
    main()
