#!/usr/bin/env bash
# bench/unpack/run.sh: the unpacking benchmark behind `make bench` (issue 4).
#
# On a labelled corpus with packed variants (labels.csv with the columns
# packer, key, original: `make corpus`), in one run:
#   - `mamori unpack --json` on every packed sample (JOBS at a time): OEP found
#     (the dump's entry RVA equals the original's), dump produced and parsed,
#     wall time per sample, per packer and arch;
#   - similarity of each dump to its original (`mamori compare`, token
#     sequences), per packer and arch;
#   - family F1 of the whole corpus with its packed variants: mamori classify
#     with --unpack auto and --unpack never, next to the ssdeep and TLSH
#     baselines (bench/eval/mamori-baseline) on the same files;
#   - emulation speed (build/bench/unpack/emu_speed) next to Unicorn alone.
# Prints Markdown tables and writes them into docs/benchmarks.md between
# <!-- unpack:begin --> and <!-- unpack:end --> (unless --no-doc).
#
# usage: bench/unpack/run.sh [--corpus DIR] [--jobs N] [--no-doc]
# env:   MAMORI (default build/mamori), BENCH_WORK (default build/bench-unpack; emptied first)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CORPUS=corpus/full
JOBS=$(nproc)
WRITE_DOC=1
ORIG_ARGS=("$@")

die() { echo "bench-unpack: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--corpus) CORPUS=${2:?--corpus needs a folder}; shift 2 ;;
	--jobs) JOBS=${2:?--jobs needs a number}; shift 2 ;;
	--no-doc) WRITE_DOC=0; shift ;;
	-h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
done

cd "$ROOT"
MAMORI=${MAMORI:-$ROOT/build/mamori}
WORK=${BENCH_WORK:-$ROOT/build/bench-unpack}
EVAL_DIR=${MAMORI_EVAL_DIR:-$ROOT/build/bench/eval}
SPEED=$ROOT/build/bench/unpack/emu_speed
[ -x "$MAMORI" ] || die "$MAMORI is missing: run 'make' first"
[ -f "$CORPUS/labels.csv" ] || die "no $CORPUS/labels.csv: run 'make corpus' first"
head -n 1 "$CORPUS/labels.csv" | grep -q ',packer,key,original' ||
	die "$CORPUS/labels.csv has no packed variants (old corpus): run 'make corpus'"

rm -rf "$WORK"
mkdir -p "$WORK/dumps" "$WORK/reports" "$WORK/info" "$WORK/compare"
cp "$CORPUS/labels.csv" "$WORK/labels.full.csv"
find "$CORPUS/samples" -type f -print0 | sort -z | xargs -0 -r sha256sum | sed 's/  /\t/' > "$WORK/files.tsv"
# The scorers read the first seven columns only.
cut -d, -f1-7 "$WORK/labels.full.csv" > "$WORK/labels.csv"

# packed.tsv: sha, packer, arch, path, original path
python3 - "$WORK" <<'EOF'
import csv, sys
work = sys.argv[1]
paths = {}
for line in open(f"{work}/files.tsv"):
    sha, path = line.rstrip("\n").split("\t", 1)
    paths[sha] = path
n = 0
with open(f"{work}/packed.tsv", "w") as out:
    for row in csv.DictReader(open(f"{work}/labels.full.csv")):
        if row["packer"] in ("", "none"):
            continue
        if row["sha256"] not in paths or row["original"] not in paths:
            sys.exit(f"bench-unpack: {row['sha256']} or its original is missing from the corpus")
        out.write("\t".join([row["sha256"], row["packer"], row["arch"], paths[row["sha256"]],
                             paths[row["original"]]]) + "\n")
        n += 1
print(f"bench-unpack: {n} packed samples", file=sys.stderr)
EOF
N=$(wc -l < "$WORK/packed.tsv")
[ "$N" -gt 0 ] || die "no packed samples in $CORPUS"

# one_sample SHA PATH ORIGINAL: unpack (timed), then info on dump and original,
# then compare. Every outcome lands in a file; nothing here fails the run.
one_sample() {
	local sha=$1 path=$2 orig=$3 w=$WORK
	local t0 t1 rc=0
	t0=$(date +%s%N)
	"$MAMORI" unpack "$path" -o "$w/dumps/$sha.exe" --json > "$w/reports/$sha.json" 2> "$w/reports/$sha.err" || rc=$?
	t1=$(date +%s%N)
	echo "$rc $(( (t1 - t0) / 1000000 ))" > "$w/reports/$sha.rc"
	"$MAMORI" info "$orig" > "$w/info/$sha.orig.json" 2>/dev/null || true
	if [ -f "$w/dumps/$sha.exe" ]; then
		"$MAMORI" info "$w/dumps/$sha.exe" > "$w/info/$sha.dump.json" 2> "$w/info/$sha.dump.err" || true
		"$MAMORI" compare "$w/dumps/$sha.exe" "$orig" --json > "$w/compare/$sha.json" 2>/dev/null || true
	fi
}
export -f one_sample
export MAMORI WORK

echo "bench-unpack: unpacking $N samples, $JOBS at a time" >&2
t0=$(date +%s)
cut -f1,4,5 "$WORK/packed.tsv" | tr '\t' '\n' |
	xargs -d '\n' -n 3 -P "$JOBS" bash -c 'one_sample "$@"' _
echo "bench-unpack: unpacked in $(( $(date +%s) - t0 )) s" >&2

# --- F1 with the packed variants: unpacking on and off, and the baselines -------
for mode in auto never; do
	echo "bench-unpack: classify --unpack $mode" >&2
	mkdir -p "$WORK/classify-$mode"
	s0=$(date +%s)
	"$MAMORI" classify --db "$WORK/classify-$mode/db" --out "$WORK/classify-$mode/out" --jobs "$JOBS" \
		--unpack "$mode" "$CORPUS/samples" > "$WORK/classify-$mode/stdout" 2> "$WORK/classify-$mode/stderr" || true
	echo "$(( $(date +%s) - s0 ))" > "$WORK/classify-$mode/seconds"
	"$EVAL_DIR/mamori-score" --labels "$WORK/labels.csv" --clusters "$WORK/classify-$mode/out/clusters.json" \
		--json > "$WORK/classify-$mode/score.json" 2> "$WORK/classify-$mode/score.err" || true
done
for method in ssdeep tlsh; do
	echo "bench-unpack: baseline $method" >&2
	"$EVAL_DIR/mamori-baseline" --method "$method" --labels "$WORK/labels.csv" --jobs "$JOBS" --json \
		"$CORPUS/samples" > "$WORK/baseline-$method.json" 2> "$WORK/baseline-$method.err" || true
done

# --- emulation speed -------------------------------------------------------------
if [ -x "$SPEED" ]; then
	"$SPEED" --json > "$WORK/speed.json" 2> "$WORK/speed.err" || true
fi

cmd="make bench"
if [ ${#ORIG_ARGS[@]} -gt 0 ]; then cmd="bench/unpack/run.sh ${ORIG_ARGS[*]}"; fi
if [ "$WRITE_DOC" -eq 1 ]; then
	python3 "$ROOT/bench/unpack/report.py" "$WORK" | "$ROOT/scripts/doc-section.py" unpack "$ROOT/docs/benchmarks.md" "$cmd"
else
	python3 "$ROOT/bench/unpack/report.py" "$WORK"
fi
