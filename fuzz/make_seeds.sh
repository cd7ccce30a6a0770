#!/bin/sh
# Regenerate the seed corpora fuzz/corpus/{pe,elf}: the checked-in fixtures,
# tiny PE/ELF programs (mingw-w64 and gcc), and hand-made truncated and
# corrupted variants of them. Run only to change the corpus; the result is
# committed (keep it under 2 MB). Files named fuzz-* are inputs found by
# scripts/fuzz.sh (one per distinct outcome) and are kept by hand; this
# script does not remove them.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
fix="$here/../tests/fixtures"
pe="$here/corpus/pe"
elf="$here/corpus/elf"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$pe" "$elf"

cp "$fix"/pe32.exe "$fix"/pe64.exe "$fix"/pe64-stripped.exe "$fix"/pe32.dll "$fix"/pe64.dll "$pe"/
cp "$fix"/elf64 "$fix"/elf64-stripped "$fix"/elf32 "$elf"/

cat > "$tmp/tiny.c" <<'C'
__declspec(dllimport) void __stdcall ExitProcess(unsigned);
__declspec(dllimport) unsigned __stdcall GetTickCount(void);
__declspec(dllexport) int tiny_add(int a, int b) { return a + b; }
void start(void) { ExitProcess(GetTickCount() + (unsigned)tiny_add(1, 2)); }
C
i686-w64-mingw32-gcc -Os -s -nostdlib -Wl,-e,_start -o "$pe/tiny32.exe" "$tmp/tiny.c" -lkernel32
x86_64-w64-mingw32-gcc -Os -s -nostdlib -Wl,-e,start -o "$pe/tiny64.exe" "$tmp/tiny.c" -lkernel32
i686-w64-mingw32-gcc -Os -s -nostdlib -shared -o "$pe/tiny32.dll" "$tmp/tiny.c" -lkernel32
x86_64-w64-mingw32-gcc -Os -s -nostdlib -shared -o "$pe/tiny64.dll" "$tmp/tiny.c" -lkernel32
x86_64-w64-mingw32-gcc -Os -nostdlib -Wl,-e,start -o "$pe/tiny64-symbols.exe" "$tmp/tiny.c" -lkernel32

printf 'void _start(void){__asm__ volatile("mov $60,%%eax; xor %%edi,%%edi; syscall");}\n' > "$tmp/t64.c"
printf 'void _start(void){__asm__ volatile("mov $1,%%eax; xor %%ebx,%%ebx; int $0x80");}\n' > "$tmp/t32.c"
printf 'int so_add(int a, int b){return a + b;}\n' > "$tmp/so.c"
gcc -Os -nostdlib -static -Wl,-z,max-page-size=4096 -o "$elf/tiny64" "$tmp/t64.c"
gcc -m32 -Os -s -nostdlib -static -Wl,-z,max-page-size=4096 -o "$elf/tiny32" "$tmp/t32.c"
gcc -O1 -s -shared -fPIC -Wl,-z,max-page-size=4096 -o "$elf/tiny.so" "$tmp/so.c"

python3 - "$pe" "$elf" <<'PY'
import struct, sys, os
pe, elf = sys.argv[1], sys.argv[2]
def rd(p): return bytearray(open(p, 'rb').read())
def wr(d, name, data): open(os.path.join(d, name), 'wb').write(bytes(data))

t = rd(os.path.join(pe, 'tiny64.exe'))
lf = struct.unpack_from('<I', t, 0x3c)[0]
coff, opt = lf + 4, lf + 24
sect = opt + struct.unpack_from('<H', t, coff + 16)[0]
for n in (2, 63, 64, lf + 4, lf + 24, opt + 60, sect + 20, len(t) // 2, len(t) - 1):
    wr(pe, 'trunc-%d' % n, t[:n])
v = bytearray(t); struct.pack_into('<H', v, coff + 2, 0xffff); wr(pe, 'huge-nsections', v)
v = bytearray(t); struct.pack_into('<I', v, opt + 108, 0xffffffff); wr(pe, 'huge-ndirs', v)
v = bytearray(t); struct.pack_into('<I', v, sect + 40 + 12, struct.unpack_from('<I', t, sect + 12)[0]); wr(pe, 'overlap-rva', v)
v = bytearray(t); struct.pack_into('<I', v, sect + 40 + 20, struct.unpack_from('<I', t, sect + 20)[0]); wr(pe, 'overlap-raw', v)
v = bytearray(t); struct.pack_into('<I', v, sect + 16, 0xfffffe00); wr(pe, 'huge-rawsize', v)
v = bytearray(t); struct.pack_into('<I', v, coff + 8, 0x100); struct.pack_into('<I', v, coff + 12, 0x7fffffff); wr(pe, 'huge-symbols', v)
v = bytearray(t); struct.pack_into('<H', v, coff, 0x1c0); wr(pe, 'arm-machine', v)

e = rd(os.path.join(elf, 'tiny64'))
shoff = struct.unpack_from('<Q', e, 0x28)[0]
for n in (3, 16, 63, 64, 64 + 56, shoff, len(e) - 1):
    wr(elf, 'trunc-%d' % n, e[:n])
v = bytearray(e); struct.pack_into('<Q', v, 0x28, 0)
struct.pack_into('<HHH', v, 0x3a, 0, 0, 0); wr(elf, 'no-sections', v)
v = bytearray(e); struct.pack_into('<H', v, 0x38, 0xffff); wr(elf, 'huge-phnum', v)
v = bytearray(e); struct.pack_into('<H', v, 0x3c, 0); wr(elf, 'shnum-extended', v)
v = bytearray(e); v[5] = 2; wr(elf, 'big-endian', v)
v = bytearray(e); struct.pack_into('<Q', v, 0x18, 0x10); wr(elf, 'bad-entry', v)
PY
du -sh "$here/corpus"
