"""Synthesise the example corpora with espeak-ng: Kaldi-style data dirs (wav.scp + text).

Domain A is what the bundled tiny model is trained on: English digit strings, short English
commands and Chinese digit strings, read by 75 voices (accent x variant) at ordinary speed and pitch.
A small domain-A replay set is bundled too. Domain B is the "new domain" a user fine-tunes on: the same kind of content read by voices and
accents domain A never heard, faster. Everything is seeded, so a rerun writes the same corpus.

Only this script needs espeak-ng and sox; the demo uses the files it wrote.

    python examples/make_corpus.py --out examples/data            # bundled sets (domain B, test sets)
    python examples/make_corpus.py --out /tmp/corpus --domain-a-train 6000   # also domain-A training data
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ENGLISH_DIGITS = "zero one two three four five six seven eight nine".split()
CHINESE_DIGITS = "零一二三四五六七八九"
VERBS = ["turn on", "turn off", "open", "close", "start", "stop", "check", "clean"]
OBJECTS = ["the light", "the door", "the music", "the window", "the fan", "the radio", "the oven", "the heater"]
PLACES = ["", "", "in the kitchen", "in the bedroom", "in the garage", "in the office", "upstairs"]

# (espeak voice, variant) pairs; the two domains share no accent and no variant. Domain A has many
# voices so that the model it trains generalises past them; domain B is a few it never heard.
DOMAIN_A_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "Mike", "john"]
DOMAIN_A_ENGLISH = [(accent, v) for accent in ("en-us", "en-gb", "en-gb-x-gbclan", "en-gb-x-gbcwmd") for v in DOMAIN_A_VARIANTS]
DOMAIN_A_CHINESE = [("cmn", v) for v in DOMAIN_A_VARIANTS]
DOMAIN_B_ENGLISH = [("en-029", "Alex"), ("en-gb-scotland", "Andy"), ("en-us-nyc", "Annie"), ("en-gb-x-rp", "klatt3")]
DOMAIN_B_CHINESE = [("cmn", "klatt2"), ("cmn", "Gene")]


@dataclass(frozen=True)
class Utterance:
    key: str
    spoken: str
    transcript: str
    voice: str
    speed: int
    pitch: int


# English digit strings are written with Arabic digits, commands and Chinese digit strings as
# spoken; the bundled model is trained on all of them with the normalising prompt `语音转写：`
# (prep --itn on), its language forms, and nothing else. Digit strings never start with 0, whose
# written form the normaliser would shorten.
def english_digits(rng: random.Random) -> tuple[str, str]:
    digits = [rng.randrange(1, 10)] + [rng.randrange(10) for _ in range(rng.randint(2, 5))]
    return " ".join(ENGLISH_DIGITS[d] for d in digits), "".join(str(d) for d in digits)


def english_command(rng: random.Random) -> tuple[str, str]:
    words = " ".join(w for w in (rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(PLACES)) if w)
    return words, words


def chinese_digits(rng: random.Random) -> tuple[str, str]:
    text = "".join(CHINESE_DIGITS[rng.randrange(1, 10)] + "".join(rng.choice(CHINESE_DIGITS) for _ in range(rng.randint(2, 5))))
    return text, text


def make_set(name: str, count: int, seed: int, english_voices, chinese_voices, speeds: tuple[int, int], pitches: tuple[int, int]) -> list[Utterance]:
    rng = random.Random(seed)
    result = []
    for index in range(count):
        kind = index % 3
        if kind == 2:
            spoken, transcript = chinese_digits(rng)
            language, variant = rng.choice(chinese_voices)
        else:
            spoken, transcript = (english_digits if kind == 0 else english_command)(rng)
            language, variant = rng.choice(english_voices)
        result.append(
            Utterance(
                key=f"{name}-{index:05d}",
                spoken=spoken,
                transcript=transcript,
                voice=f"{language}+{variant}",
                speed=rng.randint(*speeds),
                pitch=rng.randint(*pitches),
            )
        )
    return result


def synthesise(utterance: Utterance, path: Path) -> None:
    """espeak-ng to 16 kHz mono Ogg/Opus (small enough to bundle hundreds of utterances)."""
    speech = subprocess.run(
        ["espeak-ng", "-v", utterance.voice, "-s", str(utterance.speed), "-p", str(utterance.pitch), "--stdout", utterance.spoken],
        check=True,
        capture_output=True,
    ).stdout
    wav = path.with_suffix(".wav")
    # Peak-normalise to -3 dB before resampling so the resampler never clips.
    subprocess.run(
        ["sox", "-V1", "-t", "wav", "-", "-c", "1", "-b", "16", str(wav), "gain", "-n", "-3", "rate", "16000"],
        input=speech,
        check=True,
    )
    if path.suffix == ".wav":
        return
    import soundfile

    audio, rate = soundfile.read(wav, dtype="float32")
    soundfile.write(path, audio, rate, format="OGG", subtype="OPUS")
    wav.unlink()


def write_data_dir(directory: Path, utterances: list[Utterance], audio_format: str, jobs: int) -> None:
    audio_dir = directory / "audio"
    if directory.exists():
        shutil.rmtree(directory)
    audio_dir.mkdir(parents=True)
    paths = [audio_dir / f"{u.key}.{audio_format}" for u in utterances]
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(synthesise, utterances, paths))
    (directory / "wav.scp").write_text("".join(f"{u.key} {p}\n" for u, p in zip(utterances, paths)), encoding="utf-8")
    (directory / "text").write_text("".join(f"{u.key} {u.transcript}\n" for u in utterances), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("examples/data"))
    parser.add_argument("--domain-a-train", type=int, default=0, help="also write domain-a/train with this many utterances (wav)")
    parser.add_argument("--domain-b-train", type=int, default=720)
    parser.add_argument("--test", type=int, default=60, help="utterances in each test set")
    parser.add_argument("--replay", type=int, default=720, help="domain-A utterances bundled for replay during fine-tuning")
    parser.add_argument("--jobs", type=int, default=4)
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install espeak-ng sox")

    normal = dict(speeds=(140, 185), pitches=(30, 70))
    fast = dict(speeds=(200, 260), pitches=(20, 80))
    sets = {
        "domain-a/test": make_set("a-test", args.test, 2, DOMAIN_A_ENGLISH, DOMAIN_A_CHINESE, **normal),
        # Domain-A utterances to mix into a domain-B fine-tune so the model does not forget A.
        "domain-a/replay": make_set("a-replay", args.replay, 5, DOMAIN_A_ENGLISH, DOMAIN_A_CHINESE, **normal),
        "domain-b/train": make_set("b-train", args.domain_b_train, 3, DOMAIN_B_ENGLISH, DOMAIN_B_CHINESE, **fast),
        "domain-b/test": make_set("b-test", args.test, 4, DOMAIN_B_ENGLISH, DOMAIN_B_CHINESE, **fast),
    }
    if args.domain_a_train:
        sets["domain-a/train"] = make_set("a-train", args.domain_a_train, 1, DOMAIN_A_ENGLISH, DOMAIN_A_CHINESE, **normal)
    for name, utterances in sets.items():
        audio_format = "wav" if name == "domain-a/train" else "opus"
        write_data_dir(args.out / name, utterances, audio_format, args.jobs)
        print(f"{args.out / name}: {len(utterances)} utterances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
