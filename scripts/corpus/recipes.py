# Build recipes for the labelled corpus: which Debian source package gives which Windows programs.
#
# Each recipe names the extracted source folder, the library sources that go into a static archive
# (compiled once per arch/opt unit and shared by the unit's programs) and, per program, its own
# sources. We compile with plain cross-gcc command lines instead of the packages' build systems: those
# are slow and fragile for cross builds. Limits: only what builds with mingw-w64 is listed; sqlite3
# needs its amalgamation generated natively first (tclsh, gcc, make), see prepare_sqlite3().
import glob
import os
import subprocess

# Flag sets: name -> gcc flags. The name is the "opt" column of labels.csv.
OPTS = {
	"O0": ["-O0"],
	"O1": ["-O1"],
	"O2": ["-O2"],
	"Os": ["-Os"],
	"O3": ["-O3"],
	"O2ni": ["-O2", "-fno-inline"],
}

ARCHES = {
	"i686": "i686-w64-mingw32",
	"x86_64": "x86_64-w64-mingw32",
}

# Debian source packages fetched with apt-get source, in build order.
PACKAGES = ["lua5.1", "lua5.2", "lua5.3", "lua5.4", "zlib", "bzip2", "lz4", "xxhash", "sqlite3", "cjson",
	    "expat", "lzo2"]


def _lua(sub, defines, luac_extra):
	def lib(src):
		skip = {"src/lua.c", "src/luac.c", "src/print.c"}
		return sorted(p for p in _rel(src, "src/l*.c") if p not in skip)
	return {
		"family": "lua", "subfamily": sub, "cflags": ["-Isrc"] + defines, "lib": lib,
		"programs": {"lua": ["src/lua.c"], "luac": ["src/luac.c"] + luac_extra},
	}


def _rel(src, pattern):
	return [os.path.relpath(p, src) for p in glob.glob(os.path.join(src, pattern))]


def _lzo_lib(src):
	return sorted(_rel(src, "src/*.c"))


RECIPES = {
	"lua5.1": _lua("lua5.1", [], ["src/print.c"]),
	"lua5.2": _lua("lua5.2", ["-DLUA_COMPAT_ALL"], []),
	"lua5.3": _lua("lua5.3", ["-DLUA_COMPAT_5_2"], []),
	"lua5.4": _lua("lua5.4", ["-DLUA_COMPAT_5_3"], []),
	"zlib": {
		"family": "zlib", "cflags": ["-I."],
		"lib": ["adler32.c", "compress.c", "crc32.c", "deflate.c", "gzclose.c", "gzlib.c", "gzread.c",
			"gzwrite.c", "infback.c", "inffast.c", "inflate.c", "inftrees.c", "trees.c", "uncompr.c",
			"zutil.c"],
		"programs": {"minigzip": ["test/minigzip.c"], "example": ["test/example.c"]},
	},
	"bzip2": {
		"family": "bzip2", "cflags": ["-I.", "-D_FILE_OFFSET_BITS=64"],
		"lib": ["blocksort.c", "huffman.c", "crctable.c", "randtable.c", "compress.c", "decompress.c",
			"bzlib.c"],
		"programs": {"bzip2": ["bzip2.c"], "bzip2recover": ["bzip2recover.c"]},
	},
	"lz4": {
		"family": "lz4", "cflags": ["-Ilib"],
		"lib": ["lib/lz4.c", "lib/lz4frame.c", "lib/lz4hc.c", "lib/xxhash.c"],
		"programs": {"lz4": ["programs/lz4cli.c", "programs/lz4io.c", "programs/bench.c",
				     "programs/datagen.c"]},
	},
	"xxhash": {
		"family": "xxhash", "cflags": ["-I."],
		"lib": ["xxhash.c"],
		"programs": {"xxhsum": ["cli/xxhsum.c", "cli/xsum_os_specific.c", "cli/xsum_output.c",
					"cli/xsum_sanity_check.c", "cli/xsum_bench.c"]},
	},
	"sqlite3": {
		# The amalgamation takes a minute per compile at -O2: fewer flag sets keep the build short.
		"family": "sqlite3", "cflags": ["-Imamori-gen", "-DSQLITE_THREADSAFE=1"],
		"opts": ["O0", "O2", "Os"],
		"lib": ["mamori-gen/sqlite3.c"],
		"programs": {"sqlite3": ["mamori-gen/shell.c"]},
	},
	"cjson": {
		# The unit tests #include cJSON.c themselves; unity is their shared library.
		"family": "cjson", "cflags": ["-I.", "-Itests", "-Itests/unity/src", "-Itests/unity/examples",
					       "-DUNITY_INCLUDE_CONFIG_H"],
		"lib": ["tests/unity/src/unity.c"],
		"programs": {
			"cjson_test": ["test.c", "cJSON.c"],
			"readme_examples": ["tests/readme_examples.c"],
			"parse_examples": ["tests/parse_examples.c"],
			"misc_tests": ["tests/misc_tests.c"],
			"print_number": ["tests/print_number.c"],
			"json_patch_tests": ["tests/json_patch_tests.c", "cJSON_Utils.c"],
		},
	},
	"expat": {
		"family": "expat", "cflags": ["-Iexpat/lib", "-Imamori-gen", "-DXML_STATIC"],
		"lib": ["expat/lib/xmlparse.c", "expat/lib/xmlrole.c", "expat/lib/xmltok.c"],
		"programs": {
			"xmlwf": ["expat/xmlwf/xmlwf.c", "expat/xmlwf/xmlfile.c", "expat/xmlwf/codepage.c",
				  "expat/xmlwf/win32filemap.c"],
			"elements": ["expat/examples/elements.c"],
			"outline": ["expat/examples/outline.c"],
		},
	},
	"lzo2": {
		"family": "lzo2", "cflags": ["-Iinclude", "-I.", "-Iinclude/lzo"],
		"lib": _lzo_lib,
		"programs": {
			"simple": ["examples/simple.c"],
			"lzopack": ["examples/lzopack.c"],
			"dict": ["examples/dict.c"],
			"overlap": ["examples/overlap.c"],
			"precomp": ["examples/precomp.c"],
			"precomp2": ["examples/precomp2.c"],
			"lzotest": ["lzotest/lzotest.c"],
			# minilzo is the single-file edition of the library: its own program, no archive.
			"testmini": ["minilzo/testmini.c", "minilzo/minilzo.c"],
		},
		"standalone": ["testmini"],
	},
}

EXPAT_CONFIG = """/* Written by mamori scripts/corpus: the values configure finds for mingw-w64. */
#ifndef EXPAT_CONFIG_H
#define EXPAT_CONFIG_H 1
#define BYTEORDER 1234
#define HAVE_FCNTL_H 1
#define HAVE_INTTYPES_H 1
#define HAVE_MEMORY_H 1
#define HAVE_STDINT_H 1
#define HAVE_STDLIB_H 1
#define HAVE_STRING_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TYPES_H 1
#define PACKAGE "expat"
#define PACKAGE_NAME "expat"
#define PACKAGE_VERSION "2.5.0"
#define PACKAGE_STRING "expat 2.5.0"
#define STDC_HEADERS 1
#define XML_CONTEXT_BYTES 1024
#define XML_DTD 1
#define XML_NS 1
#endif
"""


def prepare_expat(src, log):
	gen = os.path.join(src, "mamori-gen")
	os.makedirs(gen, exist_ok=True)
	with open(os.path.join(gen, "expat_config.h"), "w") as f:
		f.write(EXPAT_CONFIG)


def prepare_sqlite3(src, log):
	"""Generate sqlite3.c and shell.c natively (the Debian source has no amalgamation)."""
	gen = os.path.join(src, "mamori-gen")
	if os.path.exists(os.path.join(gen, "sqlite3.c")) and os.path.exists(os.path.join(gen, "shell.c")):
		return
	os.makedirs(gen, exist_ok=True)
	with open(log, "w") as lf:
		subprocess.run(["../configure", "--disable-tcl", "--disable-readline"], cwd=gen, check=True,
			       stdout=lf, stderr=subprocess.STDOUT)
		subprocess.run(["make", "sqlite3.c", "shell.c"], cwd=gen, check=True, stdout=lf,
			       stderr=subprocess.STDOUT)


PREPARE = {"expat": prepare_expat, "sqlite3": prepare_sqlite3}


def lib_sources(pkg, src):
	lib = RECIPES[pkg]["lib"]
	return lib(src) if callable(lib) else list(lib)
