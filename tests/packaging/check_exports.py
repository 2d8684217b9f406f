#!/usr/bin/env python3
"""Checks that libtrackevent.so exports its API and nothing else.

usage: check_exports.py LIBTRACKEVENT_SO INCLUDE_DIR   (INCLUDE_DIR: lib/include/trackevent)

Every dynamic symbol the library defines must be either
  - a C function declared TRACKEVENT_API in trackevent.h, or
  - a C++ symbol of namespace trackevent (a function, or the typeinfo or vtable of a class) whose
    first name after trackevent:: is declared in a public C++ header, and that is not internal
    (detail::, log::, an anonymous namespace, a class's Impl).
Every C function of trackevent.h and the Tracker's members must be exported. Exit 1 listing the
offenders otherwise.
"""
import pathlib
import re
import subprocess
import sys


def exported(library):
    out = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                         capture_output=True, text=True).stdout
    mangled = [line.split()[-1] for line in out.splitlines() if line.strip()]
    demangled = subprocess.run(["c++filt"], input="\n".join(mangled), check=True,
                               capture_output=True, text=True).stdout.splitlines()
    return list(zip(mangled, demangled))


INTERNAL = re.compile(r"trackevent::(detail|log)::|\(anonymous namespace\)|::Impl\b")
CXX_NAME = re.compile(r"^(?:typeinfo for |typeinfo name for |vtable for )?trackevent::(\w+)")


def main():
    library, include_dir = sys.argv[1], pathlib.Path(sys.argv[2])
    c_header = (include_dir / "trackevent.h").read_text()
    c_api = set(re.findall(r"TRACKEVENT_API\b[^;(]*?\b(trackevent_\w+)\s*\(", c_header))
    cxx_headers = "\n".join(p.read_text() for p in sorted(include_dir.glob("*.hpp")))
    public_names = set(re.findall(r"\b\w+\b", cxx_headers))

    symbols = exported(library)
    bad = []
    for mangled, name in symbols:
        if not mangled.startswith("_Z"):
            if mangled not in c_api:
                bad.append(f"{name}: not a TRACKEVENT_API function of trackevent.h")
            continue
        match = CXX_NAME.match(name)
        if match is None:
            bad.append(f"{name}: not in namespace trackevent")
        elif INTERNAL.search(name):
            bad.append(f"{name}: internal")
        elif match.group(1) not in public_names:
            bad.append(f"{name}: {match.group(1)} is not declared in a public header")

    names = {name for _, name in symbols}
    missing = sorted(c_api - {m for m, _ in symbols})
    for required in ("trackevent::Tracker::Tracker(", "trackevent::Tracker::track(",
                     "trackevent::Tracker::close(", "trackevent::TrackerOptions::from_env()"):
        if not any(n.startswith(required) for n in names):
            missing.append(required)

    for line in bad:
        print(f"exported but not API: {line}")
    for line in missing:
        print(f"API not exported: {line}")
    if bad or missing:
        return 1
    print(f"check_exports: {len(symbols)} symbols, all API ({len(c_api)} C functions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
