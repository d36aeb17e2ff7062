"""`speechft normalize`: parity with Fun-ASR's whisper_mix_normalize.py, units and the CLI.

tests/data/normalize/expected.txt was written by the upstream script itself
(`python tools/whisper_mix_normalize.py corpus.txt expected.txt`, Fun-ASR at 45c8c96,
whisper-normalizer 0.1.15, zhconv 1.4.3).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechft.cli.app import app
from speechft.errors import InputError
from speechft.text.chinese import words_to_digits
from speechft.text.chinese_numbers import cardinal_words, digit_words
from speechft.text.normalize import normalize_file, normalize_text

DATA = Path(__file__).resolve().parents[1] / "data" / "normalize"
CORPUS = DATA / "corpus.txt"
EXPECTED = DATA / "expected.txt"

runner = CliRunner()


def test_corpus_is_large_and_varied() -> None:
    keys = [line.split(maxsplit=1)[0] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(keys) >= 200
    for prefix in ("zh_date", "zh_money", "zh_percent", "zh_phone", "zh_decimal", "zh_trad", "en_contract", "en_money", "en_number", "mixed", "empty"):
        assert any(key.startswith(prefix) for key in keys), prefix


def test_parity_with_upstream_on_whole_corpus(tmp_path: Path) -> None:
    output = tmp_path / "normalized.txt"
    written = normalize_file(CORPUS, output)
    expected = EXPECTED.read_text(encoding="utf-8").splitlines()
    actual = output.read_text(encoding="utf-8").splitlines()
    assert written == len(expected)
    mismatches = [(want, got) for want, got in zip(expected, actual) if want != got]
    assert not mismatches, mismatches[:5]
    assert len(actual) == len(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天是2023年5月1日，天气很好。", "今 天 是 2 0 2 3 年 5 月 1 日 天 气 很 好"),
        ("我花了35.5元", "我 花 了 3 5 点 5 元"),
        ("增长了15%", "增 长 了 百 分 之 1 5"),
        ("两千三百五十块钱", "2 3 5 0 块 钱"),
        ("我們明天去臺灣", "我 们 明 天 去 台 湾"),
        ("I don't have $20.", "i do not have 2 0"),
        ("twenty five apples", "2 5 apples"),
        ("The colour is grey", "the color is gray"),
        ("我们用 Python 写代码", "我 们 用 python 写 代 码"),
        ("P2P 平台", "p 2 p 平 台"),
        ("（笑声）好的=没问题", "笑 声 好 的 没 问 题"),
        ("", ""),
        ("   ", ""),
        ("，。！？", ""),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_number_words() -> None:
    assert cardinal_words("1205.5") == "一千两百零五点五"
    assert cardinal_words("15") == "十五"
    assert cardinal_words("2000") == "两千"
    assert cardinal_words("00.5") == "零点五"
    assert digit_words("2023") == "二零二三"
    assert words_to_digits("一百八十个") == "180个"
    assert words_to_digits("三十万千米") == "300000千米"


def test_keys_order_and_empty_text(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("b 你好\nkey_only\n\n   \na   Hello  World  \n", encoding="utf-8")
    target = tmp_path / "out.txt"
    assert normalize_file(source, target) == 3
    assert target.read_text(encoding="utf-8") == "b\t你 好\nkey_only\t\na\thello world\n"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes("a 好\nb ok\n".encode() + b"c \xc4\xe3\xba\xc3\n")
    with pytest.raises(InputError, match=r"in\.txt:3: invalid UTF-8"):
        normalize_file(source, tmp_path / "out.txt")


def test_byte_order_mark_is_not_part_of_the_key(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes("\ufeffa 好\n".encode())
    target = tmp_path / "out.txt"
    normalize_file(source, target)
    assert target.read_text(encoding="utf-8") == "a\t好\n"


def test_progress_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("".join(f"k{index} 第{index}行\n" for index in range(25)), encoding="utf-8")
    seen: list[int] = []
    normalize_file(source, tmp_path / "out.txt", on_progress=seen.append, progress_every=10)
    assert seen == [10, 20, 25]


def test_cli_stdin_to_stdout() -> None:
    result = runner.invoke(app, ["normalize", "-", "-"], input="a 今天是2023年\nb\nc It's $5\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "a\t今 天 是 2 0 2 3 年\nb\t\nc\tit is 5\n"


def test_cli_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    result = runner.invoke(app, ["normalize", str(CORPUS), str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == EXPECTED.read_text(encoding="utf-8")
    assert f"normalized {len(EXPECTED.read_text(encoding='utf-8').splitlines())} lines" in result.stderr


def test_cli_invalid_utf8_exits_1_with_line_number(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"a ok\nb \xff\n")
    result = runner.invoke(app, ["normalize", str(source), str(tmp_path / "out.txt")])
    assert result.exit_code == 1
    assert "in.txt:2: invalid UTF-8" in result.stderr


def test_cli_missing_input_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["normalize", str(tmp_path / "absent.txt"), "-"])
    assert result.exit_code == 1
    assert "file not found" in result.stderr


def test_cli_missing_argument_exits_2() -> None:
    result = runner.invoke(app, ["normalize", "-"])
    assert result.exit_code == 2


def test_cli_help_says_kana_is_absent() -> None:
    result = runner.invoke(app, ["normalize", "--help"])
    assert result.exit_code == 0
    assert "kana" in result.stdout and "not available" in result.stdout


def test_normalize_imports_no_heavy_packages() -> None:
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from speechft.cli.app import app\n"
        "result = CliRunner().invoke(app, ['normalize', '-', '-'], input='a 你好 world\\n')\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(name for name in ('torch', 'transformers', 'funasr') if name in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == ""
