"""`keep_freed_memory`: which glibc settings it asks for, and that it changes nothing where it cannot."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys

import pytest

from msa_hf.inference import cpu_memory


class FakeMallopt:
    """Records its calls; takes ctypes' `argtypes`/`restype` like a foreign function."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1


class FakeLibc:
    def __init__(self) -> None:
        self.mallopt = FakeMallopt()


def test_it_asks_glibc_to_keep_large_freed_blocks(monkeypatch):
    fake = FakeLibc()
    monkeypatch.setattr(cpu_memory.sys, "platform", "linux")
    monkeypatch.setattr(cpu_memory.ctypes, "CDLL", lambda name: fake)
    assert cpu_memory.keep_freed_memory()
    # M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to 1 GiB, M_TOP_PAD to 256 MiB
    assert fake.mallopt.calls == [(-3, 1 << 30), (-1, 1 << 30), (-2, 256 << 20)]


def test_it_changes_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(cpu_memory.sys, "platform", "darwin")
    assert not cpu_memory.keep_freed_memory()
    monkeypatch.setattr(cpu_memory.sys, "platform", "linux")
    monkeypatch.setattr(cpu_memory.ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    assert not cpu_memory.keep_freed_memory()


@pytest.mark.slow
def test_it_applies_on_this_machine():
    if ctypes.util.find_library("c") is None:
        pytest.skip("no C library found")
    # in a child process: the setting is process-wide and would outlive this test
    code = "from msa_hf.inference.cpu_memory import keep_freed_memory; raise SystemExit(0 if keep_freed_memory() else 1)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
