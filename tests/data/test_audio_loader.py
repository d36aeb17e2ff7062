"""The one audio loader: FFmpeg (PyAV) fallback formats, headerless raw PCM, the URL cache in
training, the speech_length check and decode's memory bound."""

from __future__ import annotations

import collections
import contextlib
import fractions
import functools
import http.server
import json
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from speech_fixtures import chatml_line, make_corpus, write_jsonl, write_tone

from speechft.data import audio, containers, remote
from speechft.data.audio import AudioError, load_audio, read_file_info, read_info

av = pytest.importorskip("av")

TONE_HZ = 440.0


def encode(path: Path, codec: str, container: str, rate: int, seconds: float, *, channels: int = 1, video: bool = False) -> Path:
    """A 440 Hz tone encoded by FFmpeg (through PyAV), optionally beside a small video stream."""
    try:
        av.codec.Codec(codec, "w")
    except av.codec.codec.UnknownCodecError:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    count = int(seconds * rate)
    wave = (0.3 * np.sin(2 * np.pi * TONE_HZ * np.arange(count) / rate)).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout)
        stream.bit_rate = 64000
        pictures = None
        if video:
            pictures = output.add_stream("mpeg4", rate=10)
            pictures.width, pictures.height, pictures.pix_fmt = 64, 48, "yuv420p"
        converter = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        size = stream.codec_context.frame_size or 1024
        for start in range(0, count, size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.tile(wave[start : start + size], (channels, 1))), format="fltp", layout=layout)
            frame.rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
            for converted in converter.resample(frame):
                output.mux(stream.encode(converted))
        output.mux(stream.encode(None))
        if pictures is not None:
            for index in range(int(seconds * 10)):
                picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 20 % 255, dtype=np.uint8), format="rgb24")
                picture.pts = index
                output.mux(pictures.encode(picture))
            output.mux(pictures.encode(None))
    return path


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum)) * audio.MODEL_SAMPLE_RATE / len(samples)


@contextlib.contextmanager
def counting_server(directory: Path) -> Iterator[tuple[str, collections.Counter]]:
    """A loopback HTTP server for `directory` that counts GET requests per path."""
    counts: collections.Counter = collections.Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            counts[self.path] += 1
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- formats libsndfile refuses ----------------------------------------------------------------

FALLBACK_FORMATS = [
    # name, codec, container, rate, channels, video
    ("tone.m4a", "aac", "ipod", 16000, 1, False),
    ("tone.amr", "libopencore_amrnb", "amr", 8000, 1, False),
    ("tone.wma", "wmav2", "asf", 22050, 2, False),
    ("clip.mp4", "aac", "mp4", 44100, 2, True),
]


@pytest.mark.parametrize("name, codec, container, rate, channels, video", FALLBACK_FORMATS, ids=[f[0] for f in FALLBACK_FORMATS])
def test_formats_libsndfile_refuses_are_read_through_ffmpeg(
    tmp_path: Path, name: str, codec: str, container: str, rate: int, channels: int, video: bool
) -> None:
    path = encode(tmp_path / name, codec, container, rate, 1.5, channels=channels, video=video)
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.info(path)  # so the fallback is what reads it
    info = read_file_info(str(path))
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert abs(info.duration_s - 1.5) < 0.05  # codec framing adds or trims a few milliseconds
    samples = load_audio(str(path))
    assert samples.dtype == np.float32 and samples.ndim == 1
    # Loading yields exactly the length the header read promised, so prep's speech_length holds.
    assert abs(len(samples) - info.frames * audio.MODEL_SAMPLE_RATE / rate) <= 1
    assert abs(dominant_hz(samples) - TONE_HZ) < 5
    assert 0.12 < float(np.sqrt(np.mean(samples**2))) < 0.3  # a 0.3-amplitude sine has RMS 0.21
    assert abs(audio.probe_seconds(str(path)) - 1.5) < 0.1


def test_fallback_formats_over_urls_with_and_without_cache(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    encode(served / "tone.m4a", "aac", "ipod", 16000, 1.0)
    with counting_server(served) as (base, counts):
        url = f"{base}/tone.m4a"
        assert read_info(url) == read_file_info(str(served / "tone.m4a"))
        assert len(load_audio(url)) == 16000
        cache = tmp_path / "cache"
        assert len(load_audio(url, cache_dir=cache)) == 16000
        assert read_info(url, cache_dir=cache).frames == 16000
        assert counts["/tone.m4a"] == 3  # the uncached reads twice, the cached one once
        (cached,) = cache.iterdir()
        assert cached.suffix == ".m4a" and cached.read_bytes() == (served / "tone.m4a").read_bytes()


def test_headerless_raw_pcm_is_rejected_saying_what_it_is(tmp_path: Path) -> None:
    raw = tmp_path / "speech.raw"
    raw.write_bytes((np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes())
    for attempt in (read_file_info, load_audio, read_info):
        with pytest.raises(AudioError) as caught:
            attempt(str(raw))
        assert caught.value.reason == audio.UNREADABLE_AUDIO
        assert "headerless raw PCM" in caught.value.detail and "convert it to WAV/FLAC with its sample rate" in caught.value.detail
    with counting_server(tmp_path) as (base, _), pytest.raises(AudioError, match="headerless raw PCM"):
        load_audio(f"{base}/speech.raw")
    assert audio.probe_seconds(str(raw)) is None


def test_garbage_names_both_decoders(tmp_path: Path) -> None:
    junk = tmp_path / "junk.m4a"
    junk.write_bytes(b"\x00\x01 definitely not audio " * 40)
    with pytest.raises(AudioError) as caught:
        load_audio(str(junk))
    assert caught.value.reason == audio.UNREADABLE_AUDIO
    assert "libsndfile" in caught.value.detail and "FFmpeg" in caught.value.detail


def test_plain_formats_never_reach_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("FFmpeg used for a format libsndfile reads")

    monkeypatch.setattr(containers, "decode", refuse)
    monkeypatch.setattr(containers, "declared_seconds", refuse)
    wav = write_tone(tmp_path / "a.wav", 0.5, 300.0, sample_rate=8000, channels=2)
    flac = tmp_path / "a.flac"
    soundfile.write(flac, np.zeros(4000, dtype=np.float32), 8000, format="FLAC")
    for path in (wav, flac):
        assert read_file_info(str(path)).frames == 4000
        assert len(load_audio(str(path))) == 8000
        assert audio.probe_seconds(str(path)) == 0.5


# --- the URL cache -----------------------------------------------------------------------------


def test_url_cache_downloads_once_and_is_written_whole(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    write_tone(served / "a.wav", 2.0, 300.0)
    cache = tmp_path / "cache"
    with counting_server(served) as (base, counts):
        url = f"{base}/a.wav"
        results: list[str | bytes] = []
        threads = [threading.Thread(target=lambda: results.append(remote.fetch_cached(url, cache))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        downloads = counts["/a.wav"]
        assert 1 <= downloads <= 6
        assert set(results) == {remote.url_cache_path(url, cache)}
        assert [p.name for p in cache.iterdir()] == [Path(remote.url_cache_path(url, cache)).name]  # no temporary files left
        assert Path(results[0]).read_bytes() == (served / "a.wav").read_bytes()
        for _ in range(3):
            load_audio(url, cache_dir=cache)
        assert counts["/a.wav"] == downloads
        # A cache that cannot be written costs a download each time, never the sample.
        blocked = tmp_path / "not-a-directory"
        blocked.write_text("x")
        assert len(load_audio(url, cache_dir=blocked)) == 32000
        assert counts["/a.wav"] == downloads + 1


# --- training: URLs through the cache, speech_length checked ------------------------------------


def test_dataset_reads_urls_through_the_cache_and_checks_speech_length(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.data.dataset import Sample, SpeechDataset
    from speechft.data.manifest import Skip, read_manifest
    from speechft.model.build import load_model

    bundle = load_model(tiny_dir)
    served = tmp_path / "served"
    lines = make_corpus(served, 2)
    with counting_server(served) as (base, counts):
        urls = []
        for line in lines:
            system, user, assistant = line["messages"]
            urls.append(dict(line, messages=[system, {"role": "user", "content": user["content"].replace(str(served), base)}, assistant]))
        stale = dict(urls[1], key="stale", speech_length=urls[1]["speech_length"] + 40)
        close = dict(urls[1], key="close", speech_length=urls[1]["speech_length"] + 2)
        utterances, skipped = read_manifest(write_jsonl(tmp_path / "train.jsonl", [*urls, stale, close]))
        assert not skipped
        uncached = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend)
        assert isinstance(uncached[0], Sample) and isinstance(uncached[0], Sample)
        assert counts["/utt0.wav"] == 2
        dataset = SpeechDataset(utterances, bundle.tokenizer, bundle.frontend, url_cache_dir=tmp_path / "cache")
        for _ in range(3):
            items = [dataset[index] for index in range(len(dataset))]
        # utt0: two uncached reads and one download into the cache; utt1 (three lines use it): one download.
        assert counts["/utt0.wav"] == 3 and counts["/utt1.wav"] == 1
    assert [type(item).__name__ for item in items] == ["Sample", "Sample", "Skip", "Sample"]
    skip = items[2]
    assert isinstance(skip, Skip) and skip.key == "stale"
    frames = urls[1]["speech_length"]
    assert f"{frames} fbank frames" in skip.reason and f"speech_length says {frames + 40}" in skip.reason
    assert "speechft prep" in skip.reason


def test_missing_speech_length_is_read_from_a_fallback_format(tmp_path: Path) -> None:
    from speechft.data.manifest import read_manifest

    clip = encode(tmp_path / "clip.m4a", "aac", "ipod", 16000, 1.0)
    line = chatml_line("clip", clip, "one")
    utterances, skipped = read_manifest(write_jsonl(tmp_path / "train.jsonl", [line]))
    assert not skipped and utterances[0].speech_frames == audio.fbank_frames_of(16000) == 98


@pytest.mark.slow
def test_training_from_a_url_manifest_downloads_each_file_once(tiny_dir: Path, tmp_path: Path) -> None:
    from speechft.data.manifest import TrainSource
    from speechft.profiles import profiles_dir
    from speechft.train.config import load_config
    from speechft.train.loop import run_training
    from speechft.train.run_dir import TrainRequest

    served = tmp_path / "served"
    lines = make_corpus(served, 6)
    with counting_server(served) as (base, counts):
        for line in lines:
            line["messages"][1]["content"] = line["messages"][1]["content"].replace(str(served), base)
        train = write_jsonl(tmp_path / "train.jsonl", lines)
        config = load_config(
            profiles_dir() / "small-data.yaml",
            ["data.num_workers=0", "max_epochs=2", "data.token_budget=400", "data.max_utterances_per_batch=3", "validation.every_steps=0"],
        )
        output = tmp_path / "run"
        result = run_training(TrainRequest(model_dir=tiny_dir, train=(TrainSource(train),), output_dir=output, config=config, show_progress=False))
        requests = dict(counts)
    assert result.steps > 0
    skipped = (output / "skipped.jsonl").read_text(encoding="utf-8") if (output / "skipped.jsonl").exists() else ""
    assert "audio unreadable" not in skipped
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert max(r.get("epoch", 0) for r in records) >= 1  # a second epoch ran (epochs count from 0)
    # Every file was downloaded exactly once over both epochs and validation.
    assert requests == {f"/utt{index}.wav": 1 for index in range(6)}
    assert len(list((output / "audio-cache").iterdir())) == 6


# --- decode: memory bounded by seconds of audio ----------------------------------------------------


class AliveSeconds:
    """Counts the seconds of loaded waveforms still alive in memory (weak references)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alive = 0.0
        self.peak = 0.0

    def load(self, location: str) -> np.ndarray:
        samples = np.array(load_audio(location), copy=True)
        seconds = len(samples) / audio.MODEL_SAMPLE_RATE
        with self.lock:
            self.alive += seconds
            self.peak = max(self.peak, self.alive)
        weakref.finalize(samples, self._gone, seconds)
        return samples

    def _gone(self, seconds: float) -> None:
        with self.lock:
            self.alive -= seconds


class SlowTranscriber:
    def __init__(self, meter: AliveSeconds) -> None:
        self.meter = meter
        self.seen_alive: list[float] = []

    def transcribe(self, waveforms, prompts):
        self.seen_alive.append(self.meter.alive)
        time.sleep(0.02)  # let the loaders run ahead as far as they are allowed
        return [str(len(w)) for w in waveforms]


@pytest.mark.parametrize("over_http", [False, True], ids=["files", "urls"])
def test_decode_holds_at_most_the_budget_plus_one_item(tmp_path: Path, over_http: bool) -> None:
    from speechft.decode.inputs import DecodeItem
    from speechft.decode.run import DecodeOptions, decode_items, read_finished

    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    rng = np.random.default_rng(0)
    lengths = [float(s) for s in rng.integers(20, 70, size=14)] + [150.0]  # one recording longer than the budget
    for index, seconds in enumerate(lengths):
        samples = (rng.standard_normal(int(seconds * 8000)) * 3000).astype(np.int16)
        soundfile.write(audio_dir / f"r{index:02d}.wav", samples, 8000, subtype="PCM_16")
    budget = 120.0
    meter = AliveSeconds()
    transcriber = SlowTranscriber(meter)
    options = DecodeOptions(batch_size=2, chunk_batches=4, load_workers=4, max_seconds_in_flight=budget)
    with counting_server(audio_dir) as (base, _):
        prefix = base if over_http else str(audio_dir)
        items = [DecodeItem(f"r{index:02d}", f"{prefix}/r{index:02d}.wav", "") for index in range(len(lengths))]
        summary = decode_items(items, transcriber, tmp_path / "hyp.txt", meter.load, options)
    assert summary.decoded == len(lengths) and not summary.errors
    assert len(read_finished(tmp_path / "hyp.txt")) == len(lengths)
    bound = budget + max(lengths) + 0.01
    assert meter.peak <= bound and max(transcriber.seen_alive) <= bound
    assert summary.peak_seconds_in_flight <= bound
    assert meter.peak > 60  # loading ran ahead of the model, within the budget
    assert meter.alive == pytest.approx(0.0, abs=1e-6)  # every waveform was let go


def test_decode_budget_must_be_positive(tmp_path: Path) -> None:
    from speechft.decode.run import DecodeOptions, decode_items
    from speechft.errors import UsageError

    with pytest.raises(UsageError, match="max-seconds-in-flight"):
        decode_items([], SlowTranscriber(AliveSeconds()), tmp_path / "hyp.txt", load_audio, DecodeOptions(max_seconds_in_flight=0))


def test_stereo_and_other_rates_are_converted(tmp_path: Path) -> None:
    stereo = write_tone(tmp_path / "s.wav", 0.5, 300.0, channels=2)
    assert load_audio(str(stereo)).ndim == 1
    slow = write_tone(tmp_path / "r.wav", 0.5, 300.0, sample_rate=8000)
    assert len(load_audio(str(slow))) == 8000
