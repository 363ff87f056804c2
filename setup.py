"""Build the native extension. io_uring is driven by raw syscalls, so nothing
beyond a C compiler, the Python headers and the kernel UAPI headers is needed."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "ringline._core",
        ["src/ringline/_core.pyx"],
        include_dirs=["src/ringline"],
        extra_compile_args=["-O2", "-fno-strict-aliasing"],
    ),
    Extension(
        "ringline.memcache._speedups",
        ["src/ringline/memcache/_speedups.pyx"],
        extra_compile_args=["-O2"],
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
