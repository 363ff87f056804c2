"""Build the native extensions. io_uring is driven by raw syscalls, so nothing
beyond a C compiler, the Python headers and the kernel UAPI headers is needed.

The shared objects are linked stripped (no debug info or symbol table: the
wheel stays small); RINGLINE_DEBUG_BUILD=1 keeps the symbols (and adds -g)
for perf, gdb and valgrind."""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

if os.environ.get("RINGLINE_DEBUG_BUILD"):
    compile_extra, link_extra = ["-g"], []
else:
    compile_extra, link_extra = [], ["-s"]

extensions = [
    Extension(
        "ringline._core",
        ["src/ringline/_core.pyx"],
        include_dirs=["src/ringline/_c"],
        extra_compile_args=["-O2", "-fno-strict-aliasing", *compile_extra],
        extra_link_args=link_extra,
    ),
    Extension(
        "ringline.redis._scan",
        ["src/ringline/redis/_scan.pyx"],
        extra_compile_args=["-O2", *compile_extra],
        extra_link_args=link_extra,
    ),
    Extension(
        "ringline.kv._fastresp",
        ["src/ringline/kv/_fastresp.pyx"],
        extra_compile_args=["-O2", *compile_extra],
        extra_link_args=link_extra,
    ),
    Extension(
        "ringline.http._h2frames",
        ["src/ringline/http/_h2frames.pyx"],
        extra_compile_args=["-O2", *compile_extra],
        extra_link_args=link_extra,
    ),
    Extension(
        "ringline.memcache._speedups",
        ["src/ringline/memcache/_speedups.pyx"],
        extra_compile_args=["-O2", *compile_extra],
        extra_link_args=link_extra,
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False,
                             "embedsignature": True},
    )
)
