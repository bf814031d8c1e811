#!/usr/bin/env python3
"""Generate OCI image layouts for client tests, offline (stdlib only).

  make-test-images.py OUTDIR [--big-mib N] [--seed S]

Writes OUTDIR/{small,big,multiarch}, each an OCI image layout (oci-layout, index.json,
blobs/sha256/...) whose index.json names one manifest with org.opencontainers.image.ref.name
"latest":
  small      2 gzip tar layers + config
  big        3 gzip layers, the middle one holding N MiB (default 100) of random data
  multiarch  an image index with linux/amd64 and linux/arm64 images
Small content is seeded (same bytes every run for the same --seed); the big layer's payload
comes from os.urandom. OUTDIR/digests.json records every manifest/config digest.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = 1700000000  # fixed mtime for reproducible tars
CREATED = "2023-11-14T22:13:20Z"


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class Layout:
    def __init__(self, path):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def put(self, data, media_type, **extra):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, digest), "wb") as f:
            f.write(data)
        desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
        desc.update(extra)
        return desc

    def put_file(self, path, media_type):
        """Move an already written file into the blob store (for the big layer)."""
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        digest = h.hexdigest()
        os.replace(path, os.path.join(self.blobs, digest))
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": size}, digest

    def finish(self, top):
        top = dict(top)
        top["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [top]}
        with open(os.path.join(self.path, "index.json"), "wb") as f:
            f.write(canonical(index))


def tar_bytes(files):
    """files: list of (name, bytes). Returns an uncompressed, reproducible tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted({os.path.dirname(n) for n, _ in files if os.path.dirname(n)})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tf.addfile(ti)
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, EPOCH
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class _Urandom(io.RawIOBase):
    """Readable stream of N random bytes."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left, 1 << 20)
        b[:n] = os.urandom(n)
        self.left -= n
        return n


class _HashingGzip(io.RawIOBase):
    """Writable: hashes what is written (the diff_id) and gzips it into a file."""

    def __init__(self, path):
        self.diff = hashlib.sha256()
        self.raw = open(path, "wb")
        self.gz = gzip.GzipFile(fileobj=self.raw, mode="wb", compresslevel=1, mtime=0)

    def writable(self):
        return True

    def write(self, b):
        self.diff.update(b)
        return self.gz.write(b)

    def close(self):
        if not self.closed:
            self.gz.close()
            self.raw.close()
        super().close()


def big_gzip_layer(layout, payload):
    """A gzip layer holding one file of PAYLOAD random bytes (level 1: random data does not compress)."""
    tmp = os.path.join(layout.path, "big-layer.tmp")
    out = _HashingGzip(tmp)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("big/payload.bin")
        ti.size, ti.mode, ti.mtime = payload, 0o644, EPOCH
        tf.addfile(ti, io.BufferedReader(_Urandom(payload), 1 << 20))
    out.close()
    desc, _ = layout.put_file(tmp, MT_LAYER_GZIP)
    return desc, "sha256:" + out.diff.hexdigest()


def gzip_layer(layout, tar):
    gz = gzip.compress(tar, compresslevel=6, mtime=0)
    desc = layout.put(gz, MT_LAYER_GZIP)
    return desc, "sha256:" + hashlib.sha256(tar).hexdigest()


def image(layout, layers, arch="amd64", variant=None, label="image"):
    """layers: list of (descriptor, diff_id). Writes config + manifest, returns manifest descriptor."""
    config = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Labels": {"org.berth.test": label}},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        "history": [{"created": CREATED, "created_by": f"make-test-images.py layer {i}"}
                    for i in range(len(layers))],
    }
    if variant:
        config["variant"] = variant
    cfg = layout.put(canonical(config), MT_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": cfg,
        "layers": [d for d, _ in layers],
        "annotations": {"org.opencontainers.image.title": label},
    }
    desc = layout.put(canonical(manifest), MT_MANIFEST)
    return desc, cfg


def random_files(rng, prefix, count, size):
    return [(f"{prefix}/file{i}.bin", rng.randbytes(size)) for i in range(count)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--big-mib", type=int, default=int(os.environ.get("BIG_LAYER_MIB", "100")))
    ap.add_argument("--seed", default="berth")
    args = ap.parse_args()
    out = args.outdir
    os.makedirs(out, exist_ok=True)
    rng = random.Random(args.seed)
    record = {}

    # small: 2 gzip layers + config
    small = Layout(os.path.join(out, "small"))
    l1 = gzip_layer(small, tar_bytes(random_files(rng, "small/a", 3, 16 * 1024)))
    l2 = gzip_layer(small, tar_bytes(random_files(rng, "small/b", 2, 48 * 1024)
                                     + [("etc/berth-test", b"small image\n")]))
    m, cfg = image(small, [l1, l2], label="small")
    small.finish(m)
    record["small"] = {"manifest": m["digest"], "config": cfg["digest"], "layers": [l1[0]["digest"], l2[0]["digest"]]}

    # big: gzip layer, N MiB uncompressed tar layer, gzip layer
    big = Layout(os.path.join(out, "big"))
    b1 = gzip_layer(big, tar_bytes(random_files(rng, "big/head", 2, 32 * 1024)))
    b2 = big_gzip_layer(big, args.big_mib * 1024 * 1024)
    b3 = gzip_layer(big, tar_bytes([("big/tail.txt", b"tail layer\n")]))
    m, cfg = image(big, [b1, b2, b3], label="big")
    big.finish(m)
    record["big"] = {"manifest": m["digest"], "config": cfg["digest"], "big_layer": b2[0]["digest"],
                     "big_layer_size": b2[0]["size"]}

    # multiarch: index of linux/amd64 + linux/arm64
    multi = Layout(os.path.join(out, "multiarch"))
    children = []
    record["multiarch"] = {"platforms": {}}
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        la = gzip_layer(multi, tar_bytes(random_files(rng, f"multi/{arch}", 2, 8 * 1024)
                                         + [("etc/arch", arch.encode() + b"\n")]))
        m, cfg = image(multi, [la], arch=arch, variant=variant, label=f"multiarch-{arch}")
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        m["platform"] = platform
        children.append(m)
        record["multiarch"]["platforms"][f"linux/{arch}"] = {"manifest": m["digest"], "config": cfg["digest"]}
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": children,
             "annotations": {"org.opencontainers.image.title": "multiarch"}}
    idx = multi.put(canonical(index), MT_INDEX)
    multi.finish(idx)
    record["multiarch"]["index"] = idx["digest"]

    with open(os.path.join(out, "digests.json"), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    json.dump(record, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
