"""Source ingest throughput: small S3 objects (moto's server on 127.0.0.1) and WebDataset shards.

Run: python bench/sources.py [--objects 10000] [--mb 1024] [--shard-mb 64] [--skip-s3] [--skip-webdataset].
S3: `--objects` small objects (PNG/JPEG headers and text, ~100 bytes each) are uploaded to a fresh
bucket, then `ingest_prefix` lists, downloads (16 threads) and commits them through the checks; a
second run measures the no-new-objects case (listing plus the watermark check). moto's server is
single-threaded Python, so the numbers bound what the ingest does per object, not what S3 allows.
WebDataset: `--mb` of synthetic shards (`--shard-mb` each, ~100 kB samples with cls and json files)
ingested by one process (one thread parses, checks and writes each shard) and twice by a local Ray with
2 workers, each parsing, checking and writing its shards' data files: Ray is started outside the timing;
the first Ray ingest also starts Ray's worker processes (and their imports, the checks' Great
Expectations among them), the second finds them running. Every ingest commits once, in this process.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import show
from storage import Catalog
from tasks.s3_bucket import S3Options, ingest_prefix
from tasks.webdataset.ingest import ingest_shards

_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=1024, help="total size of the synthetic WebDataset shards")
    parser.add_argument("--shard-mb", type=int, default=64)
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-webdataset", action="store_true")
    args = parser.parse_args()
    rows: list[list[object]] = []
    work = Path(tempfile.mkdtemp(prefix="lh-bench-sources-"))
    try:
        if not args.skip_s3:
            rows += bench_s3(args.objects, work)
        if not args.skip_webdataset:
            rows += bench_webdataset(args.mb, args.shard_mb, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    show("Source ingest throughput", ["source", "engine", "items", "MB", "seconds", "items/s", "MB/s"], rows)


def _row(source: str, engine: str, items: int, size: int, seconds: float) -> list[object]:
    mb = size / 1e6
    return [source, engine, items, round(mb, 1), seconds, round(items / seconds), round(mb / seconds, 1)]


def small_object(n: int) -> tuple[str, bytes]:
    """A small object: a PNG or JPEG header, or a line of text."""
    if n % 3 == 0:
        ihdr = b"IHDR" + (64 + n % 50).to_bytes(4, "big") + (48).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
        return f"frames/{n:06d}.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d" + ihdr + b"\x00" * 64
    if n % 3 == 1:
        sof = b"\xff\xc0\x00\x0b\x08" + (48).to_bytes(2, "big") + (64).to_bytes(2, "big") + b"\x01\x01\x11\x00"
        return f"frames/{n:06d}.jpg", b"\xff\xd8" + sof + b"\x00" * 64 + b"\xff\xd9"
    return f"frames/{n:06d}.txt", f"frame {n}: ok\n".encode() * 4


def bench_s3(objects: int, work: Path) -> list[list[object]]:
    os.environ.update(_CREDENTIALS)
    with _moto(work) as endpoint:
        options = S3Options(endpoint_url=endpoint, region="us-east-1", access_key="bench", secret_key="bench")
        client = options.client()
        client.create_bucket(Bucket="lh-bench")

        def put(n: int) -> int:
            key, data = small_object(n)
            client.put_object(Bucket="lh-bench", Key=key, Body=data)
            return len(data)

        start = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            size = sum(pool.map(put, range(objects)))
        upload = time.perf_counter() - start
        catalog = Catalog(work / "s3-lake")
        start = time.perf_counter()
        first = ingest_prefix(catalog, "bench", "lh-bench", "frames/", options=options, batch_size=5000)
        ingest = time.perf_counter() - start
        start = time.perf_counter()
        again = ingest_prefix(catalog, "bench", "lh-bench", "frames/", options=options)
        rerun = time.perf_counter() - start
    assert first.new == objects and again.new == 0, (first.new, again.new)
    return [
        _row("s3 (moto) upload", "16 threads", objects, size, upload),
        _row("s3 (moto) ingest", "16 threads", objects, size, ingest),
        _row("s3 (moto) rerun, nothing new", "-", objects, 0, rerun),
    ]


class _moto:
    """moto's S3 server on a free port of 127.0.0.1, for the duration of a `with` block."""

    def __init__(self, work: Path) -> None:
        self.work = work

    def __enter__(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = Path(sys.executable).with_name("moto_server")
        self.log = open(self.work / "moto.log", "wb")
        self.proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=self.log, stderr=subprocess.STDOUT
        )
        endpoint = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(300):
            try:
                opener.open(f"{endpoint}/moto-api/data.json", timeout=1)
                return endpoint
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not start; see {self.work / 'moto.log'}")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def write_shards(directory: Path, total_mb: int, shard_mb: int) -> tuple[str, int, int]:
    """Synthetic shards of ~100 kB samples; returns (pattern, shards, samples)."""
    rng = random.Random(0)
    directory.mkdir(parents=True)
    shards = max(1, total_mb // shard_mb)
    samples = 0
    for shard in range(shards):
        with tarfile.open(directory / f"train-{shard:06d}.tar", "w") as archive:
            written = 0
            while written < shard_mb * 1_000_000:
                key = f"s{samples:08d}"
                image = b"\xff\xd8\xff\xe0" + rng.randbytes(100_000)
                label = json.dumps({"label": samples % 10, "caption": f"sample {samples}"}).encode()
                files = ((f"{key}.jpg", image), (f"{key}.cls", str(samples % 10).encode()), (f"{key}.json", label))
                for name, data in files:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
                    written += len(data)
                samples += 1
    return str(directory / f"train-{{000000..{shards - 1:06d}}}.tar"), shards, samples


def bench_webdataset(total_mb: int, shard_mb: int, work: Path) -> list[list[object]]:
    pattern, shards, samples = write_shards(work / "shards", total_mb, shard_mb)
    size = sum(p.stat().st_size for p in (work / "shards").iterdir())
    source = f"webdataset ({shards} shards)"
    rows = [_row(source, "1 process, 1 thread", samples, size, _ingest(work, pattern, "local", 1, samples))]
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # started outside the timing
    try:
        # The first ingest starts Ray's worker processes (and their imports); the second finds them running.
        for run in ("new workers", "running workers"):
            seconds = _ingest(work, pattern, "ray", 2, samples)
            rows.append(_row(source, f"local Ray, 2 workers ({run})", samples, size, seconds))
    finally:
        ray.shutdown()
    return rows


def _ingest(work: Path, pattern: str, engine: Literal["local", "ray"], workers: int, samples: int) -> float:
    """Seconds to ingest the shards into a new catalog."""
    lake = work / f"wd-lake-{engine}"
    start = time.perf_counter()
    result = ingest_shards(Catalog(lake), "bench", pattern, engine=engine, workers=workers)
    seconds = time.perf_counter() - start
    assert result.samples == samples, (result.samples, samples)
    shutil.rmtree(lake, ignore_errors=True)
    return seconds


if __name__ == "__main__":
    main()
