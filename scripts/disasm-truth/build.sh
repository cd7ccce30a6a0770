#!/bin/sh
# Builds the disassembly ground truth (issue 3): see truth.py for what and how.
# Usage: scripts/disasm-truth/build.sh [--out DIR] [--small] [--jobs N]
set -eu
exec python3 "$(dirname "$0")/truth.py" "$@"
