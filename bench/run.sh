#!/usr/bin/env bash
# bench/run.sh: the benchmark behind `make bench` (issue 2, section 5).
#
# On a labelled corpus (default corpus/full, built by `make corpus` when
# missing) it runs, each in a fresh database so that no cache skews a timing:
#   - the exact-LCS kernel benchmark (build/bench/lcs_bench), when built;
#   - `mamori classify` on 1/4, 1/2 and all of the corpus (every 4th / 2nd
#     sample of each family in SHA-256 order, so family shares are kept),
#     then once more on the full corpus with the same database (cache re-run);
#   - mamori-score at family and subfamily level on each of those runs;
#   - the ssdeep and TLSH baselines (bench/eval/mamori-baseline) at their best
#     threshold;
#   - the LSH candidate search's recall on a ~500-sample subset: classify with
#     --candidates all and with lsh, and count the pairs with S >= threshold
#     that lsh never compared.
# It prints one table and writes it into docs/benchmarks.md between the
# markers <!-- bench:begin --> and <!-- bench:end -->.
#
# usage: bench/run.sh [--corpus DIR] [--jobs N] [--recall-samples N] [--no-doc]
# env:   MAMORI (default build/mamori), MAMORI_EVAL_DIR (default build/bench/eval),
#        BENCH_WORK (scratch folder, default build/bench-work; emptied first)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=corpus/full
JOBS=$(nproc)
RECALL_SAMPLES=500
WRITE_DOC=1
ORIG_ARGS=("$@")

die() { echo "bench: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--corpus) CORPUS=${2:?--corpus needs a folder}; shift 2 ;;
	--jobs) JOBS=${2:?--jobs needs a number}; shift 2 ;;
	--recall-samples) RECALL_SAMPLES=${2:?--recall-samples needs a number}; shift 2 ;;
	--no-doc) WRITE_DOC=0; shift ;;
	-h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
done

cd "$ROOT"
MAMORI=${MAMORI:-$ROOT/build/mamori}
EVAL_DIR=${MAMORI_EVAL_DIR:-$ROOT/build/bench/eval}
WORK=${BENCH_WORK:-$ROOT/build/bench-work}
SCORE=$EVAL_DIR/mamori-score
BASELINE=$EVAL_DIR/mamori-baseline
REPORT=$ROOT/bench/eval/report.py

[ -x "$MAMORI" ] || die "$MAMORI is missing: run 'make' first"
[ -x "$SCORE" ] || die "$SCORE is missing: run 'make' first"
command -v python3 >/dev/null || die "python3 is needed for the report"

# --- the corpus ----------------------------------------------------------
if [ ! -f "$CORPUS/labels.csv" ]; then
	case "$CORPUS" in
	corpus/full|./corpus/full|"$ROOT/corpus/full")
		echo "bench: $CORPUS is missing; building it (make corpus)" >&2
		bash "$ROOT/scripts/corpus/build.sh" --out "$CORPUS" ;;
	corpus/demo|./corpus/demo|"$ROOT/corpus/demo")
		echo "bench: $CORPUS is missing; building the demo corpus" >&2
		bash "$ROOT/scripts/corpus/build.sh" --demo --out "$CORPUS" ;;
	esac
	[ -f "$CORPUS/labels.csv" ] || die "no $CORPUS/labels.csv"
fi
[ -d "$CORPUS/samples" ] || die "no $CORPUS/samples folder"

rm -rf "$WORK"
mkdir -p "$WORK/runs"
echo "bench: corpus $CORPUS, scratch $WORK, $JOBS jobs" >&2

# Work on a snapshot, so a corpus rebuilt while the benchmark runs cannot
# change the inputs half-way. Hard links cost nothing on the same file
# system (the corpus builder replaces files rather than rewriting them).
cp "$CORPUS/labels.csv" "$WORK/labels.csv"
cp -al "$CORPUS/samples" "$WORK/samples" 2>/dev/null || { rm -rf "$WORK/samples"; cp -a "$CORPUS/samples" "$WORK/samples"; }
LABELS=$WORK/labels.csv
SAMPLES=$WORK/samples

# Since issue 4 the corpus also holds packed variants (columns packer, key,
# original). This benchmark measures the unpacked corpus, as it always did;
# bench/unpack/run.sh measures the packed one. Drop the packed rows and
# files, and keep the seven columns the scorers read.
if head -n 1 "$LABELS" | grep -q ',packer,'; then
	python3 - "$LABELS" "$SAMPLES" <<'PYEOF'
import csv, hashlib, os, sys
labels, samples = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(labels)))
packed = {r["sha256"] for r in rows if r["packer"] not in ("", "none")}
for d, _, files in os.walk(samples):
    for f in files:
        p = os.path.join(d, f)
        if hashlib.sha256(open(p, "rb").read()).hexdigest() in packed:
            os.unlink(p)
cols = ["sha256", "family", "subfamily", "program", "arch", "opt", "stripped"]
with open(labels, "w", newline="") as out:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        if r["sha256"] not in packed:
            w.writerow([r[c] for c in cols])
PYEOF
fi

# SHA-256 -> path of every sample file, so subsets can be handed to classify
# as file lists (classify does not follow symbolic links, and copies would
# cost time and disk).
find "$SAMPLES" -type f -print0 | sort -z | xargs -0 -r sha256sum | sed 's/  /\t/' > "$WORK/files.tsv"
N_FILES=$(wc -l < "$WORK/files.tsv")
N_LABELS=$(($(wc -l < "$LABELS") - 1))
[ "$N_FILES" -gt 0 ] || die "no files under $SAMPLES"
[ "$N_FILES" -eq "$N_LABELS" ] || echo "bench: warning: $N_FILES files but $N_LABELS labels" >&2

# subset K OUT: every K-th labels row of each family in SHA-256 order; writes
# OUT.labels.csv and OUT.paths (one path per line).
subset() {
	local k=$1 out=$2
	{
		head -n 1 "$LABELS"
		tail -n +2 "$LABELS" | LC_ALL=C sort -t, -k2,2 -k1,1 |
			awk -F, -v k="$k" '(seen[$2]++ % k) == 0'
	} > "$out.labels.csv"
	awk -F'\t' 'NR == FNR { if (FNR > 1) want[$1] = 1; next } ($1 in want) { print $2 }' \
		FS=, "$out.labels.csv" FS='\t' "$WORK/files.tsv" > "$out.paths"
}

TIME_BIN=""
if [ -x /usr/bin/time ]; then TIME_BIN=/usr/bin/time; fi

# timed NAME OUTFILE CMD...: run CMD with stdout to OUTFILE, stderr to
# NAME.err, recording the whole process's maximum RSS in NAME.time and the
# exit code in NAME.rc. Never fails the script: the report shows the error.
timed() {
	local name=$1 outfile=$2
	shift 2
	local rc=0 t0 t1
	t0=$(date +%s.%N)
	if [ -n "$TIME_BIN" ]; then
		"$TIME_BIN" -v -o "$name.time" "$@" > "$outfile" 2> "$name.err" || rc=$?
	else
		"$@" > "$outfile" 2> "$name.err" || rc=$?
	fi
	t1=$(date +%s.%N)
	echo "$rc" > "$name.rc"
	echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }' > "$name.wall"
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 4 ]; then
		echo "bench: $(basename "$name") exited with $rc; see $name.err" >&2
	fi
}

# classify_run NAME LABELS DB PATHS-FILE|DIR [extra classify options...]
classify_run() {
	local name=$1 labels=$2 db=$3 input=$4
	shift 4
	local dir=$WORK/runs/$name
	local -a inputs
	mkdir -p "$dir"
	if [ -d "$input" ]; then inputs=("$input"); else mapfile -t inputs < "$input"; fi
	echo "bench: classify $name (${#inputs[@]} inputs)" >&2
	cp "$labels" "$dir/labels.csv"
	timed "$dir/classify" "$dir/classify.out" \
		"$MAMORI" classify --db "$db" --out "$dir/out" --jobs "$JOBS" "$@" "${inputs[@]}"
	if [ -f "$dir/out/clusters.json" ]; then
		"$SCORE" --labels "$labels" --clusters "$dir/out/clusters.json" --json > "$dir/score.json" \
			2> "$dir/score.err" || echo "bench: scoring $name failed; see $dir/score.err" >&2
	fi
}

# --- exact-LCS kernel ------------------------------------------------------
for lcs in "$ROOT/build/bench/lcs_bench" "$ROOT/build/lcs_bench"; do
	if [ -x "$lcs" ]; then
		echo "bench: $lcs" >&2
		timed "$WORK/lcs_bench" "$WORK/lcs_bench.txt" "$lcs"
		break
	fi
done

# --- scaling: 1/4, 1/2, all, and a re-run on the full database --------------
subset 4 "$WORK/quarter"
subset 2 "$WORK/half"
classify_run quarter "$WORK/quarter.labels.csv" "$WORK/runs/quarter.db" "$WORK/quarter.paths"
rm -rf "$WORK/runs/quarter.db"*
classify_run half "$WORK/half.labels.csv" "$WORK/runs/half.db" "$WORK/half.paths"
rm -rf "$WORK/runs/half.db"*
classify_run all "$LABELS" "$WORK/runs/all.db" "$SAMPLES"
classify_run rerun "$LABELS" "$WORK/runs/all.db" "$SAMPLES"
rm -rf "$WORK/runs/all.db"*

# --- baselines -------------------------------------------------------------
for method in ssdeep tlsh; do
	if [ -x "$BASELINE" ]; then
		echo "bench: baseline $method" >&2
		timed "$WORK/baseline-$method" "$WORK/baseline-$method.json" \
			"$BASELINE" --method "$method" --labels "$LABELS" --jobs "$JOBS" --json \
			--assign-out "$WORK/baseline-$method.assign.csv" "$SAMPLES"
	else
		echo "bench: $BASELINE not built (needs libfuzzy-dev, libtlsh-dev); no baselines" >&2
	fi
done

# --- LSH recall on a subset ------------------------------------------------
k=$(( (N_LABELS + RECALL_SAMPLES - 1) / RECALL_SAMPLES ))
[ "$k" -ge 1 ] || k=1
subset "$k" "$WORK/recall"
for mode in all lsh; do
	classify_run "recall-$mode" "$WORK/recall.labels.csv" "$WORK/runs/recall-$mode.db" "$WORK/recall.paths" \
		--candidates "$mode" --pairs-out "$WORK/runs/recall-$mode.pairs.csv"
	rm -rf "$WORK/runs/recall-$mode.db"*
done

# --- the table ---------------------------------------------------------------
doc_args=()
if [ "$WRITE_DOC" -eq 1 ]; then doc_args=(--doc "$ROOT/docs/benchmarks.md"); fi
cmd="make bench"
if [ ${#ORIG_ARGS[@]} -gt 0 ]; then cmd="bench/run.sh ${ORIG_ARGS[*]}"; fi
python3 "$REPORT" --work "$WORK" --corpus "$CORPUS" --labels "$LABELS" --command "$cmd" "${doc_args[@]}"
rm -rf "$SAMPLES"
