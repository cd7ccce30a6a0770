#!/bin/sh
# Builds mamori's labelled corpus of real Windows programs from Debian source packages.
#
# usage: scripts/corpus/build.sh [--out DIR] [--demo | --small] [--jobs N] [--src DIR]
#   (default)  full corpus, 3,400 samples + 512 packed variants, into corpus/full
#   --demo     the few-minute corpus `make run` classifies (150 + 32 packed), into corpus/demo
#   --small    a tiny corpus (36 + 8 packed, well under a minute) for tests, into corpus/small
# Fetches the sources once with apt-get source (cached in corpus/.src), cross-compiles them with
# mingw-w64 (corpus.py), adds byte-level variants and packed variants (the test packer
# build/tests/packers/mamori-testpack, or $MAMORI_TESTPACK: `make build` first), and writes
# DIR/samples/<family>/*.exe and DIR/labels.csv. Does nothing when DIR holds a complete build of this
# version. Needs root only the first time, to add a deb-src entry and fetch. Samples are data: nothing
# built here is ever run.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
mode=full
out=
src="$root/corpus/.src"
jobs=$(nproc 2>/dev/null || echo 2)

die() { echo "corpus: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--out) [ $# -ge 2 ] || die "--out needs a folder"; out=$2; shift 2 ;;
	--src) [ $# -ge 2 ] || die "--src needs a folder"; src=$2; shift 2 ;;
	--jobs) [ $# -ge 2 ] || die "--jobs needs a number"; jobs=$2; shift 2 ;;
	--demo) mode=demo; shift ;;
	--small) mode=small; shift ;;
	-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
	*) die "unknown argument: $1" ;;
	esac
done
case "$jobs" in ''|*[!0-9]*|0) die "--jobs wants a positive number, not '$jobs'" ;; esac
[ -n "$out" ] || out="$root/corpus/$mode"

[ -x "$py" ] || die "needs /usr/bin/python3 (Debian package python3)"
packer=${MAMORI_TESTPACK:-$root/build/tests/packers/mamori-testpack}
if "$py" "$here/corpus.py" --mode "$mode" --out "$out" --up-to-date; then
	echo "corpus: $out is up to date ($(($(wc -l <"$out/labels.csv") - 1)) samples)" >&2
	exit 0
fi

# Tools, with the Debian package that brings each.
for t in i686-w64-mingw32-gcc:gcc-mingw-w64-i686 x86_64-w64-mingw32-gcc:gcc-mingw-w64-x86-64 \
	 x86_64-w64-mingw32-strip:binutils-mingw-w64-x86-64 i686-w64-mingw32-strip:binutils-mingw-w64-i686 \
	 dpkg-source:dpkg-dev gcc:gcc make:make; do
	command -v "${t%%:*}" >/dev/null 2>&1 || die "needs ${t%%:*} (Debian package ${t#*:})"
done
packages=$("$py" "$here/corpus.py" --mode "$mode" --list-packages)
case " $packages " in
*" sqlite3 "*) command -v tclsh >/dev/null 2>&1 || die "needs tclsh for the sqlite3 amalgamation (Debian package tcl)" ;;
esac

# Sources: download once, extract once per package into $src/<package>.
mkdir -p "$src/dl"
missing=
for p in $packages; do
	[ -f "$src/$p/.mamori-extracted" ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
	need_fetch=
	for p in $missing; do
		ls "$src/dl/${p}_"*.dsc >/dev/null 2>&1 || need_fetch="$need_fetch $p"
	done
	if [ -n "$need_fetch" ]; then
		list=/etc/apt/sources.list.d/mamori-src.list
		rc=0
		line=$("$py" "$here/aptsrc.py") || rc=$?
		if [ "$rc" -eq 0 ]; then
			[ "$(id -u)" -eq 0 ] || die "no deb-src entry for bookworm; run once as root to add $list"
			echo "corpus: adding $list: $line" >&2
			printf '%s\n' "$line" >"$list"
			apt-get -q update >&2 || die "apt-get update failed"
		elif [ "$rc" -eq 1 ]; then
			die "no bookworm deb entry in /etc/apt to take the mirror from"
		elif ! apt-cache showsrc zlib 2>/dev/null | grep -q '^Package:'; then
			apt-get -q update >&2 || die "apt-get update failed"
		fi
		echo "corpus: fetching$need_fetch" >&2
		# shellcheck disable=SC2086
		if ! (cd "$src/dl" && apt-get source --download-only $need_fetch) >"$src/fetch.log" 2>&1; then
			cat "$src/fetch.log" >&2
			die "apt-get source failed for$need_fetch"
		fi
	fi
	for p in $missing; do
		dsc=$(find "$src/dl" -maxdepth 1 -name "${p}_*.dsc" | sort -V | tail -n 1)
		[ -n "$dsc" ] || die "no ${p}_*.dsc in $src/dl"
		rm -rf "${src:?}/$p"
		dpkg-source --no-check -x "$dsc" "$src/$p" >/dev/null || die "dpkg-source -x $dsc failed"
		: >"$src/$p/.mamori-extracted"
	done
fi

[ -x "$packer" ] || die "needs the test packer $packer for the packed variants: run 'make build' first"
exec "$py" "$here/corpus.py" --mode "$mode" --out "$out" --src "$src" --jobs "$jobs" --packer "$packer"
