"""The artifact store: atomic writes, safe keys, clear errors."""
import errno
import io
import os

import pytest

from workers.store import ArtifactNotFound, InvalidKeyError, LocalStore, StoreError, validate_id, validate_key


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "artifacts")


def test_put_read_size_exists_list(store, tmp_path):
    assert store.put_bytes("jobs/j1/weights.safetensors", b"abc") == 3
    assert store.read("jobs/j1/weights.safetensors") == b"abc"
    assert store.size("jobs/j1/weights.safetensors") == 3
    assert store.exists("jobs/j1/weights.safetensors") and not store.exists("jobs/j1/nothing")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))
    assert store.put_file("jobs/j1/data.bin", src) == 3 << 20
    assert store.read("jobs/j1/data.bin") == src.read_bytes()
    assert store.put_file("datasets/d1.npz", io.BytesIO(b"xyz")) == 3
    with store.open("datasets/d1.npz") as f:
        assert f.read() == b"xyz"
    assert store.list() == ["datasets/d1.npz", "jobs/j1/data.bin", "jobs/j1/weights.safetensors"]
    assert store.list("jobs/j1") == ["jobs/j1/data.bin", "jobs/j1/weights.safetensors"]
    assert store.list("jobs/none") == []
    assert store.local_path("datasets/d1.npz").read_bytes() == b"xyz"


def test_overwrite_and_delete(store):
    store.put_bytes("jobs/j1/a", b"1")
    store.put_bytes("jobs/j1/a", b"22")
    assert store.read("jobs/j1/a") == b"22"
    store.put_bytes("jobs/j1/sub/b", b"3")
    store.put_bytes("jobs/j2/a", b"4")
    assert store.delete("jobs/j1/a") and not store.delete("jobs/j1/a")
    store.put_bytes("jobs/j1/a", b"1")
    assert store.delete_prefix("jobs/j1") == 2
    assert store.list() == ["jobs/j2/a"]
    assert store.delete_prefix("jobs/j1") == 0
    with pytest.raises(ArtifactNotFound):
        store.read("jobs/j1/a")
    with pytest.raises(ArtifactNotFound):
        store.size("jobs/j2")  # a directory is not an artifact


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", "/a", ".hidden",
                                 "a\\..\\b", "a\x00b", "a b", "jobs/é", "a/.b", "~/x", "a:b", "x" * 1025])
def test_bad_keys_are_refused(store, key):
    with pytest.raises(InvalidKeyError):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.read(key)
    with pytest.raises(InvalidKeyError):
        store.delete_prefix(key)


def test_ids_are_single_segments():
    assert validate_id("job_0123abc-x.y") == "job_0123abc-x.y"
    for bad in ["a/b", "..", ".", "", "a" * 129, None]:
        with pytest.raises(InvalidKeyError):
            validate_id(bad)
    assert validate_key("", allow_empty=True) == ""


def test_symlink_out_of_the_root_is_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "jobs").mkdir()
    os.symlink(outside, store.root / "jobs" / "evil")
    with pytest.raises(InvalidKeyError, match="outside"):
        store.put_bytes("jobs/evil/x", b"x")
    assert list(outside.iterdir()) == []


def test_failed_write_keeps_previous_content(store):
    store.put_bytes("jobs/j1/ckpt", b"good")
    with pytest.raises(RuntimeError):
        with store.open_write("jobs/j1/ckpt") as f:
            f.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert store.read("jobs/j1/ckpt") == b"good"
    assert os.listdir(store.root / "jobs" / "j1") == ["ckpt"]  # no temp file left behind


def test_disk_full_is_a_store_error(store, monkeypatch):
    store.put_bytes("jobs/j1/ckpt", b"good")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="disk is full") as e:
        store.put_bytes("jobs/j1/ckpt", b"new")
    assert "jobs/j1/ckpt" in str(e.value)
    monkeypatch.undo()
    assert store.read("jobs/j1/ckpt") == b"good"
    assert store.list("jobs/j1") == ["jobs/j1/ckpt"]


def test_unwritable_root_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError):
        LocalStore(tmp_path / "file" / "artifacts")
