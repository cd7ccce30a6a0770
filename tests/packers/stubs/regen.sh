#!/bin/sh
# Rebuild the committed stub binaries of the test packers from their
# sources. They are committed (like tests/fixtures) so that building and
# testing mamori needs no cross compiler; run this only to change a stub.
# Freestanding: no CRT, our own entry point, base relocations kept (so a
# stub can itself be loaded anywhere by an outer `lz` layer), no timestamp
# (the output is reproducible).
set -eu
cd "$(dirname "$0")"
flags="-Os -std=c17 -Wall -Wextra -Werror -ffreestanding -fno-stack-protector -fno-builtin -nostdlib
 -mno-stack-arg-probe -Wl,--dynamicbase -Wl,--no-insert-timestamp -Wl,--subsystem,console"
for stub in lz antiemu; do
	# shellcheck disable=SC2086
	i686-w64-mingw32-gcc $flags -Wl,--image-base,0x01000000 -Wl,-e,_stub_entry \
		-o "${stub}32.exe" "$stub.c" loader.c -lkernel32
	# shellcheck disable=SC2086
	x86_64-w64-mingw32-gcc $flags -Wl,--image-base,0x160000000 -Wl,-e,stub_entry \
		-o "${stub}64.exe" "$stub.c" loader.c -lkernel32
done
