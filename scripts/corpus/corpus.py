#!/usr/bin/python3
# Cross-compiles the corpus programs with mingw-w64, adds byte-level variants and packed variants,
# and writes labels.csv.
#
# Called by build.sh once the Debian sources are extracted under SRC. Work is split into units (one
# package at one arch and flag set): a unit compiles its library archive once, links each program,
# and keeps an unstripped and a stripped copy. Units run in parallel (--jobs). Output is deterministic:
# relative source paths, no link timestamp, variants from a fixed seed, packer keys from the sample
# name. Limits: a program that fails to build is left out and listed in DIR/failures.txt; the build
# goes on without it. A build the test packer refuses is skipped, counted and listed there too.
#
# Packed variants (issue 4): a few builds of every program (both archs, mixed opt levels, stripped and
# unstripped) packed by tests/packers' mamori-testpack with each technique and a few keys. labels.csv
# keeps its first seven columns and adds packer (none|xor|lz|nested|antiemu), key (hex; empty for
# unpacked rows) and original (sha256 of the compiled, unpacked original the row derives from).
import argparse
import concurrent.futures
import csv
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pevariant  # noqa: E402
import recipes  # noqa: E402

VERSION = "3"
SEED = "mamori-corpus-v1"

# What each mode builds: packages (None = all), programs per package (None = all), opts, variant target.
MODES = {
	"full": {"packages": None, "programs": {}, "opts": list(recipes.OPTS), "target": 3400,
		 "packed": {"builds": 64, "keys": 2}},
	"demo": {
		"packages": ["lua5.1", "lua5.4", "zlib", "bzip2", "lzo2"],
		"programs": {"zlib": ["minigzip"], "bzip2": ["bzip2"], "lzo2": ["testmini"]},
		"opts": ["O0", "O2", "Os"],
		"target": 150,
		"packed": {"builds": 4, "keys": 2},
	},
	"small": {
		"packages": ["zlib", "bzip2", "lzo2"],
		"programs": {"zlib": ["minigzip"], "bzip2": ["bzip2"], "lzo2": ["testmini"]},
		"opts": ["O0", "O2"],
		"target": 36,
		"packed": {"builds": 2, "keys": 1},
	},
}


class Progress:
	def __init__(self, total, what):
		self.total, self.done, self.what = total, 0, what
		self.tty = sys.stderr.isatty()
		self.start = time.time()

	def step(self, label):
		self.done += 1
		if self.tty:
			sys.stderr.write("\r\033[K%s %d/%d (%ds) %s" % (self.what, self.done, self.total,
								      time.time() - self.start, label))
			sys.stderr.flush()

	def finish(self):
		if self.tty:
			sys.stderr.write("\n")


def run(cmd, cwd, log):
	proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
	log.append("$ " + " ".join(cmd) + "\n" + proc.stdout.decode("utf-8", "replace"))
	if proc.returncode != 0:
		raise RuntimeError("exit %d: %s" % (proc.returncode, " ".join(cmd[:4])))


def obj_name(path):
	return path.replace("/", "_").replace(".c", ".o")


def build_unit(unit):
	"""Compile one package at one arch/opt; return (built programs, failures, log)."""
	pkg, arch, opt, src, bld, programs = unit
	r = recipes.RECIPES[pkg]
	triple = recipes.ARCHES[arch]
	gcc, ar, strip = triple + "-gcc", triple + "-ar", triple + "-strip"
	cflags = recipes.OPTS[opt] + ["-w", "-DNDEBUG"] + r["cflags"]
	objdir = os.path.join(bld, pkg, arch, opt)
	os.makedirs(objdir, exist_ok=True)
	log, built, failed = [], [], []

	def compile_one(path):
		obj = os.path.join(objdir, obj_name(path))
		run([gcc] + cflags + ["-c", path, "-o", obj], src, log)
		return obj

	# A unit whose programs are all standalone (minilzo) skips the library.
	archive = None
	if not set(programs) <= set(r.get("standalone", [])):
		archive = os.path.join(objdir, "lib%s.a" % pkg.replace(".", ""))
		try:
			objs = [compile_one(p) for p in recipes.lib_sources(pkg, src)]
			if os.path.exists(archive):
				os.unlink(archive)
			# D: no timestamps or uids in the archive, so the link is reproducible.
			run([ar, "rcsD", archive] + objs, src, log)
		except RuntimeError as e:
			return [], [(pkg, p, arch, opt, "library: %s" % e) for p in programs], log
	for prog in programs:
		try:
			pobjs = [compile_one(p) for p in r["programs"][prog]]
			exe = os.path.join(objdir, prog + ".exe")
			libs = [archive] if archive and prog not in r.get("standalone", []) else []
			run([gcc] + recipes.OPTS[opt] + ["-o", exe] + pobjs + libs + ["-Wl,--no-insert-timestamp"],
			    src, log)
			sexe = os.path.join(objdir, prog + "-s.exe")
			run([strip, "-o", sexe, exe], src, log)
			built.append((pkg, prog, arch, opt, exe, sexe))
		except RuntimeError as e:
			failed.append((pkg, prog, arch, opt, str(e)))
	return built, failed, log


def sha256(data):
	return hashlib.sha256(data).hexdigest()


TECHNIQUES = ["xor", "lz", "nested", "antiemu"]


def pick_packed_builds(originals, n, seed):
	"""Choose n of the compiled originals to pack, spread over every program and arch: round-robin
	over (family, program, arch), each group's builds in a seeded order that mixes opt levels and
	stripped/unstripped copies."""
	groups = {}
	for o in originals:
		family, sub, prog, arch = o[3][:4]
		groups.setdefault((family, sub, prog, arch), []).append(o)
	rng = random.Random(seed)
	# Families take turns, so that even a handful of builds covers several of them.
	per_family = {}
	for k in sorted(groups):
		g = sorted(groups[k], key=lambda o: o[0])
		rng.shuffle(g)
		per_family.setdefault(k[0], []).append(g)
	archs = sorted(recipes.ARCHES)
	for fi, fam in enumerate(sorted(per_family)):
		gs = per_family[fam]
		rng.shuffle(gs)
		# Families alternate the arch of their first build.
		gs.sort(key=lambda g: g[0][3][3] != archs[fi % len(archs)])
	order = []
	for i in range(max((len(gs) for gs in per_family.values()), default=0)):
		for fam in sorted(per_family):
			if i < len(per_family[fam]):
				order.append(per_family[fam][i])
	picked = []
	for depth in range(max((len(g) for g in order), default=0)):
		for g in order:
			if depth < len(g) and len(picked) < n:
				picked.append(g[depth])
	return picked


def pack_key(name, technique, i):
	"""A 32-bit key from the sample name: deterministic, different per technique and index. For
	nested the low bit picks the outer layer (1 xor, 0 lz), so keys alternate it, and bit 1 the
	number of layers (see pack_args)."""
	k = int(hashlib.sha256(("%s:%s:%s:%d" % (SEED, name, technique, i)).encode()).hexdigest()[:8], 16)
	return (k & ~1) | (i & 1 if technique == "nested" else k & 1)


def pack_args(technique, key):
	"""Options beyond the key: nested uses 2 or 3 layers (bit 1 of the key)."""
	return ["--layers", str(2 + (key >> 1 & 1))] if technique == "nested" else []


def pack_one(job):
	"""Run the test packer on one build; return (job, packed bytes or None, message)."""
	packer, technique, key, src, dst = job
	proc = subprocess.run([packer, technique, "--key", "0x%08x" % key] + pack_args(technique, key) + [src, dst],
			      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
	if proc.returncode != 0:
		return job, None, (proc.stderr.decode("utf-8", "replace").strip() or "exit %d" % proc.returncode)
	with open(dst, "rb") as f:
		data = f.read()
	os.unlink(dst)
	return job, data, ""


def main():
	# strip stamps the time into the PE header unless told otherwise; ld gets --no-insert-timestamp.
	os.environ["SOURCE_DATE_EPOCH"] = "0"
	ap = argparse.ArgumentParser()
	ap.add_argument("--src", help="folder with one extracted source package per folder named like it")
	ap.add_argument("--out")
	ap.add_argument("--list-packages", action="store_true", help="print the mode's source packages")
	ap.add_argument("--up-to-date", action="store_true", help="exit 0 when OUT holds a complete build")
	ap.add_argument("--mode", choices=sorted(MODES), default="full")
	ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
	ap.add_argument("--keep-build", action="store_true")
	ap.add_argument("--packer", help="mamori-testpack binary (build/tests/packers/mamori-testpack)")
	a = ap.parse_args()
	mode = MODES[a.mode]
	if a.list_packages:
		print(" ".join(mode["packages"] or recipes.PACKAGES))
		return 0
	if not a.out:
		ap.error("--out is required")
	out = os.path.abspath(a.out)
	stamp = os.path.join(out, ".stamp")
	if a.up_to_date:
		return 0 if up_to_date(out, stamp, a.mode) else 1
	if not a.src:
		ap.error("--src is required")
	if not a.packer or not os.access(a.packer, os.X_OK):
		ap.error("--packer must name the mamori-testpack binary (make build)")
	if os.path.exists(stamp):
		os.unlink(stamp)
	bld = os.path.join(out, ".build")
	samples = os.path.join(out, "samples")
	for p in (samples, bld, os.path.join(out, "labels.csv"), os.path.join(out, "failures.txt")):
		if os.path.isdir(p):
			shutil.rmtree(p)
		elif os.path.exists(p):
			os.unlink(p)
	os.makedirs(bld, exist_ok=True)
	t0 = time.time()

	srcdirs = {}
	for pkg in mode["packages"] or recipes.PACKAGES:
		d = os.path.join(a.src, pkg)
		if not os.path.isdir(d):
			sys.exit("corpus: no extracted source for %s in %s" % (pkg, a.src))
		srcdirs[pkg] = d
	failures = []
	for pkg, fn in recipes.PREPARE.items():
		if pkg in srcdirs:
			try:
				fn(srcdirs[pkg], os.path.join(bld, "prepare-%s.log" % pkg))
			except (subprocess.CalledProcessError, OSError) as e:
				failures.append((pkg, "*", "*", "*", "prepare: %s" % e))
				del srcdirs[pkg]

	units = []
	for pkg, src in srcdirs.items():
		r = recipes.RECIPES[pkg]
		progs = mode["programs"].get(pkg) or list(r["programs"])
		for opt in mode["opts"]:
			if opt not in r.get("opts", recipes.OPTS):
				continue
			for arch in recipes.ARCHES:
				units.append((pkg, arch, opt, src, bld, progs))
	# Longest first, so the amalgamation does not finish last on its own.
	units.sort(key=lambda u: (u[0] != "sqlite3", u[2] == "O0"))
	prog = Progress(len(units), "compile")
	built = []
	with open(os.path.join(out, "build.log"), "w") as logf, \
	     concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
		for unit, (b, f, log) in zip(units, ex.map(build_unit, units)):
			built += b
			failures += f
			logf.write("".join(log))
			prog.step("%s %s %s" % unit[:3])
	prog.finish()
	t_compile = time.time() - t0

	# Originals first, in a fixed order; identical files (rare) are kept once.
	built.sort(key=lambda b: b[:4])
	rows, seen, originals = [], set(), []
	dups = 0

	def emit(data, family, name, label, packer="none", key="", original=None):
		nonlocal dups
		h = sha256(data)
		if h in seen:
			dups += 1
			return False
		seen.add(h)
		d = os.path.join(samples, family)
		os.makedirs(d, exist_ok=True)
		with open(os.path.join(d, name + ".exe"), "wb") as f:
			f.write(data)
		rows.append([h] + label + [packer, key, original or h])
		return True

	for pkg, progname, arch, opt, exe, sexe in built:
		r = recipes.RECIPES[pkg]
		family, sub = r["family"], r.get("subfamily", r["family"])
		for path, stripped in ((exe, 0), (sexe, 1)):
			with open(path, "rb") as f:
				data = f.read()
			name = "%s-%s-%s-%s-%s" % (sub, progname, arch, opt, "s" if stripped else "u")
			label = [family, sub, progname, arch, opt, str(stripped)]
			if emit(data, family, name, label):
				originals.append((name, data, family, label, path))

	# Spread the variants needed to reach the target evenly over the originals.
	need = max(0, mode["target"] - len(originals))
	counts = [need // len(originals)] * len(originals) if originals else []
	extra = random.Random(SEED).sample(range(len(originals)), need % len(originals)) if originals else []
	for i in extra:
		counts[i] += 1
	vprog = Progress(len(originals), "variants")
	for (name, data, family, label, _), k in zip(originals, counts):
		rng = random.Random(SEED + ":" + name)
		made = tries = 0
		orig_sha = sha256(data)
		while made < k and tries < 4 * k + 4:
			tries += 1
			vdata, kinds = pevariant.make_variant(data, rng)
			if emit(vdata, family, "%s-v%d-%s" % (name, made + 1, "_".join(kinds)), label,
				original=orig_sha):
				made += 1
		vprog.step(name)
	vprog.finish()

	# Packed variants: every technique, a few keys, on builds spread over the programs.
	pk = mode["packed"]
	picked = pick_packed_builds(originals, pk["builds"], SEED + ":packed")
	jobs = []
	tmpdir = os.path.join(bld, "packed")
	os.makedirs(tmpdir, exist_ok=True)
	for name, data, family, label, path in picked:
		for technique in TECHNIQUES:
			for i in range(pk["keys"]):
				key = pack_key(name, technique, i)
				dst = os.path.join(tmpdir, "%s-%s-%08x.exe" % (name, technique, key))
				jobs.append((a.packer, technique, key, path, dst))
	by_path = {o[4]: o for o in originals}
	pprog = Progress(len(jobs), "pack")
	refused = []
	packed = 0
	with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
		for job, pdata, msg in ex.map(pack_one, jobs):
			_, technique, key, src, _ = job
			name, data, family, label, _ = by_path[src]
			pprog.step("%s %s" % (technique, name))
			if pdata is None:
				refused.append((name, technique, key, msg))
				continue
			if emit(pdata, family, "%s-p%s-%08x" % (name, technique, key), label, technique, "0x%08x" % key,
				sha256(data)):
				packed += 1
	pprog.finish()
	for name, technique, key, msg in refused:
		failures.append((name, technique, "0x%08x" % key, "packer", "refused: %s" % msg))

	tmp = os.path.join(out, "labels.csv.tmp")
	with open(tmp, "w", newline="") as f:
		w = csv.writer(f, lineterminator="\n")
		w.writerow(["sha256", "family", "subfamily", "program", "arch", "opt", "stripped", "packer", "key",
			    "original"])
		w.writerows(rows)
	os.replace(tmp, os.path.join(out, "labels.csv"))
	with open(os.path.join(out, "failures.txt"), "w") as f:
		for fl in failures:
			f.write("%s %s %s %s: %s\n" % fl)
	if not a.keep_build:
		shutil.rmtree(bld)

	fams = {}
	for row in rows:
		fams[row[2]] = fams.get(row[2], 0) + 1
	sys.stderr.write("corpus: %d samples (%d compiled, %d duplicates dropped) in %s; compile %.0fs, "
			 "total %.0fs; %d failed builds\n" % (len(rows), len(originals), dups, out, t_compile,
							       time.time() - t0, len(failures)))
	sys.stderr.write("corpus: per subfamily: %s\n" % ", ".join("%s=%d" % kv for kv in sorted(fams.items())))
	sys.stderr.write("corpus: %d packed variants of %d builds (%s x %d keys); %d refused by the packer\n"
			 % (packed, len(picked), "/".join(TECHNIQUES), pk["keys"], len(refused)))
	for fl in failures:
		sys.stderr.write("corpus: failed: %s %s %s %s: %s\n" % fl)
	if jobs and packed < len(jobs) // 2:
		sys.stderr.write("corpus: the packer refused %d of %d jobs: see failures.txt\n" % (len(refused), len(jobs)))
		return 1
	if len(rows) < mode["target"]:
		sys.stderr.write("corpus: only %d samples, %d wanted\n" % (len(rows), mode["target"]))
		return 1
	with open(stamp, "w") as f:
		f.write(stamp_text(a.mode, len(rows)))
	return 0


def stamp_text(mode, rows):
	# The scripts' own hash: a changed recipe or variant rule makes the old corpus out of date.
	h = hashlib.sha256()
	here = os.path.dirname(os.path.abspath(__file__))
	for name in ("corpus.py", "recipes.py", "pevariant.py"):
		with open(os.path.join(here, name), "rb") as f:
			h.update(f.read())
	# The packers' sources and stubs decide the packed variants' bytes.
	packers = os.path.join(here, "..", "..", "tests", "packers")
	for name in ("xor.c", "lz.c", "nested.c", "stubs/stubcfg.h", "stubs/lz32.exe", "stubs/lz64.exe",
		     "stubs/antiemu32.exe", "stubs/antiemu64.exe"):
		with open(os.path.join(packers, name), "rb") as f:
			h.update(f.read())
	return "mamori-corpus %s %s %d %s\n" % (VERSION, mode, rows, h.hexdigest()[:16])


def up_to_date(out, stamp, mode):
	"""The stamp is written last, so it names a finished build; labels.csv must still match it."""
	try:
		with open(stamp) as f:
			text = f.read()
		with open(os.path.join(out, "labels.csv")) as f:
			rows = sum(1 for _ in f) - 1
	except OSError:
		return False
	return text == stamp_text(mode, rows)


if __name__ == "__main__":
	sys.exit(main())
