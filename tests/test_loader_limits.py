"""The loader is the gate for sizes, aliases, numbers and control characters: errors with positions, never a crash."""

from __future__ import annotations

import os
import threading
import time

import pytest
from click.testing import CliRunner

from costplan.cli.app import main
from costplan.plan.source import MAX_FILE_BYTES, load_yaml_file, load_yaml_text
from tests.conftest import patched_minimal


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def checks(text: str) -> list[tuple[int, int, str, str]]:
    loaded = load_yaml_text(text, "p.yaml")
    return [(d.line, d.column, d.pointer, d.check_id) for d in loaded.diagnostics]


def test_a_billion_laughs_is_refused_quickly():
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    began = time.monotonic()
    loaded = load_yaml_text("\n".join(lines) + "\n", "bomb.yaml")
    assert time.monotonic() - began < 5
    assert loaded.data is None
    [problem] = loaded.diagnostics
    assert problem.check_id == "yaml-syntax" and "YAML bomb" in problem.message


def test_ordinary_aliases_and_merge_keys_still_work():
    text = "base: &b {x: 1, y: 2}\nitems:\n" + "".join(f"  - {{<<: *b, n: {i}}}\n" for i in range(500))
    loaded = load_yaml_text(text, "p.yaml")
    assert loaded.diagnostics == [] and loaded.data["items"][499] == {"x": 1, "y": 2, "n": 499}


def test_a_fifo_and_a_device_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    results = []
    thread = threading.Thread(target=lambda: results.append(load_yaml_file(fifo)), daemon=True)
    thread.start()
    thread.join(5)
    assert results, "reading a FIFO must not block"
    assert "not a regular file" in results[0].diagnostics[0].message
    result = run("validate", "-f", "/dev/zero")
    assert result.exit_code == 3 and "not a regular file" in result.stderr


def test_a_huge_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    [problem] = load_yaml_file(big).diagnostics
    assert "larger than 32 MiB" in problem.message


@pytest.mark.parametrize(
    "value, message",
    [
        ("1.0e+309", "out of range"),
        ("1.0e+999999999", "out of range"),
        ("10000000000000000", "out of range"),
        (".nan", "not a finite number"),
        (".inf", "not a finite number"),
        ("-.inf", "not a finite number"),
        ("1:30.5", "base-60"),
        ("1:30", "read as the base-60 number 90"),
        ("010", "read as the octal number 8"),
        ("1.00000000000000000000000000001", "significant digits"),
    ],
)
def test_numbers_that_cannot_be_plan_numbers_are_errors_at_their_position(value, message):
    loaded = load_yaml_text(f"a:\n  b: [1, {value}]\n", "p.yaml")
    [problem] = loaded.diagnostics
    assert (problem.line, problem.column, problem.pointer, problem.check_id) == (2, 10, "/a/b/1", "number")
    assert message in problem.message


def test_ordinary_numbers_and_quoted_forms_pass():
    assert checks('a: [0, 8, 10, 0.5, 1e3, -2, 0x1F, "010", "1:30", 999999999999999]\n') == []


@pytest.mark.parametrize("place", ["thresholds", "price", "factor"])
def test_validate_and_build_agree_on_bad_numbers(tmp_path, place):
    patches = {
        "thresholds": ("[80, 100]", "[80, .inf]"),
        "price": ("price: 0.002", "price: 1.0e+309"),
        "factor": ("priceMultiplier: 0.8", "priceMultiplier: .nan"),
    }
    plan = tmp_path / "costplan.yaml"
    plan.write_text(patched_minimal(patches[place]))
    for command in ("validate", "build"):
        result = run(command, "-f", str(plan))
        assert result.exit_code == 3, (command, result.output)
        assert "[number]" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    "text, where",
    [
        ('"team\\nname": 1\n', (1, 1, "/team\\nname")),
        ('"a\\x1b[31m": 1\n', (1, 1, "/a\\x1b[31m")),
        ('a: "x\\x7fy"\n', (1, 4, "/a")),
        ('a: "x\\x85y"\n', (1, 4, "/a")),
        ('a: "x\\u2028y"\n', (1, 4, "/a")),
    ],
)
def test_control_characters_in_keys_and_values_are_errors(text, where):
    [(line, column, found_pointer, check)] = checks(text)
    assert check == "control-character"
    assert (line, column) == where[:2]


def test_a_key_with_a_line_break_cannot_forge_a_diagnostic_or_an_annotation(tmp_path):
    plan = tmp_path / "costplan.yaml"
    forged = "x\\ncostplan.yaml:1:1: /: all good [schema]\\n::error file=a::forged\\n\\x1b[2J"
    plan.write_text(patched_minimal(("  currency: USD\n", f'  currency: USD\n  "{forged}": 1\n')))
    result = run("validate", "-f", str(plan))
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert not any(line.startswith(("::error", "costplan.yaml:1:1: /: all good")) for line in lines)
    assert "\x1b" not in result.stderr
