"""Augmentation: deterministic per (seed, epoch, utterance), never applied to plain-index items
(validation, decoding), lengths the sampler can plan with, noise files checked once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from speech_fixtures import make_corpus, write_jsonl, write_tone

torch = pytest.importorskip("torch")

from speechft.data import augment  # noqa: E402
from speechft.data.augment import Augmentation, SpeedLengths, perturb_speed, perturbed_length, scan_noise_dir, speed_choices  # noqa: E402

EVERYTHING = dict(speed_factors=(0.9, 1.0, 1.1), gain_db=(-6.0, 6.0), noise_probability=1.0, freq_masks=2, freq_mask_width=10, time_masks=2, time_mask_width=5)


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(3)
    import soundfile as sf

    sf.write(root / "babble.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    (root / "sub").mkdir()
    write_tone(root / "sub" / "hum.flac", 0.3, 50.0, seed=1)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "README.txt").write_text("not audio\n", encoding="utf-8")
    return root


def waveform(seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.2 * np.sin(np.arange(int(16000 * seconds)) / 7.0) + 0.01 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)


def test_the_same_seed_epoch_and_utterance_give_the_same_sample_and_another_epoch_another(noise_dir: Path) -> None:
    files = scan_noise_dir(noise_dir).usable
    augmentation = Augmentation(seed=5, noise_files=files, **EVERYTHING)
    first = augmentation.waveform(waveform(), 3, 17)
    augment._noise_cache.clear()  # a fresh loader process has an empty cache
    assert np.array_equal(first, augmentation.waveform(waveform(), 3, 17))
    others = [augmentation.waveform(waveform(), epoch, 17) for epoch in range(4, 10)]
    assert any(len(o) != len(first) or not np.array_equal(o, first) for o in others)
    assert not np.array_equal(Augmentation(seed=6, noise_files=files, **EVERYTHING).waveform(waveform(), 3, 17)[: len(first)], first)
    features = torch.randn(50, 560)
    assert torch.equal(augmentation.features(features, 3, 17), augmentation.features(features, 3, 17))
    assert not torch.equal(augmentation.features(features, 3, 17), augmentation.features(features, 4, 17))


def test_speed_perturbation_changes_the_length_as_the_sampler_plans_it() -> None:
    samples = waveform(2.0)
    for factor in (0.9, 1.1):
        out = perturb_speed(samples, factor)
        assert len(out) == perturbed_length(len(samples), factor)
        assert abs(len(out) - len(samples) / factor) <= 1
    frames = np.array([198, 298, 498])
    lengths = SpeedLengths(frames, np.array([5, 6, 7]), (0.9, 1.0, 1.1), seed=1)
    for epoch in range(3):
        choice = speed_choices(1, epoch, np.arange(3), 3)
        expected = np.ceil(frames / np.array([0.9, 1.0, 1.1])[choice]).astype(int) + [5, 6, 7]
        assert lengths(epoch).tolist() == expected.tolist()
    # Over many utterances each factor is drawn about equally often, and epochs draw differently.
    draws = speed_choices(1, 0, np.arange(30000), 3)
    assert np.allclose(np.bincount(draws) / 30000, 1 / 3, atol=0.02)
    assert (draws != speed_choices(1, 1, np.arange(30000), 3)).mean() > 0.5


def test_spec_augment_masks_the_same_mel_bins_in_every_stacked_frame_with_the_mean() -> None:
    features = torch.arange(40 * 560, dtype=torch.float32).reshape(40, 560) + 1.0
    fill = float(features.mean())
    masked = Augmentation(seed=0, freq_masks=1, freq_mask_width=20, time_masks=0, time_mask_width=0).features(features, 0, 0)
    stacked = (masked == fill).view(40, 7, 80)
    columns = stacked.all(dim=0)  # masked bins are masked in every frame
    assert columns.any()
    assert all(torch.equal(columns[0], columns[block]) for block in range(7))
    timed = Augmentation(seed=0, time_masks=1, time_mask_width=100, freq_masks=0).features(features, 0, 1)
    rows = (timed == fill).all(dim=1)
    assert rows.sum() <= 40 * 0.2  # never more than a fifth of the utterance
    assert torch.equal(features, torch.arange(40 * 560, dtype=torch.float32).reshape(40, 560) + 1.0)  # input untouched


def test_noise_is_added_at_the_drawn_snr() -> None:
    rng = np.random.default_rng(0)
    clean = waveform(1.0)
    noise = (0.5 * rng.standard_normal(4000)).astype(np.float32)
    augment._noise_cache["n.wav"] = noise
    try:
        noisy = augment.add_noise(clean, ["n.wav"], np.random.default_rng(1), (10.0, 10.0))
    finally:
        augment._noise_cache.clear()
    added = noisy - clean
    snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.01)


def test_noise_dir_scan_reports_unreadable_files_once_and_skips_non_audio(noise_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speechft.train.config import load_config
    from speechft.train.corpus import augmentation_for

    scan = scan_noise_dir(noise_dir)
    assert [Path(p).name for p in scan.usable] == ["babble.wav", "hum.flac"]
    assert [Path(p).name for p, _ in scan.unreadable] == ["broken.wav"]
    config = load_config(None, [f"augment.noise_dir={noise_dir}"])
    augmentation = augmentation_for(config)
    assert augmentation.noise_files == scan.usable
    err = capsys.readouterr().err
    assert err.count("cannot be read") == 1 and "1 of 3 noise files cannot be read" in " ".join(err.split()) and "broken.wav" in err
    augmentation_for(config, announce=False)  # other ranks: silent
    assert "broken.wav" not in capsys.readouterr().err


def test_a_noise_dir_without_usable_audio_is_an_error_naming_the_key(tmp_path: Path) -> None:
    from speechft.errors import ConfigError
    from speechft.train.config import load_config
    from speechft.train.corpus import augmentation_for

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="augment.noise_dir: .* holds no readable audio"):
        augmentation_for(load_config(None, [f"augment.noise_dir={tmp_path / 'empty'}"]))
    with pytest.raises(ConfigError, match="augment.noise_dir: .* is not a directory"):
        augmentation_for(load_config(None, [f"augment.noise_dir={tmp_path / 'missing'}"]))


def test_the_dataset_augments_epoch_tagged_items_only_and_the_same_in_every_loader_worker(tiny_dir: Path, tmp_path: Path, noise_dir: Path) -> None:
    from speechft.data.collate import make_loader
    from speechft.data.dataset import SpeechDataset
    from speechft.data.manifest import read_manifest
    from speechft.data.sampler import TokenBatchSampler
    from speechft.model.build import build_frontend, load_model

    bundle = load_model(tiny_dir)
    utterances, _ = read_manifest(write_jsonl(tmp_path / "t.jsonl", make_corpus(tmp_path / "wav", 6)), bundle.tokenizer)
    augmentation = Augmentation(seed=1, noise_files=scan_noise_dir(noise_dir).usable, **EVERYTHING)
    frontend = build_frontend(bundle.config, dither=0.0)
    plain = SpeechDataset(utterances, bundle.tokenizer, frontend)
    augmented = SpeechDataset(utterances, bundle.tokenizer, frontend, augmentation=augmentation)
    # A plain index (validation, the dry run) is never augmented.
    assert torch.equal(augmented[2].features, plain[2].features)
    assert not torch.equal(augmented[(0, 2)].features[:5], plain[2].features[:5])

    def epoch_features(workers: int) -> dict[str, torch.Tensor]:
        sampler = TokenBatchSampler([u.batch_tokens for u in utterances], token_budget=100000, max_utterances=2, seed=3)
        sampler.set_epoch(1)
        loader = make_loader(augmented, sampler, workers, torch.Generator().manual_seed(workers), seed=3)
        return {key: sample.features for batch in loader for key, sample in zip(batch.keys, batch.samples)}

    in_process, two_workers = epoch_features(0), epoch_features(2)
    assert in_process.keys() == two_workers.keys() and len(in_process) == 6
    assert all(torch.equal(in_process[key], two_workers[key]) for key in in_process)
