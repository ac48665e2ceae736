"""The one C extension: the dataset validator's text scanner. Everything else is in pyproject.toml.

Optional: without a C compiler the install still succeeds and validation uses the
pure-Python fast layer (slower, same results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "infra.checks._textscan",
            sources=["infra/checks/_textscan.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
