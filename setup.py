"""The optional compiled TFRecord scanner (src/watchrun/sources/_tfscan.c).

Everything else is declared in pyproject.toml. The extension is `optional`: without a C
compiler the install still succeeds and watchrun reads event files with its numpy path.
Build in place for a source checkout: `python setup.py build_ext --inplace`.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "watchrun.sources._tfscan",
            ["src/watchrun/sources/_tfscan.c"],
            extra_compile_args=["-O2", "-std=c99"],
            optional=True,
        )
    ]
)
