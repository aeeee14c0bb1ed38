#!/usr/bin/env python3
"""Point the ROS wheels' CMake export files at this interpreter's include folders.

The ROS 2 wheels are built in a manylinux container whose Python lives under
``/opt/python/cp311-cp311``.  Their ``*_rosidl_generator_pyExport.cmake`` files name
that interpreter's include folder and numpy's include folder, and CMake refuses an
imported target whose include folder does not exist.  This script rewrites those
paths, in every ``<prefix>/share/*/cmake/*.cmake`` and ``<prefix>/lib/cmake/**/*.cmake``
file, to the include folders of the interpreter that runs it (``sysconfig`` and
``numpy.get_include()``).  It needs no root and creates nothing under ``/opt``.

Run it with the virtual environment's python; it is idempotent.

Usage: python fix_cmake_exports.py [PREFIX]   (PREFIX defaults to sys.prefix)
"""

import re
import sys
import sysconfig
from pathlib import Path

# Include folder of the build machine's interpreter, e.g. /opt/python/cp311-cp311/include/python3.11
PY_INCLUDE_RE = re.compile(r"/opt/python/cp3\d+-cp3\d+t?/include/python3\.\d+t?")
# numpy's include folder under that interpreter (numpy 1.x: numpy/core/include, 2.x: numpy/_core/include)
NUMPY_INCLUDE_RE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+t?/lib/python3\.\d+t?/site-packages/numpy/_?core/include"
)


def cmake_files(prefix: Path):
    """Yield the CMake files that the wheels installed under ``prefix``."""
    yield from prefix.glob("share/*/cmake/*.cmake")
    lib_cmake = prefix / "lib" / "cmake"
    if lib_cmake.is_dir():
        yield from lib_cmake.rglob("*.cmake")


def main(argv):
    prefix = Path(argv[1] if len(argv) > 1 else sys.prefix).resolve()
    py_include = sysconfig.get_paths()["include"]
    try:
        import numpy
    except ImportError:
        print("fix_cmake_exports: numpy is not installed in this interpreter", file=sys.stderr)
        return 1
    np_include = numpy.get_include()
    for folder in (py_include, np_include):
        if not Path(folder).is_dir():
            print(f"fix_cmake_exports: include folder {folder} does not exist", file=sys.stderr)
            return 1

    changed = 0
    leftovers = []
    for path in sorted(set(cmake_files(prefix))):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "/opt/python/" not in text:
            continue
        new = NUMPY_INCLUDE_RE.sub(lambda _m: np_include, text)
        new = PY_INCLUDE_RE.sub(lambda _m: py_include, new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
        if "/opt/python/" in new:
            leftovers.append(path)

    print(
        f"fix_cmake_exports: rewrote {changed} file(s) under {prefix} "
        f"(python include {py_include}, numpy include {np_include})"
    )
    for path in leftovers:
        print(f"fix_cmake_exports: warning: {path} still names /opt/python", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
