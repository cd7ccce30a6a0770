#!/bin/sh
# make lint: the banned-function check and clang-format are enforced;
# clang-tidy runs over the compilation database and its findings fail too.
#   scripts/lint.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/.."
build="${1:-build}"
status=0
files=$(git ls-files '*.c' '*.h' | grep -v '^tests/fixtures/src/')

# 1. Banned functions: unbounded or unchecked ones have bounded replacements.
if grep -nE '(^|[^_a-zA-Z0-9.>])(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll|strtok)[[:space:]]*\(' $files; then
	echo "lint: banned function used (use snprintf, strtol/strtoull with checks, memcpy with bounds)" >&2
	status=1
fi

# 2. Layout.
if ! clang-format --dry-run --Werror $files 2>/tmp/mamori-format.log; then
	grep -E '^[^ ]+:[0-9]+:[0-9]+: ' /tmp/mamori-format.log | cut -d: -f1 | sort -u | sed 's/^/lint: not clang-formatted: /' >&2
	status=1
fi

# 3. clang-tidy over the project's own sources.
srcs=$(git ls-files 'src/*.c' 'fuzz/*.c' 'bench/*.c')
if [ -f "$build/compile_commands.json" ]; then
	if ! clang-tidy -p "$build" --quiet $srcs >/tmp/mamori-tidy.log 2>&1; then :; fi
	if grep -E 'warning:|error:' /tmp/mamori-tidy.log; then
		echo "lint: clang-tidy findings above" >&2
		status=1
	fi
fi
[ $status -eq 0 ] && echo "lint: clean"
exit $status
