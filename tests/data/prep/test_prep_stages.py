"""Each prep stage on values built in the test: candidates, probe, checks, cut, split, summary."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
from prep_fixtures import write_lines, write_wav

from speechft.data.audio import AudioInfo
from speechft.data.kaldi import Segment, read_keyed_file
from speechft.data.prep.candidates import Candidate, join, join_segments
from speechft.data.prep.checks import KeptUtterance, audio_warnings, check, segment_extent
from speechft.data.prep.options import PrepOptions
from speechft.data.prep.pipeline import partition
from speechft.data.prep.probe import Unreadable, per_utterance, probe_files
from speechft.data.prep.reasons import Rejection
from speechft.data.prep.segments import SegmentJob, cut_recording
from speechft.data.prep.split import is_validation, split
from speechft.data.prep.summary import Percentiles, RunFacts, summarize


def limits(**overrides) -> PrepOptions:
    values = dict(scp=Path("wav.scp"), text=Path("text"), out=Path("out.jsonl"), tokenizer_dir=Path("tok"), min_frames=10, max_frames=300, max_tokens=5)
    values.update(overrides)
    return PrepOptions(**values)


def kept(key: str, seconds: float, text_length: int = 2) -> KeptUtterance:
    return KeptUtterance(key, "text", f"/{key}.wav", text_length, AudioInfo(round(seconds * 16000), 16000, 1))


def test_join_gives_one_outcome_per_key_in_report_order(tmp_path) -> None:
    write_lines(tmp_path / "wav.scp", ["b /b.wav", "a rel/a.wav", "c /c.wav", "c /c2.wav", "p cat x |", "e /e.wav"])
    write_lines(tmp_path / "text", ["a 你好", "b hello", "c x", "z only text", "p pipe", "e "])
    scp = read_keyed_file(tmp_path / "wav.scp", value_required=True, what="audio path")
    text = read_keyed_file(tmp_path / "text", value_required=False, what="transcript")
    outcomes = join(scp, text)
    assert [outcome.key for outcome in outcomes] == ["b", "a", "c", "p", "e", "z"]
    kinds = {o.key: (o.reason if isinstance(o, Rejection) else "candidate") for o in outcomes}
    assert kinds == {"b": "candidate", "a": "candidate", "c": "duplicate_key", "p": "unsupported_entry", "e": "empty_transcript", "z": "no_audio"}
    relative = next(o for o in outcomes if o.key == "a")
    assert isinstance(relative, Candidate) and Path(relative.location).is_absolute()
    assert relative.transcript == "你好" and relative.segment is None


def test_join_segments_rejects_unused_recordings_and_missing_ones(tmp_path) -> None:
    write_lines(tmp_path / "wav.scp", ["r1 /r1.wav", "r2 /r2.wav"])
    write_lines(tmp_path / "segments", ["s1 r1 0 1.5", "s2 r9 0 1", "s3 r1 2 1"])
    write_lines(tmp_path / "text", ["s1 a", "s2 b", "s3 c", "s4 d"])
    outcomes = join_segments(
        read_keyed_file(tmp_path / "wav.scp", value_required=True, what="audio path"),
        read_keyed_file(tmp_path / "text", value_required=False, what="transcript"),
        read_keyed_file(tmp_path / "segments", value_required=True, what="recording and times"),
    )
    assert [o.key for o in outcomes] == ["s1", "s2", "s3", "s4", "r2"]
    first = outcomes[0]
    assert isinstance(first, Candidate) and first.location == "/r1.wav" and first.segment.start_s == 0 and first.segment.end_s == 1.5
    assert [o.reason for o in outcomes[1:]] == ["no_audio", "bad_line", "no_audio", "no_segments"]
    assert "recording r9 is not in" in outcomes[1].detail


def test_probe_files_returns_facts_or_why_not(tmp_path) -> None:
    good = write_wav(tmp_path / "a.wav", 0.5, sample_rate=8000, channels=2)
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEnot audio at all")
    results = probe_files([str(good), str(tmp_path / "absent.wav"), str(tmp_path / "bad.wav")])
    assert results[0] == AudioInfo(4000, 8000, 2)
    assert isinstance(results[1], Unreadable) and results[1].reason == "file_missing"
    assert isinstance(results[2], Unreadable) and results[2].reason == "unreadable_audio"


def test_per_utterance_names_the_recording_of_a_segment() -> None:
    segment = Segment(1, "s1", "rec", 0.0, 1.0)
    candidates = [Candidate("u", "t", "/u.wav"), Candidate("s1", "t", "/rec.wav", segment), Candidate("v", "t", "/v.wav")]
    probed = {
        "/u.wav": Unreadable("file_missing", "/u.wav: no such file"),
        "/rec.wav": Unreadable("unreadable_audio", "bad header"),
        "/v.wav": AudioInfo(16000, 16000, 1),
    }
    assert per_utterance(candidates, probed) == [
        Rejection("u", "file_missing", "/u.wav: no such file"),
        Rejection("s1", "unreadable_audio", "recording rec: bad header"),
        AudioInfo(16000, 16000, 1),
    ]


@pytest.mark.parametrize(
    ("seconds", "text_length", "reason"),
    [(0.0, 1, "zero_length"), (0.1, 1, "too_short"), (3.5, 1, "too_long"), (1.0, 6, "too_many_tokens"), (1.0, 5, None)],
)
def test_check_limits(seconds: float, text_length: int, reason: str | None) -> None:
    candidate = Candidate("k", "text", "/k.wav")
    outcome = check(candidate, AudioInfo(round(seconds * 16000), 16000, 1), text_length, limits())
    if reason is None:
        assert outcome == KeptUtterance("k", "text", "/k.wav", text_length, AudioInfo(16000, 16000, 1))
    else:
        assert isinstance(outcome, Rejection) and outcome.reason == reason and outcome.key == "k"


def test_check_passes_a_probe_rejection_through() -> None:
    rejection = Rejection("k", "file_missing", "gone")
    assert check(Candidate("k", "t", "/k.wav"), rejection, 1, limits()) is rejection


def test_segment_extent_snaps_clips_and_rejects() -> None:
    recording = AudioInfo(22050 * 3, 22050, 2)  # 3 s at 22.05 kHz: 48000 samples at 16 kHz
    snapped = segment_extent("s", Segment(1, "s", "r", 0.10003, 1.0), recording)
    assert isinstance(snapped, Segment) and snapped.start_s * 16000 == 1600 and snapped.end_s == 1.0
    to_end = segment_extent("s", Segment(1, "s", "r", 2.0, -1), recording)
    assert isinstance(to_end, Segment) and to_end.end_s == 3.0
    overshoot = segment_extent("s", Segment(1, "s", "r", 2.0, 3.4), recording)  # Kaldi truncates < 0.5 s over
    assert isinstance(overshoot, Segment) and overshoot.end_s == 3.0
    for start, end in ((2.0, 3.6), (3.0, 3.2)):
        outside = segment_extent("s", Segment(1, "s", "r", start, end), recording)
        assert isinstance(outside, Rejection) and outside.reason == "bad_segment" and "recording r (3.000 s)" in outside.detail


def test_check_of_a_segment_gives_its_16k_mono_extent() -> None:
    candidate = Candidate("s", "t", "/rec.wav", Segment(1, "s", "rec", 0.5, 1.5))
    outcome = check(candidate, AudioInfo(8000 * 2, 8000, 2), 1, limits())
    assert isinstance(outcome, KeptUtterance)
    assert outcome.info == AudioInfo(16000, 16000, 1) and outcome.segment == Segment(1, "s", "rec", 0.5, 1.5)


def test_audio_warnings_count_candidates_a_limit_then_rejects() -> None:
    candidates = [
        Candidate("a", "t", "/a"),
        Candidate("b", "t", "/b"),
        Candidate("c", "t", "/c"),
        Candidate("d", "t", "/d"),
        Candidate("s", "t", "/r", Segment(1, "s", "r", 0, 1)),
    ]
    probed = [AudioInfo(8000 * 60, 8000, 1), AudioInfo(100, 44100, 2), AudioInfo(0, 8000, 2), Rejection("d", "file_missing", ""), AudioInfo(8000, 8000, 2)]
    assert audio_warnings(candidates, probed) == {"resampled": ["a", "b"], "downmixed": ["b"]}


def test_cut_recording_writes_keeps_finished_files_and_reports_unreadable(tmp_path) -> None:
    recording = write_wav(tmp_path / "rec.wav", 2.0, sample_rate=8000, channels=2)
    targets = [str(tmp_path / "s1.wav"), str(tmp_path / "s2.wav")]
    job = SegmentJob(str(recording), [(0, 8000, targets[0]), (16000, 40000, targets[1])], 5.0, 0)
    assert cut_recording(job) == [8000, 16000]  # the second is clipped at the recording's end
    info = soundfile.info(targets[0])
    assert (info.frames, info.samplerate, info.channels, info.subtype) == (8000, 16000, 1, "PCM_16")
    before = Path(targets[0]).stat().st_mtime_ns
    recording.unlink()  # finished files need no recording
    assert cut_recording(SegmentJob(str(recording), [(0, 8000, targets[0])], 5.0, 0)) == [8000]
    assert Path(targets[0]).stat().st_mtime_ns == before
    missing = cut_recording(SegmentJob(str(recording), [(0, 8000, targets[0]), (0, 100, str(tmp_path / "s3.wav"))], 5.0, 0))
    assert missing[0] == 8000 and isinstance(missing[1], Unreadable) and missing[1].reason == "file_missing"
    assert not [name for name in Path(tmp_path).iterdir() if "tmp" in name.name]


def test_split_follows_the_key_hash_and_keeps_order() -> None:
    utterances = [kept(f"k{index}", 1.0) for index in range(200)]
    sides = split(utterances, 0.25, seed=7)
    assert [u.key for u in sides.validation] == [u.key for u in utterances if is_validation(u.key, 0.25, 7)]
    assert [u.key for u in sides.train] == [u.key for u in utterances if not is_validation(u.key, 0.25, 7)]
    assert 25 <= len(sides.validation) <= 75
    assert split(utterances, 0.0).validation == [] and split(utterances, 0.0).train == utterances
    assert is_validation("k1", 0.25, 7) == is_validation("k1", 0.25, 7) and not is_validation("k1", 0.0)


def test_partition_and_rejection_tsv_line() -> None:
    rejection = Rejection("key\twith tab", "bad_line", "line one\nline two\tend")
    assert partition([1, rejection, 2]) == ([1, 2], [rejection])
    assert rejection.tsv_line() == "key with tab\tbad_line\tline one line two end"


def test_summary_counts_hours_and_percentiles() -> None:
    utterances = [kept(f"k{index}", seconds, text_length=index) for index, seconds in enumerate([1.0, 2.0, 3.0, 4.0])]
    sides = split(utterances, 0.0)
    rejections = [Rejection("x", "too_long", ""), Rejection("y", "bad_line", ""), Rejection("z", "too_long", "")]
    warned = {"resampled": [f"r{index}" for index in range(7)], "downmixed": [], "repeated_line": ["k0"]}
    summary = summarize(7, utterances, sides, rejections, warned, {"p": 4}, RunFacts({"rejects": "r.tsv"}, "tok", 2, 1.0, 0.5))
    assert summary.rejected == {"bad_line": 1, "too_long": 2}  # in the order REJECT_REASONS lists them
    assert summary.kept + summary.rejected_total == summary.total_keys == 7
    assert summary.warnings == {"resampled": 7, "repeated_line": 1}
    assert summary.warning_examples["resampled"] == ["r0", "r1", "r2", "r3", "r4"]
    assert summary.hours == pytest.approx(10 / 3600) and summary.train_hours == summary.hours
    assert summary.duration_s == Percentiles(1.0, 2.0, 4.0, 4.0)
    assert summary.recommended_profile == "small-data"
    assert summary.reject_fraction > 0.4 and summary.to_json()["rejected_total"] == 3
    assert Percentiles.of([]) is None
