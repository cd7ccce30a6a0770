#!/bin/sh
# Rebuild the reference binaries of known library code from runtime.c.
# They are committed (and embedded into mamori at build time) so that a
# build needs no cross compiler. Run only when a toolchain changes.
set -eu
cd "$(dirname "$0")"
for arch in i686 x86_64; do
	"$arch-w64-mingw32-gcc" -O2 -s -o "mingw-$arch.bin" runtime.c
done
gcc -O2 -s -o gcc-x86_64.bin runtime.c
# The whole of mingw-w64's libmingwex (C99 stdio, strtod/gdtoa, math, time,
# ...) in one DLL per arch: static runtime code that any mingw program may
# carry, whatever it is.
for arch in i686 x86_64; do
	"$arch-w64-mingw32-gcc" -shared -s -o "mingwex-$arch.bin" \
		-Wl,--whole-archive -lmingwex -Wl,--no-whole-archive -lmsvcrt -lkernel32
done
