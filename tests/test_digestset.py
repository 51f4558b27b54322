"""DigestSet: the compact set of chunk digests verify and push use at scale."""
import os
import random

import pytest

from datastores.engine.digestset import DigestSet


def test_digestset_behaves_like_a_set_through_growth():
    rng = random.Random(1)
    digests = [rng.randbytes(32) for _ in range(5000)]
    ds, ref = DigestSet(), set()
    for d in digests + digests[:100]:  # duplicates are not added twice
        assert ds.add(d) == (d not in ref)
        ref.add(d)
    assert len(ds) == len(ref) == 5000
    assert ds.nbytes < 5000 * 32 * 3  # grown from 1024 slots, still compact
    assert all(d in ds for d in digests)
    assert not any(rng.randbytes(32) in ds for _ in range(2000))
    assert set(ds) == ref
    assert bytearray(digests[7]) in ds and memoryview(digests[7]) in ds


def test_digestset_zero_digest_and_bad_length():
    ds = DigestSet([bytes(32)], expected=10)
    assert bytes(32) in ds and len(ds) == 1 and list(ds) == [bytes(32)]
    assert not ds.add(bytes(32))
    assert os.urandom(32) not in ds
    with pytest.raises(ValueError):
        ds.add(b"short")
