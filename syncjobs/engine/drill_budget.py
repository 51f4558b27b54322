"""Drills on a budget: each run verifies the next slice of a bucket prefix's
chunks (in digest order, from where the last run stopped) within a byte or
GET budget, so the whole prefix is verified every K runs; and every run
checks the presence and size of every object against the local inventory by
LIST only (one request per 1,000 objects).

A byte budget is kept on average: a run never downloads more than its
allowance (the budget plus what earlier runs of the pass left unused, since
chunks do not divide the budget evenly), so an unchanged prefix of T bytes
is covered in ceil(T / budget) runs.
"""
from __future__ import annotations

import bisect
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from datastores.engine.errors import CorruptionError, DatastoreError
from datastores.engine.report import Reporter

from .bucket import Bucket, SyncError
from .bucket_source import BucketSource, problem_text, read_chunks
from .common import fmt_bytes
from .inventory import CHUNKS_DIR, Inventory, chunk_rel, parse_chunk_rel


@dataclass
class SliceResult:
    chunks: int = 0                   # chunks verified this run
    bytes: int = 0                    # their bytes
    total_chunks: int = 0             # chunks in the prefix
    total_bytes: int = 0
    cursor: str = ""                  # the next run starts after this digest ("" = from the start)
    credit: int = 0                   # bytes of allowance the next run inherits
    full_pass: bool = False           # this run verified the last chunks of a pass
    runs_per_pass: int = 1            # K: runs that verify every chunk once
    objects_listed: int = 0
    problems: list[str] = field(default_factory=list)   # "<key>: <what is wrong>"


def drill_slice(bucket: Bucket, cursor: str = "", *, budget_bytes: int | None = None, max_gets: int | None = None,
                credit: int = 0, inventory: Inventory | None = None, workers: int = 8,
                reporter: Reporter | None = None) -> SliceResult:
    """Verify the chunks after `cursor` within the budget (plus `credit`, the
    previous run's unused allowance), and check the LIST against `inventory`."""
    if not budget_bytes and not max_gets:
        raise ValueError("a budget drill needs budget_bytes or max_gets")
    rep = reporter or Reporter()
    res = SliceResult()
    listed_chunks: dict[str, int] = {}
    listed_files: dict[str, int] = {}
    for info in bucket.list_info(""):
        res.objects_listed += 1
        digest = parse_chunk_rel(info.rel)
        if digest:
            listed_chunks[digest] = info.size
        elif not info.rel.startswith(CHUNKS_DIR):
            listed_files[info.rel] = info.size
    rep.log(f"listed s3://{bucket.bucket}/{bucket.prefix}: {res.objects_listed} objects "
            f"({len(listed_chunks)} chunks)")
    if inventory is not None:
        _check_listing(bucket, inventory, listed_chunks, listed_files, res, rep)

    digests = sorted(listed_chunks)
    res.total_chunks, res.total_bytes = len(digests), sum(listed_chunks.values())
    sizes = [listed_chunks[d] for d in digests]
    res.runs_per_pass = max(1, _runs_per_pass(sizes, budget_bytes, max_gets))
    start = bisect.bisect_right(digests, cursor) if cursor else 0
    if start >= len(digests):
        start, credit = 0, 0
    end, left = _slice(sizes, start, budget_bytes, max_gets, credit)
    todo = digests[start:end]
    source = BucketSource(bucket)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="drill") as pool:
        for digest, fut in read_chunks(pool, source, todo, workers):
            rep.check_abort()
            try:
                blob = fut.result()
            except (CorruptionError, DatastoreError, SyncError) as e:
                res.problems.append(problem_text(e, bucket.key(chunk_rel(digest))))
                rep.log(f"ERROR: {res.problems[-1]}")
                continue
            res.chunks += 1
            res.bytes += len(blob)
    res.full_pass = end >= len(digests)
    res.cursor = "" if res.full_pass or not todo else todo[-1]
    res.credit = 0 if res.full_pass else left
    rep.log(f"verified {res.chunks} of {res.total_chunks} chunks ({fmt_bytes(res.bytes)} of "
            f"{fmt_bytes(res.total_bytes)}), chunks {start + 1}-{end} in digest order"
            + ("; this completes a full pass over the bucket" if res.full_pass else ""))
    return res


def _slice(sizes: list[int], start: int, budget_bytes: int | None, max_gets: int | None,
           credit: int) -> tuple[int, int]:
    """(end index, unused allowance) of the run starting at `start`."""
    if not budget_bytes:
        return min(len(sizes), start + max_gets), 0
    allowance, end = budget_bytes + credit, start
    while end < len(sizes) and (sizes[end] <= allowance or end == start):
        allowance -= sizes[end]   # a chunk larger than the allowance goes alone: every run makes progress
        end += 1
    return end, max(0, allowance)


def _runs_per_pass(sizes: list[int], budget_bytes: int | None, max_gets: int | None) -> int:
    """K: the runs a pass over an unchanged prefix takes, by the same rule as the runs."""
    if not budget_bytes:
        return math.ceil(len(sizes) / max_gets)
    runs, start, credit = 0, 0, 0
    while start < len(sizes):
        start, credit = _slice(sizes, start, budget_bytes, None, credit)
        runs += 1
    return runs


def _check_listing(bucket: Bucket, inventory: Inventory, chunks: dict[str, int], files: dict[str, int],
                   res: SliceResult, rep: Reporter) -> None:
    """Objects the inventory says the push wrote that are gone or have another size."""
    for digest, _, size in inventory.iter_chunks():
        rel = chunk_rel(digest)
        if digest not in chunks:
            res.problems.append(f"{bucket.key(rel)}: object is missing (LIST)")
        elif chunks[digest] != size:
            res.problems.append(f"{bucket.key(rel)}: size {chunks[digest]} in the bucket, {size} when uploaded")
    for rel, entry in inventory.files().items():
        if rel not in files:
            res.problems.append(f"{bucket.key(rel)}: object is missing (LIST)")
        elif files[rel] != entry.size:
            res.problems.append(f"{bucket.key(rel)}: size {files[rel]} in the bucket, {entry.size} when uploaded")
    for p in res.problems:
        rep.log(f"ERROR: {p}")
    rep.log(f"presence and size of every object checked against the inventory by LIST: "
            f"{len(res.problems)} missing or changed")
