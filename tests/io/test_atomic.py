"""speechft.io.atomic: the target is the old content or the new, never a partial file or a stray temporary."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechft.io import atomic


def test_write_text_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic.write_text(target, "first\n")
    atomic.write_text(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_write_lines_streams_a_generator(tmp_path: Path) -> None:
    target = tmp_path / "lines.txt"
    atomic.write_lines(target, (f"k{index}\tv" for index in range(3)), durable=False)
    assert target.read_bytes() == b"k0\tv\nk1\tv\nk2\tv\n"


def test_failed_write_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old\n", encoding="utf-8")

    def lines():
        yield "half"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.write_lines(target, lines())
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_serves_any_writer(tmp_path: Path) -> None:
    target = tmp_path / "blob.bin"
    with atomic.atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(atomic.TEMP_PREFIX)
        temporary.write_bytes(b"\x00\x01")
        assert not target.exists()
    assert target.read_bytes() == b"\x00\x01"


def test_torch_save_round_trips(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    target = tmp_path / "model.pt"
    atomic.torch_save({"w": torch.arange(3)}, target)
    assert torch.equal(torch.load(target)["w"], torch.arange(3))


def test_directory_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "step-000010"
    with atomic.atomic_directory(target) as temporary:
        (temporary / "a").write_text("1", encoding="utf-8")
        (temporary / "nested").mkdir()
        (temporary / "nested" / "b").write_text("2", encoding="utf-8")
    with atomic.atomic_directory(target) as temporary:
        (temporary / "c").write_text("3", encoding="utf-8")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-000010"]


def test_failed_directory_keeps_old_one(tmp_path: Path) -> None:
    target = tmp_path / "step-000010"
    with atomic.atomic_directory(target) as temporary:
        (temporary / "a").write_text("1", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic.atomic_directory(target) as temporary:
        (temporary / "partial").write_text("x", encoding="utf-8")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["step-000010"]
