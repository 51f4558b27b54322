"""Keys, key files, keyed digests, secrets kept out of reprs and errors."""
import json
import os

import blake3
import pytest

from datastores.engine.crypto import (CryptConfig, chunk_digest, create_keyfile, key_from_paper,
                                      keyfile_info, load_keyfile, paper_key)
from datastores.engine.errors import DatastoreError


def test_keyfile_scrypt_round_trip(tmp_path):
    p = tmp_path / "k.json"
    fp = create_keyfile(p, "scrypt", "correct horse")
    assert len(fp.split(":")) == 8 and all(len(x) == 2 for x in fp.split(":"))
    assert os.stat(p).st_mode & 0o777 == 0o600
    c = load_keyfile(p, "correct horse")
    assert c.fingerprint == fp
    assert keyfile_info(p)["kdf"] == "scrypt" and keyfile_info(p)["fingerprint"] == fp
    with pytest.raises(DatastoreError, match=f"wrong passphrase for key file {p}"):
        load_keyfile(p, "wrong horse")
    with pytest.raises(DatastoreError, match="protected by a passphrase"):
        load_keyfile(p)
    with pytest.raises(DatastoreError, match="already exists"):
        create_keyfile(p, "none")


def test_keyfile_none_and_paper(tmp_path):
    p = tmp_path / "k.json"
    fp = create_keyfile(p, "none")
    c = load_keyfile(p)
    assert c.fingerprint == fp
    text = paper_key(p)
    assert text.startswith("-----BEGIN PBSWEB BACKUP KEY-----")
    q = tmp_path / "back.json"
    q.write_text(json.dumps(key_from_paper(text)))
    assert load_keyfile(q).digest(b"x") == c.digest(b"x")


def test_bad_args(tmp_path):
    with pytest.raises(DatastoreError, match="passphrase: at least 5"):
        create_keyfile(tmp_path / "a", "scrypt", "abc")
    with pytest.raises(DatastoreError, match="kdf: unknown"):
        create_keyfile(tmp_path / "b", "md5", "abcdef")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    (tmp_path / "c").write_text("{not json")
    with pytest.raises(DatastoreError, match="not a valid key file"):
        load_keyfile(tmp_path / "c")


def test_fingerprint_and_digests():
    k = bytes(range(32))
    c1, c2 = CryptConfig(k), CryptConfig(bytes(32))
    assert c1.fingerprint == CryptConfig(k).fingerprint != c2.fingerprint
    data = b"hello world"
    assert chunk_digest(data) == blake3.blake3(data).digest()
    assert chunk_digest(data, c1) != chunk_digest(data)
    assert chunk_digest(data, c1) != chunk_digest(data, c2)
    assert chunk_digest(data, c1) == c1.digest(data)


def test_secrets_not_in_repr(tmp_path):
    k = os.urandom(32)
    c = CryptConfig(k)
    for text in (repr(c), str(c)):
        assert k.hex() not in text and "fingerprint" in text
    p = tmp_path / "k.json"
    create_keyfile(p, "scrypt", "sesame-open")
    with pytest.raises(DatastoreError) as e:
        load_keyfile(p, "sesame-shut")
    assert "sesame" not in str(e.value)
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(c)


def test_manifest_signature_detects_tampering():
    from datastores.engine.errors import CorruptionError
    from datastores.engine.manifest import Manifest

    c = CryptConfig(bytes(range(32)))
    m = Manifest("host", "h", 1000)
    m.add_file("root.tar.didx", 10, "ab" * 32, "encrypt")
    m.sign(c)
    m2 = Manifest.from_blob(m.to_blob())
    m2.check_signature(c)
    assert m2.key_fingerprint == c.fingerprint
    m2.unprotected["notes"] = "unprotected part may change"
    m2.check_signature(c)
    m2.files[0]["size"] = 11
    with pytest.raises(CorruptionError, match="signature mismatch"):
        m2.check_signature(c)
    with pytest.raises(CorruptionError, match="signature mismatch"):
        Manifest.from_blob(m.to_blob()).check_signature(CryptConfig(bytes(32)))
