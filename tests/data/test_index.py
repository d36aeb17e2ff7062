"""The manifest index: the same utterances and skipped lines as read_manifest (prep's layout through
the fast scan, anything else through parse_line), lines read back from disk, length limits and the
held-out slice over its arrays, pickling for loader workers."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from speechft.data.index import ManifestIndex, filter_index_lengths, key_hash
from speechft.data.manifest import chatml_line, filter_lengths, read_manifest, scan_line

GOOD = chatml_line("spk1-a", "语音转写：", "/data/a.wav", "今天 天气", 345, 7)


def record(**changes: object) -> dict:
    line = json.loads(GOOD)
    line.update(changes)
    return line


def odd_lines() -> list[str]:
    """Lines around prep's layout: some usable only through parse_line, some unusable."""
    escaped_text = record(messages=[*json.loads(GOOD)["messages"][:2], {"role": "assistant", "content": 'say "hi"\n'}])
    blank_text = record(messages=[*json.loads(GOOD)["messages"][:2], {"role": "assistant", "content": "\u3000 "}])
    no_bang = GOOD.replace("<|startofspeech|>!", "<|startofspeech|>")
    empty_path = GOOD.replace("!/data/a.wav", "!")
    twice = GOOD.replace("<|endofspeech|>", "<|endofspeech|> again <|startofspeech|>!b.wav<|endofspeech|>")
    return [
        GOOD,
        json.dumps(record(key="spaced"), indent=None, separators=(",", ":")),  # compact JSON: parse_line's way
        json.dumps(escaped_text, ensure_ascii=False),
        json.dumps(blank_text, ensure_ascii=False),
        json.dumps(record(key="ascii-escaped")),  # \\uXXXX escapes everywhere
        no_bang,
        empty_path,
        twice,
        GOOD.replace('"key": "spk1-a"', '"key": ""'),  # falls back to line-N
        GOOD[:-1],  # truncated JSON
        "",
        "   ",
        "[1, 2]",
        GOOD.replace('"speech_length": 345', '"speech_length": 0345'),  # not JSON
        GOOD.replace('"text_length": 7', '"text_length": "7"'),
        GOOD + "\r",
        chatml_line("long", "", "/data/b.wav", "x" * 20000, 99999, 5),
    ]


def write(path: Path, lines: list[str], *, newline_at_end: bool = True) -> Path:
    path.write_bytes(("\n".join(lines) + ("\n" if newline_at_end else "")).encode("utf-8") + (b"\xff\xfe bad bytes\n" if newline_at_end else b""))
    return path


@pytest.mark.parametrize("newline_at_end", [True, False])
def test_the_index_keeps_and_skips_what_read_manifest_does(tmp_path: Path, newline_at_end: bool) -> None:
    path = write(tmp_path / "m.jsonl", odd_lines() * 3, newline_at_end=newline_at_end)
    expected, expected_skips = read_manifest(path)
    index, skipped = ManifestIndex.build([path])
    assert [index[position] for position in range(len(index))] == expected
    assert skipped == expected_skips and len(skipped) >= 18
    assert index.speech_frames.tolist() == [u.speech_frames for u in expected]
    assert index.batch_tokens.tolist() == [u.batch_tokens for u in expected]
    by_tuple = sorted(range(len(expected)), key=lambda position: (expected[position].sort_key, position))
    assert np.argsort(index.sort_keys, kind="stable").tolist() == by_tuple
    assert index.key_hashes.tolist() == [key_hash(u.key) for u in expected]
    assert index[1:3] == expected[1:3] and index[-1] == expected[-1]


def test_the_fast_scan_agrees_with_parse_line(tmp_path: Path) -> None:
    for line in odd_lines():
        from speechft.data.manifest import Skip, parse_line

        scanned = scan_line(line.encode("utf-8"))
        if scanned is not None:  # only lines parse_line accepts, with the same fields
            parsed = parse_line(line, "f:1", "line-1")
            assert not isinstance(parsed, Skip)
            assert scanned == (parsed.key.encode("utf-8"), parsed.speech_frames, parsed.text_tokens)
    assert scan_line(GOOD.encode("utf-8")) == (b"spk1-a", 345, 7)


def test_an_index_over_blocks_and_files_keeps_offsets_and_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speechft.data import index as index_module

    monkeypatch.setattr(index_module, "BLOCK_BYTES", 1000)  # lines cross block ends
    first = write(tmp_path / "a.jsonl", [chatml_line(f"a{i}", "", f"/a{i}.wav", f"t{i}", 100 + i, 3) for i in range(40)], newline_at_end=False)
    second = write(tmp_path / "b.jsonl", [GOOD, "not json", GOOD.replace("spk1-a", "b1")])
    index, skipped = ManifestIndex.build([first, second])
    assert len(index) == 42 and index.sources.tolist() == [0] * 40 + [1, 1]
    assert [index[i].key for i in (0, 39, 40, 41)] == ["a0", "a39", "spk1-a", "b1"]
    assert index.where(41) == f"{second}:3" and index[41].where == f"{second}:3"
    assert [skip.where for skip in skipped] == [f"{second}:2", f"{second}:4"]
    assert index.nbytes / len(index) <= 40


def test_length_limits_over_the_arrays_match_filter_lengths(tmp_path: Path) -> None:
    lines = [chatml_line(f"k{i}", "", f"/{i}.wav", "t", frames, 4) for i, frames in enumerate([5, 100, 4000, 50, 9])]
    path = write(tmp_path / "m.jsonl", lines, newline_at_end=False)
    index, _ = ManifestIndex.build([path])
    kept, skipped = filter_index_lengths(index, max_sample_tokens=3500, min_speech_frames=10)
    expected, expected_skips = filter_lengths(read_manifest(path)[0], max_sample_tokens=3500, min_speech_frames=10)
    assert list(kept) == expected and skipped == expected_skips


def test_a_pickled_index_reads_lines_in_another_process(tmp_path: Path) -> None:
    path = write(tmp_path / "m.jsonl", [chatml_line(f"k{i}", "", f"/{i}.wav", "t", 100, 4) for i in range(5)], newline_at_end=False)
    index, _ = ManifestIndex.build([path])
    assert index[2].key == "k2"  # opens the file in this process
    copy = pickle.loads(pickle.dumps(index))
    assert copy[4].key == "k4" and copy.offsets.tolist() == index.offsets.tolist()
    child = os.fork()
    if child == 0:  # a forked loader worker reads with its own descriptor
        os._exit(0 if [index[i].key for i in range(5)] == [f"k{i}" for i in range(5)] else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


def test_a_line_changed_on_disk_is_an_error_naming_it(tmp_path: Path) -> None:
    from speechft.errors import InputError

    path = write(tmp_path / "m.jsonl", [GOOD, GOOD.replace("spk1-a", "b")], newline_at_end=False)
    index, _ = ManifestIndex.build([path])
    path.write_text("x" * len(GOOD) + "\n" + GOOD, encoding="utf-8")
    with pytest.raises(InputError, match=r"m\.jsonl:1: the line changed"):
        index.utterance(0)


def test_held_out_slice_over_hashes_keeps_every_source_trainable(tmp_path: Path) -> None:
    from speechft.train.holdout import held_out_positions, split_held_out

    keys = [f"spk{i % 7}-utt{i}" for i in range(60)]
    hashes = np.array([key_hash(key) for key in keys], dtype=np.uint64)
    chosen = held_out_positions(hashes, np.zeros(60, dtype=np.int64), 5)
    assert len(chosen) == 5 and set(chosen.tolist()) == split_held_out(keys, [list(range(60))], 5)
    # The 5 smallest hashes, whatever the order of the lines.
    assert sorted(hashes[chosen].tolist()) == sorted(hashes.tolist())[:5]
    # A source of a single line is never emptied: its key is passed over.
    smallest = int(np.argmin(hashes))
    sources = np.zeros(60, dtype=np.int64)
    sources[smallest] = 1
    kept_apart = held_out_positions(hashes, sources, 5)
    assert len(kept_apart) == 5 and smallest not in kept_apart.tolist()
