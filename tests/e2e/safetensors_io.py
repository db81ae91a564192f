"""Raw safetensors files for the e2e tests: tensors as (header entry, bytes), never decoded.

read(path) -> {name: (meta, raw)}: meta is the header entry without data_offsets.
write(path, tensors): the same layout back (8-byte length, JSON header, data in order).
"""
import json
import struct


def read(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header, data = json.loads(blob[8:8 + n]), blob[8 + n:]
    header.pop("__metadata__", None)
    return {k: ({m: v for m, v in meta.items() if m != "data_offsets"},
                data[meta["data_offsets"][0]:meta["data_offsets"][1]]) for k, meta in header.items()}


def write(path, tensors):
    header, body = {"__metadata__": {"format": "pt"}}, b""
    for name, (meta, raw) in tensors.items():
        header[name] = dict(meta, data_offsets=[len(body), len(body) + len(raw)])
        body += raw
    text = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + body)
