"""Header reads agree with soundfile; load_audio gives mono float32 at 16 kHz; URLs via a local server."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from prep_fixtures import serve_directory, write_wav

from speechft.data import audio
from speechft.data.audio import AudioError, AudioInfo, load_audio, read_file_info, read_info


@pytest.mark.parametrize("sample_rate", [8000, 16000, 44100])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "PCM_U8", "ULAW"])
def test_header_matches_soundfile(tmp_path, sample_rate: int, channels: int, subtype: str) -> None:
    path = tmp_path / "a.wav"
    soundfile.write(path, np.zeros((1234, channels), dtype=np.float32), sample_rate, subtype=subtype)
    reference = soundfile.info(path)
    assert read_file_info(str(path)) == AudioInfo(reference.frames, reference.samplerate, reference.channels)


def test_truncated_data_counts_what_is_there(tmp_path) -> None:
    full = write_wav(tmp_path / "full.wav", 1.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:10044])  # 44-byte header + 5000 samples
    assert read_file_info(str(cut)).frames == soundfile.info(cut).frames == 5000


def test_corrupt_and_missing(tmp_path) -> None:
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(write_wav(tmp_path / "x.wav", 0.1).read_bytes()[:30])
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 8)
    for path in (header_only, junk):
        with pytest.raises(AudioError) as caught:
            read_file_info(str(path))
        assert caught.value.reason == audio.UNREADABLE_AUDIO
    with pytest.raises(AudioError) as caught:
        read_file_info(str(tmp_path / "absent.wav"))
    assert caught.value.reason == audio.FILE_MISSING


def test_fbank_frames_are_exact() -> None:
    # 16080 samples = 1005 ms exactly: 1 + (16080 - 400) // 160 = 99 frames (upstream's float says 98).
    assert AudioInfo(16080, 16000, 1).fbank_frames == 99
    for samples in range(400, 5000, 37):
        assert AudioInfo(samples, 16000, 1).fbank_frames == 1 + (samples - 400) // 160


def test_load_audio_downmixes_and_resamples(tmp_path) -> None:
    stereo = tmp_path / "stereo.wav"
    left = np.full(800, 0.5, dtype=np.float32)
    soundfile.write(stereo, np.stack([left, -left], axis=1) + 0.25, 16000, subtype="FLOAT")
    mono = load_audio(str(stereo))
    assert mono.dtype == np.float32 and mono.ndim == 1 and len(mono) == 800
    assert np.allclose(mono, 0.25)
    low = write_wav(tmp_path / "low.wav", 0.5, sample_rate=8000, channels=2)
    resampled = load_audio(str(low))
    assert resampled.dtype == np.float32 and resampled.shape == (8000,)


def test_url_info_and_errors(tmp_path) -> None:
    write_wav(tmp_path / "a.wav", 1.5, sample_rate=8000)
    with serve_directory(tmp_path) as base:
        assert read_info(f"{base}/a.wav") == AudioInfo(12000, 8000, 1)
        assert load_audio(f"{base}/a.wav").shape == (24000,)
        with pytest.raises(AudioError) as caught:
            read_info(f"{base}/absent.wav", retries=0)
        assert caught.value.reason == audio.URL_UNREACHABLE and "404" in str(caught.value)
        port = base.rsplit(":", 1)[1]
    with pytest.raises(AudioError) as caught:
        read_info(f"http://127.0.0.1:{port}/a.wav", retries=1, timeout_s=2)
    assert caught.value.reason == audio.URL_UNREACHABLE and "2 attempts" in str(caught.value)
