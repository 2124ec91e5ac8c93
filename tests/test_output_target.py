"""``build -o``: costplan replaces only output it wrote itself, and never loses anyone's files."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli.app import main
from costplan.output import serialise as output
from tests.conftest import MINIMAL


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under ``directory`` with its bytes (None for directories)."""
    return {
        str(p.relative_to(directory)): (None if p.is_dir() else p.read_bytes()) for p in sorted(directory.rglob("*"))
    }


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A user's repository: the plan, two overlays, a README and a .git directory."""
    root = tmp_path / "repo"
    (root / "environments").mkdir(parents=True)
    shutil.copy(MINIMAL, root / "costplan.yaml")
    (root / "environments" / "dev.yaml").write_text("metadata:\n  cluster: dev\n")
    (root / "environments" / "prod.yaml").write_text("metadata:\n  cluster: prod\n")
    (root / "README.md").write_text("our notes\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def build(repo: Path, *args: str):
    return run("build", "-f", str(repo / "costplan.yaml"), *args)


@pytest.mark.parametrize(
    "target, env_args",
    [
        (".", ["--all-envs"]),  # the repository root
        ("environments", ["--all-envs"]),  # the overlays
        ("..", ["--all-envs"]),  # the directory that holds the repository
        ("/", ["--all-envs"]),
    ],
)
def test_build_refuses_to_replace_the_plan_its_overlays_or_their_parents(repo, monkeypatch, target, env_args):
    monkeypatch.chdir(repo)
    before = snapshot(repo.parent)
    result = build(repo, *env_args, "-o", target)
    assert result.exit_code == 2, result.output
    assert "refusing" in result.stderr and "Traceback" not in result.output
    assert snapshot(repo.parent) == before, "not one byte may change"


def test_build_refuses_a_directory_with_a_foreign_file_and_leaves_it_alone(repo):
    out = repo / "out"
    (out / "prod").mkdir(parents=True)
    (out / "prod" / "mine.txt").write_text("my own notes\n")
    before = snapshot(repo)
    result = build(repo, "--env", "prod", "-o", str(out))
    assert result.exit_code == 2
    assert "did not write" in result.stderr
    assert snapshot(repo) == before
    result = build(repo, "--all-envs", "-o", str(out))
    assert result.exit_code == 2
    assert snapshot(repo) == before


def test_build_refuses_a_directory_with_a_git_repository_even_if_marked(repo):
    out = repo / "out"
    out.mkdir()
    (out / output.OUTPUT_MARKER).write_text(output.MARKER_TEXT)
    (out / ".git").mkdir()
    result = build(repo, "--all-envs", "-o", str(out))
    assert result.exit_code == 2 and ".git" in result.stderr


def test_build_replaces_its_own_output_new_or_empty_directories(repo):
    out = repo / "out"
    out.mkdir()  # empty: allowed
    assert build(repo, "--all-envs", "-o", str(out)).exit_code == 0
    assert (out / output.OUTPUT_MARKER).is_file() and (out / "prod" / output.OUTPUT_MARKER).is_file()
    (out / "prod" / "stale.yaml").write_text("old\n")
    assert build(repo, "--all-envs", "-o", str(out)).exit_code == 0, "a marked tree is replaced"
    assert not (out / "prod" / "stale.yaml").exists()
    # one environment into a marked environment directory of an all-environments tree
    assert build(repo, "--env", "dev", "-o", str(out)).exit_code == 0
    # one-environment builds into a fresh directory, then all environments over them
    single = repo / "single"
    assert build(repo, "--env", "dev", "-o", str(single)).exit_code == 0
    assert build(repo, "--env", "prod", "-o", str(single)).exit_code == 0
    assert sorted(p.name for p in single.iterdir()) == ["dev", "prod"]
    assert build(repo, "--all-envs", "-o", str(single)).exit_code == 0
    assert not [p for p in repo.iterdir() if ".costplan-" in p.name or ".old" in p.name]


def test_a_file_in_place_of_the_output_directory_is_refused(repo):
    (repo / "out").write_text("a file\n")
    result = build(repo, "--all-envs", "-o", str(repo / "out"))
    assert result.exit_code == 2 and (repo / "out").read_text() == "a file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_unwritable_parent_is_a_clear_error_with_nothing_left_behind(repo):
    parent = repo / "readonly"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = build(repo, "--all-envs", "-o", str(parent / "out"))
    finally:
        parent.chmod(stat.S_IRWXU)
    assert result.exit_code == 2
    assert "cannot write the build output" in result.stderr and "Traceback" not in result.output
    assert list(parent.iterdir()) == []


def test_write_tree_swaps_without_a_moment_of_missing_output(tmp_path):
    target = tmp_path / "out"
    output.write_tree({"a.yaml": "1\n"}, target)
    seen_missing = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not (target / "a.yaml").exists():
                seen_missing.append(True)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for round_ in range(30):
            output.write_tree({"a.yaml": f"{round_}\n"}, target)
    finally:
        stop.set()
        thread.join()
    assert not seen_missing, "readers always find a complete tree"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_two_builds_at_once_both_finish_with_one_complete_tree(tmp_path):
    target = tmp_path / "out"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(10):
                output.write_tree({f"f{i}.yaml": f"{n}\n" for i in range(20)}, target)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    contents = {p.read_text() for p in target.glob("f*.yaml")}
    assert len(contents) == 1, "one build's tree, never a mix"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_in_the_parent_path_is_a_clear_error(repo):
    (repo / "blocker").write_text("a file\n")
    result = build(repo, "--all-envs", "-o", str(repo / "blocker" / "out"))
    assert result.exit_code == 2
    assert "cannot write the build output" in result.stderr and "Traceback" not in result.output
    assert (repo / "blocker").read_text() == "a file\n"
