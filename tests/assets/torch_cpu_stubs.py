#!/usr/bin/env python3
"""Turn PyPI's CUDA build of torch (linux x86_64) into a small CPU-only install.

PyPI serves no CPU-only torch for linux x86_64: its wheel links every torch
library against CUDA. libtorch_cpu.so, libc10_cuda.so and
libtorch_global_deps.so only need libcudart and libcupti, which are small
(nvidia-cuda-runtime-cu12 and nvidia-cuda-cupti-cu12 are installed for real),
but libtorch.so and libtorch_python.so also load libtorch_cuda.so (1 GiB),
which pulls in cuDNN, cuBLAS, NCCL, cuFFT, cuSPARSE(Lt), cuRAND, cuFile and
NVSHMEM (about 3 GiB more).

This script deletes libtorch_cuda.so and the other CUDA-only libraries, and
builds stub shared objects that define just the symbols the remaining
libraries import from them. Every stub function aborts with a message naming
itself; none is reached on the CPU path: torch.cuda.is_available() goes
through the real libc10_cuda/libcudart and answers False, and no CUDA kernel
is registered because the real libtorch_cuda.so never loads.

Usage: torch_cpu_stubs.py SITE_PACKAGES_DIR   (needs gcc, nm, readelf)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Libraries that only serve the CUDA backend. libtorch_cuda.so is replaced by
# a stub; the others are only needed by it (or dlopen()ed for CUDA work).
REMOVED = ("libtorch_cuda.so", "libtorch_cuda_linalg.so", "libtorch_nvshmem.so", "libcaffe2_nvrtc.so")
STUB_MARKER = "attune_cuda_stub_called"
CLASS_TYPE_INFO_VTABLE = "_ZTVN10__cxxabiv117__class_type_infoE"
SYSTEM_DIR = Path("/lib/x86_64-linux-gnu")
# Stubs that torch calls while importing, on the CPU path too.
CALLED_AT_IMPORT = {
    # c10d::get_gil_checker(): returns a reference to a function-pointer slot.
    "_ZN4c10d15get_gil_checkerEv": "static void *slot; return &slot;",
}
SYSTEM_LIBS = [SYSTEM_DIR / n for n in ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1")]


@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str  # "func" or "object"
    size: int


def run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def needed(lib: Path) -> list[str]:
    out = run(["readelf", "-d", str(lib)])
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def defined(lib: Path) -> dict[str, Symbol]:
    syms: dict[str, Symbol] = {}
    for line in run(["nm", "-D", "-S", "--defined-only", str(lib)]).splitlines():
        parts = line.split()
        if len(parts) == 4:
            _, size, kind, name = parts
        elif len(parts) == 3:
            _, kind, name = parts
            size = "0"
        else:
            continue
        is_object = kind in "BbDdRrVv"
        syms[name.split("@")[0]] = Symbol(name.split("@")[0], "object" if is_object else "func", int(size, 16))
    return syms


def undefined(lib: Path) -> list[tuple[str, str]]:
    """(name, version) of each strong undefined dynamic symbol; version may be ''."""
    result = []
    for line in run(["nm", "-D", "--undefined-only", str(lib)]).splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[0] != "U":
            continue
        name, _, version = parts[1].partition("@")
        result.append((name, version.lstrip("@")))
    return result


def c_source(symbols: list[Symbol]) -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stdlib.h>",
        f"static void {STUB_MARKER}(const char *name) {{",
        '  fprintf(stderr, "attune: CPU-only torch: CUDA stub %s called\\n", name);',
        "  abort();",
        "}",
    ]
    for i, sym in enumerate(sorted(symbols, key=lambda s: s.name)):
        if sym.name.startswith("_ZTI"):
            # typeinfo: pybind11 hashes typeid(T).name() of CUDA classes when
            # it registers their (unused) bindings, so give it a real one.
            lines.append(f"extern char {CLASS_TYPE_INFO_VTABLE}[];")
            lines.append(
                f'__attribute__((weak)) const void *obj_{i}[3] __asm__("{sym.name}") = '
                f'{{ {CLASS_TYPE_INFO_VTABLE} + 16, "{sym.name[4:]}", 0 }};'
            )
        elif sym.kind == "object":
            size = max(sym.size, 8)
            lines.append(f'__attribute__((weak, aligned(16))) char obj_{i}[{size}] __asm__("{sym.name}");')
        elif sym.name in CALLED_AT_IMPORT:
            lines.append(f'void *fn_{i}(void) __asm__("{sym.name}");')
            lines.append(f"void *fn_{i}(void) {{ {CALLED_AT_IMPORT[sym.name]} }}")
        else:
            lines.append(f'void fn_{i}(void) __asm__("{sym.name}");')
            lines.append(f'void fn_{i}(void) {{ {STUB_MARKER}("{sym.name}"); }}')
    return "\n".join(lines) + "\n"


def build_stub(out: Path, soname: str, symbols: list[Symbol], version: str, work: Path) -> None:
    src = work / f"{soname}.c"
    src.write_text(c_source(symbols))
    cmd = ["gcc", "-shared", "-fPIC", "-O0", "-w", f"-Wl,-soname,{soname}", "-o", str(out), str(src), "-lstdc++"]
    if version:
        script = work / f"{soname}.map"
        script.write_text(f"{version} {{ global: *; }};\n")
        cmd.insert(-1, f"-Wl,--version-script={script}")
    subprocess.run(cmd, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site_packages", type=Path)
    args = parser.parse_args()
    lib_dir: Path = args.site_packages / "torch" / "lib"
    nvidia_libs = sorted((args.site_packages / "nvidia").glob("*/lib/*.so*"))

    if not (lib_dir / "libtorch_cuda.so").exists() or list(lib_dir.glob("libcudnn*")):
        sys.exit(f"{lib_dir} is not a fresh torch install: reinstall the torch wheel before stubbing")
    removed_syms: dict[str, Symbol] = {}
    for name in REMOVED:
        removed_syms.update(defined(lib_dir / name))

    kept = [p for p in sorted(lib_dir.glob("*.so*")) if p.name not in REMOVED]
    kept += sorted(args.site_packages.joinpath("torch").glob("_C*.so"))
    provided: set[str] = set()
    for lib in kept + nvidia_libs:
        provided.update(defined(lib))
    libpython = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME")
    for lib in [*SYSTEM_LIBS, libpython, Path(sys.executable).resolve()]:
        if lib.exists():
            provided.update(defined(lib))
    present = {p.name for p in kept + nvidia_libs}

    # Group what the kept libraries import but nobody kept (nor the system C
    # and C++ runtime) provides by the library that must provide it: versioned
    # references name their library (cudnnGetVersion@libcudnn.so.9), the
    # unversioned ones (from the removed libraries, cuFile, cuSPARSELt) all go
    # into the libtorch_cuda.so stub, which every importer loads.
    by_lib: dict[str, dict[str, Symbol]] = {"libtorch_cuda.so": {}}
    missing_needed: set[str] = set()
    for lib in kept:
        missing_needed.update(n for n in needed(lib) if n not in present)
        for name, version in undefined(lib):
            if name in provided:
                continue
            if version.startswith("lib") and ".so" in version:
                by_lib.setdefault(version, {})[name] = Symbol(name, "func", 0)
            elif not version:
                by_lib["libtorch_cuda.so"][name] = removed_syms.get(name, Symbol(name, "func", 0))

    for name in REMOVED:
        (lib_dir / name).unlink(missing_ok=True)

    # Sonames still listed as NEEDED but shipped by a CUDA package we skip.
    for soname in sorted(missing_needed):
        if soname in by_lib or (SYSTEM_DIR / soname).exists():
            continue
        by_lib[soname] = {}

    with tempfile.TemporaryDirectory() as tmp:
        for soname, syms in sorted(by_lib.items()):
            version = "" if soname == "libtorch_cuda.so" else soname
            build_stub(lib_dir / soname, soname, list(syms.values()), version if syms else "", Path(tmp))
            print(f"stub {soname}: {len(syms)} symbols")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
