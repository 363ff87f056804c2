"""Packaging, as a user gets it: the sdist carries every source a wheel is
built from, a wheel builds from that sdist in a fresh virtualenv, carries no
generated C and no debug info, installs, imports and runs a loop.

Slow (a full native build, about two minutes on a loaded 2-vCPU machine) but
part of the default run, so CI executes it. pip resolves the build
requirements (setuptools, Cython, wheel) through its configured index and
cache, as it would for a user."""
import os
import struct
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src", "ringline")
SOURCE_SUFFIXES = (".pyx", ".pxi", ".pxd", ".h", ".pyi")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(argv, **kw):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def _repo_sources():
    """Paths (relative to src/) of the native sources and stubs in the tree."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(SRC):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), os.path.dirname(SRC))
            if name.endswith(SOURCE_SUFFIXES) or os.sep + "csrc" + os.sep in rel:
                found.add(rel.replace(os.sep, "/"))
    return found


def _elf_section_names(data):
    """Section names of a 64-bit little-endian ELF file."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    strtab_off = header(shstrndx)[4]
    names = []
    for i in range(shnum):
        name_off = header(i)[0]
        end = data.index(b"\0", strtab_off + name_off)
        names.append(data[strtab_off + name_off:end].decode())
    return names


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    sdist_dir, wheel_dir = tmp / "sdist", tmp / "wheel"
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(sdist_dir), ROOT])
    (sdist,) = sdist_dir.glob("ringline-*.tar.gz")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    # the wheel is built from the sdist alone, in a venv that never saw the tree
    _run([py, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheel_dir),
          str(sdist)], cwd=str(tmp))
    (wheel,) = wheel_dir.glob("ringline-*.whl")
    _run([py, "-m", "pip", "install", "--no-deps", str(wheel)], cwd=str(tmp))
    return sdist, wheel, py, tmp


def test_sdist_has_every_source(built):
    sdist = built[0]
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    top = {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in"}
    assert top <= names, top - names
    expected = {"src/" + rel for rel in _repo_sources()}
    assert {"src/ringline/_core.pyx", "src/ringline/_c/ring.h",
            "src/ringline/bench/csrc/loadgen.c"} <= expected
    assert expected <= names, sorted(expected - names)
    generated = {"src/ringline/_core.c", "src/ringline/memcache/_speedups.c",
                 "src/ringline/redis/_scan.c", "src/ringline/kv/_fastresp.c",
                 "src/ringline/http/_h2frames.c"}
    assert not generated & names


def test_wheel_has_no_generated_c_and_stripped_objects(built):
    wheel = built[1]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        c_files = [n for n in names if n.endswith(".c")]
        assert c_files and all("/bench/csrc/" in n for n in c_files), c_files
        assert not [n for n in names if n.endswith((".pyx", ".pxi"))]
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
        stubs = [n for n in names if n.endswith(".pyi")]
        assert {"ringline/_core.pyi", "ringline/memcache/_speedups.pyi",
                "ringline/redis/_scan.pyi", "ringline/kv/_fastresp.pyi",
                "ringline/http/_h2frames.pyi"} <= set(stubs)
        assert "ringline/py.typed" in names
        objects = [n for n in names if n.endswith(".so")]
        assert len(objects) == 5, objects
        for name in objects:
            sections = _elf_section_names(zf.read(name))
            assert ".text" in sections
            debug = [s for s in sections if s.startswith(".debug") or s == ".symtab"]
            assert not debug, (name, debug)
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    text = metadata.decode()
    assert "License-Expression: Apache-2.0" in text
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in text


def test_installed_wheel_imports_and_runs_a_loop(built):
    py, tmp = built[2], built[3]
    code = ("import asyncio, ringline, ringline._core\n"
            "async def main():\n"
            "    await asyncio.sleep(0.01)\n"
            "    return 42\n"
            "assert ringline.run(main()) == 42\n"
            "print(ringline.__file__)\n")
    proc = _run([py, "-c", code], cwd=str(tmp), env={**os.environ, "PYTHONPATH": ""})
    assert proc.stdout.strip().startswith(str(tmp / "venv")), proc.stdout
