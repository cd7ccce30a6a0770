# mamori's front door. `make run` and `make test` do the whole set-up on a
# fresh Debian 12 machine (they install missing packages with apt-get).

BUILD      ?= build
ASAN_BUILD ?= build-asan
MAMORI     := $(BUILD)/mamori
DEMO       ?= corpus/demo
CORPUS     ?= corpus/full

.PHONY: all deps build asan run test test-fast bench bench-contain bench-unpack bench-views bench-disasm corpus demo-corpus disasm-truth train-disasm lint fuzz clean

all: build

deps:
	@scripts/install-deps.sh build

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# The main job on built-in defaults: a small demo corpus, classified.
run: build
	@scripts/install-deps.sh corpus
	scripts/corpus/build.sh --demo --out $(DEMO)
	@rm -rf out/demo && mkdir -p out/demo
	$(MAMORI) classify --db out/demo/mamori.db --out out/demo $(DEMO)/samples

# Both builds run every test; one closing line counts them all.
test: build asan
	MAMORI_NO_PROGRESS=1 meson test -C $(BUILD) --print-errorlogs; \
	MAMORI_NO_PROGRESS=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN_BUILD) --print-errorlogs --timeout-multiplier 4; \
	scripts/test-summary.py $(BUILD) $(ASAN_BUILD)

test-fast: build
	meson test -C $(BUILD) --print-errorlogs

# The packed variants need the test packers (build/tests/packers).
corpus: build
	@scripts/install-deps.sh corpus
	scripts/corpus/build.sh --out $(CORPUS)

demo-corpus: build
	@scripts/install-deps.sh corpus
	scripts/corpus/build.sh --demo --out $(DEMO)

bench: build
	@scripts/install-deps.sh corpus bench fuzz
	bench/run.sh --corpus $(CORPUS)
	bench/unpack/run.sh --corpus $(CORPUS)
	bench/disasm/run.sh | scripts/doc-section.py disasm docs/benchmarks.md "bench/disasm/run.sh"
	$(MAKE) bench-contain

lint: build
	@scripts/install-deps.sh lint
	scripts/lint.sh $(BUILD)

fuzz:
	@scripts/install-deps.sh build fuzz
	scripts/fuzz.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz out

# The containment gateway benchmark (issue 5), as root: direct path vs the
# relay and the whole gateway in lab namespaces (wrk, curl); the table goes
# into docs/benchmarks.md. `make bench` runs it last.
bench-contain: build
	@scripts/install-deps.sh bench
	BUILD=$(BUILD) bench/contain/run.sh --doc

# The unpacking benchmark alone (issue 4); `make bench` runs it too.
bench-unpack: build
	@scripts/install-deps.sh corpus bench
	@[ -f $(CORPUS)/labels.csv ] || scripts/corpus/build.sh --out $(CORPUS)
	bench/unpack/run.sh --corpus $(CORPUS)

# How each choice of the compared sequence (view, library code) moves F1.
bench-views: build
	@scripts/install-deps.sh corpus bench
	@[ -f $(CORPUS)/labels.csv ] || scripts/corpus/build.sh --out $(CORPUS)
	bench/views.sh --corpus $(CORPUS)

# Labelled instruction starts for the disassembly benchmark (issue 3): the
# programs of the corpus plus test programs with data inside code.
disasm-truth:
	@scripts/install-deps.sh build corpus fuzz
	scripts/disasm-truth/build.sh

# Precision/recall of instruction starts and throughput, every method.
bench-disasm: build
	@scripts/install-deps.sh build corpus fuzz
	bench/disasm/run.sh | scripts/doc-section.py disasm docs/benchmarks.md "bench/disasm/run.sh"

# Re-learn the probabilistic disassembler's model from the ground truth
# (deterministic: the same truth gives a byte-identical data/disasm-model/model.txt).
train-disasm: build
	@[ -f corpus/disasm-truth/manifest.csv ] || $(MAKE) disasm-truth
	scripts/train-disasm/train $(BUILD)
