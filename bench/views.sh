#!/usr/bin/env bash
# bench/views.sh: how each design choice of the compared sequence moves the
# family F1 (`make bench-views`). For every view (exact, arch-neutral,
# skeleton, mnemonic), with and without removing known library code, it
# classifies the corpus once with a low cut-off floor, then re-clusters from
# the cached similarities over a grid of thresholds, and reports the best
# threshold and F1 next to the F1 at the default threshold.
#
# usage: bench/views.sh [--corpus DIR] [--no-doc]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=corpus/full
WRITE_DOC=1
while [ $# -gt 0 ]; do
	case "$1" in
	--corpus) CORPUS=${2:?--corpus needs a folder}; shift 2 ;;
	--no-doc) WRITE_DOC=0; shift ;;
	*) echo "views: unknown option '$1'" >&2; exit 2 ;;
	esac
done
cd "$ROOT"
MAMORI=${MAMORI:-$ROOT/build/mamori}
SCORE=${MAMORI_EVAL_DIR:-$ROOT/build/bench/eval}/mamori-score
WORK=${BENCH_WORK:-$ROOT/build/bench-views}
[ -f "$CORPUS/labels.csv" ] || { echo "views: no $CORPUS/labels.csv (make corpus)" >&2; exit 1; }
[ -x "$SCORE" ] || { echo "views: $SCORE is missing (make)" >&2; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK"
default_t=$("$MAMORI" classify --help | sed -n 's/.*--threshold T.*(default \([0-9.]*\)).*/\1/p')
grid="0.15 0.18 0.2 0.22 0.24 0.245 0.25 0.26 0.28 0.3 0.35 0.4 0.45 0.5"
floor=0.07

f1_of() { # f1_of CLUSTERS_JSON
	"$SCORE" --labels "$CORPUS/labels.csv" --clusters "$1" --level family --json |
		python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["family"]["f1"])'
}

table="| view | library code | F1 at default T=$default_t | best T | best F1 | first run s |"$'\n'
table+="|---|---|---|---|---|---|"$'\n'
for view in exact arch-neutral skeleton mnemonic; do
	for lib in removed kept; do
		flag=()
		[ "$lib" = kept ] && flag=(--keep-library-code)
		db="$WORK/$view-$lib.db"
		start=$(date +%s.%N)
		MAMORI_NO_PROGRESS=1 "$MAMORI" classify --db "$db" --out "$WORK/o" --view "$view" "${flag[@]}" \
			--candidates all --floor $floor --threshold 0.5 -q "$CORPUS/samples" >/dev/null
		first=$(python3 -c "import sys; print('%.0f' % ($(date +%s.%N) - $start))")
		best_t="" best_f1=0 at_default=""
		for t in $grid $default_t; do
			MAMORI_NO_PROGRESS=1 "$MAMORI" classify --db "$db" --out "$WORK/o" --view "$view" "${flag[@]}" \
				--candidates all --floor $floor --threshold "$t" -q "$CORPUS/samples" >/dev/null
			f1=$(f1_of "$WORK/o/clusters.json")
			[ "$t" = "$default_t" ] && at_default=$f1
			if python3 -c "import sys; sys.exit(0 if $f1 > $best_f1 else 1)"; then best_f1=$f1; best_t=$t; fi
		done
		row="| $view | $lib | $at_default | $best_t | $best_f1 | $first |"
		echo "$row" >&2
		table+="$row"$'\n'
	done
done
echo "$table"
if [ "$WRITE_DOC" = 1 ]; then
	python3 - "$ROOT/docs/benchmarks.md" "$table" "$CORPUS" <<'PY'
import sys, datetime
path, table, corpus = sys.argv[1], sys.argv[2], sys.argv[3]
doc = open(path).read()
begin, end = "<!-- views:begin -->", "<!-- views:end -->"
stamp = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
body = f"{begin}\n\nMeasured on {stamp} by `bench/views.sh --corpus {corpus}` (exhaustive pairs, floor 0.07).\n\n{table}\n{end}"
if begin in doc:
    doc = doc[:doc.index(begin)] + body + doc[doc.index(end) + len(end):]
else:
    doc = doc.rstrip() + "\n\n" + body + "\n"
open(path, "w").write(doc)
PY
fi
