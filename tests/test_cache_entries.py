"""The result cache never ships an entry it cannot vouch for: damaged, swapped, linked or
planted entries are deleted and the run goes on cold with one warning; cache directories that
are not private to the user are not used."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from hatch_wizer import WizenOptions, wizen
from hatch_wizer.cache.store import ResultCache
from tests.harness import observe, wasm_of

WAT = """(module
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "wizer-initialize") (global.set $g (i32.const 42))))"""
OTHER = WAT.replace("42", "7")
# A user that the tests' files can be given to (as root; chown needs it).
STRANGER = 4242


def cache_root() -> Path:
    return Path(os.environ["HATCH_WIZER_CACHE_DIR"])


def wizened(wat: str) -> tuple[bytes, list[str]]:
    lines: list[str] = []
    out = wizen(wasm_of(wat), WizenOptions(), report=lines.append)
    ResultCache.wait_for_writers()
    return out, lines


def entry_of(wat: str) -> Path:
    """The entry that a cold run of `wat` leaves in the cache."""
    before = set((cache_root() / "results").glob("*.wasm"))
    wizened(wat)
    [entry] = set((cache_root() / "results").glob("*.wasm")) - before
    return entry


def ran_init(lines: list[str]) -> bool:
    return any(line.startswith("init:") for line in lines)


def warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("warning:")]


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")


def emptied(entry: Path, tmp: Path) -> None:
    entry.write_bytes(b"")


def truncated(entry: Path, tmp: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-3])


def garbage(entry: Path, tmp: Path) -> None:
    entry.write_bytes(os.urandom(1000))


def bit_flipped(entry: Path, tmp: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[-1] ^= 1
    entry.write_bytes(bytes(data))


def another_modules_output(entry: Path, tmp: Path) -> None:
    shutil.copyfile(entry_of(OTHER), entry)


def symlink_to_another_file(entry: Path, tmp: Path) -> None:
    (tmp / "secret").write_bytes(b"root:secret\n")
    entry.unlink()
    entry.symlink_to(tmp / "secret")


def symlink_to_a_good_copy(entry: Path, tmp: Path) -> None:
    shutil.copyfile(entry, tmp / "copy")
    (tmp / "copy").chmod(0o600)
    entry.unlink()
    entry.symlink_to(tmp / "copy")


def a_fifo(entry: Path, tmp: Path) -> None:
    entry.unlink()
    os.mkfifo(entry)


def writable_by_others(entry: Path, tmp: Path) -> None:
    entry.chmod(0o666)


def foreign_owner(entry: Path, tmp: Path) -> None:
    needs_root()
    os.chown(entry, STRANGER, STRANGER)


@pytest.mark.parametrize(
    "spoil",
    [
        emptied,
        truncated,
        garbage,
        bit_flipped,
        another_modules_output,
        symlink_to_another_file,
        symlink_to_a_good_copy,
        a_fifo,
        writable_by_others,
        foreign_owner,
    ],
)
def test_a_bad_entry_is_deleted_and_the_run_goes_on_cold(
    spoil: Callable[[Path, Path], None], tmp_path: Path
) -> None:
    good, _ = wizened(WAT)
    [entry] = (cache_root() / "results").glob("*.wasm")
    spoil(entry, tmp_path)
    out, lines = wizened(WAT)
    assert out == good
    assert observe(out, []).globals["g"] == 42
    assert ran_init(lines)
    [warning] = warnings(lines)
    assert "bad result cache entry" in warning and str(entry) in warning
    # The cold run stored a good entry again, which the next run reuses without a word.
    assert not entry.is_symlink() and stat.S_IMODE(entry.stat().st_mode) == 0o600
    again, lines = wizened(WAT)
    assert again == good and not ran_init(lines) and not warnings(lines)
    if spoil is symlink_to_another_file:
        assert (tmp_path / "secret").read_bytes() == b"root:secret\n"  # the link, not its target


def test_entries_and_directories_are_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HATCH_WIZER_CACHE_DIR", str(tmp_path / "new" / "cache"))
    os.umask(old := os.umask(0))  # the most permissive umask: modes are ours alone
    try:
        wizened(WAT)
    finally:
        os.umask(old)
    root = tmp_path / "new" / "cache"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "results").stat().st_mode) == 0o700
    [entry] = (root / "results").glob("*.wasm")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def others_may_write(root: Path) -> None:
    root.chmod(0o777)


def group_may_write_results(root: Path) -> None:
    (root / "results").chmod(0o770)


def results_is_a_symlink(root: Path) -> None:
    (root / "elsewhere").mkdir(mode=0o700)
    (root / "results").rmdir()
    (root / "results").symlink_to(root / "elsewhere")


def owned_by_another_user(root: Path) -> None:
    needs_root()
    os.chown(root, STRANGER, STRANGER)


@pytest.mark.parametrize(
    "share", [others_may_write, group_may_write_results, results_is_a_symlink, owned_by_another_user]
)
def test_a_cache_directory_not_private_to_the_user_is_not_used(
    share: Callable[[Path], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shared"
    (root / "results").mkdir(mode=0o700, parents=True)
    root.chmod(0o700)
    monkeypatch.setenv("HATCH_WIZER_CACHE_DIR", str(root))
    share(root)
    for _ in range(2):  # neither read nor written
        out, lines = wizened(WAT)
        assert observe(out, []).globals["g"] == 42
        assert ran_init(lines)
        [warning] = warnings(lines)
        assert "result cache not used" in warning
    assert not list(root.rglob("*.wasm"))
