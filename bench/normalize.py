"""Benchmark `speechft normalize` against the upstream Fun-ASR normaliser.

    .venv/bin/python bench/normalize.py                       # speechft only
    .venv/bin/python bench/normalize.py --upstream /path/to/Fun-ASR/tools \\
        --upstream-python /path/to/venv/bin/python              # both, output compared

The input is generated deterministically (same seed, same lines): Chinese with dates, money,
percentages, phone numbers and decimals, traditional characters, English with contractions,
currencies and spelled numbers, mixed zh/en, and some empty texts. Numbers are drawn at random so
that most lines are distinct, as in a real transcript file.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHINESE_TEMPLATES = [
    "今天是{year}年{month}月{day}日",
    "我花了{money}元买了{small}个苹果",
    "这个月的销售额增长了{percent}%",
    "请拨打电话{mobile}联系我们",
    "办公室电话是{landline}",
    "他跑了{decimal}公里",
    "会议在下午{hour}点{minute}分开始",
    "一共有{big}名学生参加了考试",
    "價格上漲了{small}倍，大家都覺得很貴",
    "我們明天去臺灣旅遊",
    "他今年{age}岁了",
    "两千三百五十块钱",
    "百分之二十的人同意",
    "三点一四一五九是圆周率",
    "第{small}届运动会在{year}年举行",
    "编号{code}的包裹已经送达",
    "温度是零下{small}度",
    "一百八十个人排队",
    "他说：“你好！”然后走了。",
    "比分是{small}比{small2}",
]
ENGLISH_TEMPLATES = [
    "I don't have ${money} right now",
    "She bought twenty five apples for {small} dollars",
    "It's {decimal} percent higher than last year",
    "Mr Smith's car cost £{big}",
    "We'll meet at {hour}:{minute} tomorrow",
    "The 1990s were a great decade",
    "They can't come on the {small}th of May",
    "one hundred and twenty three people were there",
    "He won't pay €{money}, that's too much!",
    "Let's go to the colour show at {hour} pm",
    "My number is {mobile}",
    "Dr Brown said it's about {big} miles away",
    "I'm gonna need about a thousand and a half of those",
    "Hmm, we've got {small} cats and two dogs.",
]
MIXED_TEMPLATES = [
    "我们用 Python 写了{big}行代码",
    "今天的 meeting 推迟到{hour}点",
    "这个 app 有{big}个用户",
    "请把 PPT 发给我，谢谢",
    "他在 Google 工作了{small}年",
    "iPhone {small} 的价格是{money}元",
    "我觉得 this is not a good idea",
    "下载速度是{decimal} MB/s",
    "帮我订一张 {month}月{day}日 去 New York 的机票",
    "( 笑声 ) 好的 = 没问题",
]


def _fill(template: str, generator: random.Random) -> str:
    return template.format(
        year=generator.randint(1950, 2030),
        month=generator.randint(1, 12),
        day=generator.randint(1, 28),
        money=generator.choice([str(generator.randint(1, 9999)), f"{generator.randint(1, 999)}.{generator.randint(0, 99):02d}"]),
        small=generator.randint(1, 30),
        small2=generator.randint(0, 30),
        percent=generator.choice([str(generator.randint(1, 99)), f"{generator.randint(1, 99)}.{generator.randint(1, 9)}"]),
        mobile=f"1{generator.choice('3578')}{generator.randint(0, 9)}{generator.randint(10000000, 99999999)}",
        landline=f"010-{generator.randint(20000000, 89999999)}",
        decimal=f"{generator.randint(0, 99)}.{generator.randint(1, 99)}",
        hour=generator.randint(1, 12),
        minute=generator.randint(10, 59),
        big=generator.randint(100, 99999),
        age=generator.randint(3, 99),
        code=generator.randint(1000, 99999999),
    )


def generate_lines(count: int, seed: int = 20251) -> list[str]:
    """`count` lines of `key text`, the same for the same seed."""
    generator = random.Random(seed)
    lines = []
    for index in range(count):
        roll = generator.random()
        if roll < 0.02:
            text = ""
        elif roll < 0.55:
            parts = [_fill(generator.choice(CHINESE_TEMPLATES), generator) for _ in range(generator.randint(1, 3))]
            text = generator.choice(["，", "。", "", " "]).join(parts)
        elif roll < 0.8:
            parts = [_fill(generator.choice(ENGLISH_TEMPLATES), generator) for _ in range(generator.randint(1, 2))]
            text = ". ".join(parts)
        else:
            parts = [_fill(generator.choice(MIXED_TEMPLATES), generator) for _ in range(generator.randint(1, 2))]
            text = "，".join(parts)
        lines.append(f"utt{index:07d} {text}".rstrip())
    return lines


def _time_speechft(source: Path, target: Path) -> float:
    from speechft.text.normalize import normalize_file

    started = time.perf_counter()
    normalize_file(source, target)
    return time.perf_counter() - started


def _time_upstream(python: str, tools: Path, source: Path, target: Path) -> float:
    script = tools / "whisper_mix_normalize.py"
    if not script.is_file():
        script = tools / "tools" / "whisper_mix_normalize.py"
    if not script.is_file():
        raise SystemExit(f"{tools}: no whisper_mix_normalize.py here or under tools/")
    started = time.perf_counter()
    subprocess.run([python, str(script), str(source), str(target)], check=True, cwd=script.parent)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="how many lines to generate")
    parser.add_argument("--seed", type=int, default=20251)
    parser.add_argument("--upstream", type=Path, help="a Fun-ASR checkout or its tools/ directory")
    parser.add_argument("--upstream-python", default=sys.executable, help="python with the upstream's dependencies")
    parser.add_argument("--keep", type=Path, help="write the input and outputs into this directory")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = arguments.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / "input.txt"
        source.write_text("\n".join(generate_lines(arguments.lines, arguments.seed)) + "\n", encoding="utf-8")
        ours = folder / "speechft.txt"
        speechft_s = _time_speechft(source, ours)
        print(f"lines:    {arguments.lines}")
        print(f"speechft: {speechft_s:.2f} s")
        if arguments.upstream is None:
            return
        theirs = folder / "upstream.txt"
        upstream_s = _time_upstream(arguments.upstream_python, arguments.upstream.resolve(), source, theirs)
        print(f"upstream: {upstream_s:.2f} s")
        print(f"ratio:    {upstream_s / speechft_s:.1f}x faster")
        our_lines = ours.read_text(encoding="utf-8").splitlines()
        their_lines = theirs.read_text(encoding="utf-8").splitlines()
        differing = [index for index, (a, b) in enumerate(zip(our_lines, their_lines)) if a != b]
        if len(our_lines) != len(their_lines) or differing:
            print(f"output:   DIFFERENT ({len(differing)} lines differ; {len(our_lines)} vs {len(their_lines)} lines)")
            for index in differing[:5]:
                print(f"  speechft: {our_lines[index]}\n  upstream: {their_lines[index]}")
            raise SystemExit(1)
        print("output:   identical")


if __name__ == "__main__":
    main()
