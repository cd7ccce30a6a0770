# Builds the labelled set of instruction starts for the disassembly benchmark (issue 3).
#
# For each binary we compile our sources to assembler (-S), label every statement (gaslist.py),
# assemble with GNU as (clang too: -fno-integrated-as) and link with -Wl,-Map=FILE. The labels'
# values (nm) give each instruction's offset within its section of its object, the map gives where
# that section landed: together, absolute VAs. No disassembler is involved; as a self-check, the
# first byte of every instruction must equal the object's byte at its offset and the byte at its VA
# in the final (stripped) file, else the binary is dropped.
#
# Output (DIR): manifest.csv (file,truth,format,arch,compiler,class,program,opt), and per binary
# NAME (the stripped binary), NAME.truth (one start VA per line, hex, sorted), NAME.known
# ("start end" hex, half-open, sorted: the bytes whose truth is known) and NAME.data (same form: the
# known bytes that are data, i.e. inline .byte/.long/.ascii blocks and zero padding; every other
# known byte is inside an instruction). Bytes of CRT objects,
# libgcc, mingwex etc. are never known. Limits: x86/x86-64 only; the plain programs come from the
# Debian sources cached by scripts/corpus (corpus/.src), those missing there are skipped.
import argparse
import concurrent.futures
import csv
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts", "corpus"))
import gaslist  # noqa: E402
import gen_datacode  # noqa: E402
import recipes  # noqa: E402

# name -> compiler argv, strip, format, arch, compiler label, extra link flags, freestanding only
TOOLCHAINS = {
	"pe-x86": (["i686-w64-mingw32-gcc"], "i686-w64-mingw32-strip", "pe32", "x86", "mingw-gcc",
		   ["-Wl,--no-insert-timestamp"], False),
	"pe-x86_64": (["x86_64-w64-mingw32-gcc"], "x86_64-w64-mingw32-strip", "pe32+", "x86_64", "mingw-gcc",
		      ["-Wl,--no-insert-timestamp"], False),
	"elf-x86_64-gcc": (["gcc"], "strip", "elf64", "x86_64", "gcc", ["-lm"], False),
	"elf-x86_64-clang": (["clang", "-fno-integrated-as"], "strip", "elf64", "x86_64", "clang", ["-lm"], False),
	"elf-x86-gcc": (["gcc", "-m32", "-ffreestanding", "-fno-pie", "-fno-stack-protector"], "strip", "elf32",
			"x86", "gcc", ["-nostdlib", "-static", "-no-pie", "-Wl,-e,_start"], True),
	"elf-x86-clang": (["clang", "-fno-integrated-as", "-m32", "-ffreestanding", "-fno-pie",
			   "-fno-stack-protector"], "strip", "elf32", "x86", "clang",
			  ["-nostdlib", "-static", "-no-pie", "-Wl,-e,_start"], True),
}

PLAIN_FULL = [("lua5.4", "lua"), ("zlib", "minigzip"), ("bzip2", "bzip2"), ("lzo2", "testmini"),
	      ("cjson", "cjson_test"), ("xxhash", "xxhsum")]
PLAIN_SMALL = [("zlib", "minigzip"), ("lzo2", "testmini")]


class Job:
	def __init__(self, name, tc, opt, cls, program, src_dir, sources, cflags):
		self.name, self.tc, self.opt, self.cls, self.program = name, tc, opt, cls, program
		self.src_dir, self.sources, self.cflags = src_dir, sources, cflags


def run(cmd, cwd, log):
	proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
	log.append("$ " + " ".join(cmd) + "\n" + proc.stdout.decode("utf-8", "replace"))
	if proc.returncode != 0:
		raise RuntimeError("exit %d: %s" % (proc.returncode, " ".join(cmd[:6])))


def file_sections(data):
	"""[(va, size, file offset)] of the file-backed sections of an ELF or PE file."""
	out = []
	if data[:4] == b"\x7fELF":
		is64 = data[4] == 2
		if is64:
			shoff, = struct.unpack_from("<Q", data, 0x28)
			shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
		else:
			shoff, = struct.unpack_from("<I", data, 0x20)
			shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
		for i in range(shnum):
			o = shoff + i * shentsize
			if is64:
				_, typ, _, addr, off, size = struct.unpack_from("<IIQQQQ", data, o)
			else:
				_, typ, _, addr, off, size = struct.unpack_from("<IIIIII", data, o)
			if typ != 8 and addr:
				out.append((addr, size, off))
		return out
	pe, = struct.unpack_from("<I", data, 0x3C)
	nsec, = struct.unpack_from("<H", data, pe + 6)
	optsize, = struct.unpack_from("<H", data, pe + 20)
	magic, = struct.unpack_from("<H", data, pe + 24)
	base = struct.unpack_from("<Q", data, pe + 48)[0] if magic == 0x20B else \
		struct.unpack_from("<I", data, pe + 52)[0]
	sec = pe + 24 + optsize
	for i in range(nsec):
		vsize, rva, rawsize, rawoff = struct.unpack_from("<IIII", data, sec + i * 40 + 8)
		out.append((base + rva, min(vsize or rawsize, rawsize), rawoff))
	return out


def byte_at(sections, data, va):
	for sva, size, off in sections:
		if sva <= va < sva + size:
			return data[off + va - sva]
	return None


def object_sections(data):
	"""{name: bytes} of the sections of an ELF or COFF relocatable object."""
	out = {}
	if data[:4] == b"\x7fELF":
		is64 = data[4] == 2
		if is64:
			shoff, = struct.unpack_from("<Q", data, 0x28)
			shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
			fmt = "<IIQQQQ"
		else:
			shoff, = struct.unpack_from("<I", data, 0x20)
			shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
			fmt = "<IIIIII"
		hdrs = [struct.unpack_from(fmt, data, shoff + i * shentsize) for i in range(shnum)]
		stroff = hdrs[shstrndx][4]
		for name, typ, _, _, off, size in hdrs:
			n = data[stroff + name:data.index(b"\0", stroff + name)].decode()
			if typ != 8:
				out[n] = data[off:off + size]
		return out
	nsec, = struct.unpack_from("<H", data, 2)
	symoff, nsym = struct.unpack_from("<II", data, 8)
	optsize, = struct.unpack_from("<H", data, 16)
	strtab = symoff + nsym * 18
	for i in range(nsec):
		o = 20 + optsize + i * 40
		raw = data[o:o + 8].rstrip(b"\0")
		if raw.startswith(b"/"):
			so = strtab + int(raw[1:])
			raw = data[so:data.index(b"\0", so)]
		size, off = struct.unpack_from("<II", data, o + 16)
		out[raw.decode()] = data[off:off + size]
	return out


def build(job, out_dir, work_root, keep_work):
	cc, strip, fmt, arch, compiler, ldflags, _ = TOOLCHAINS[job.tc]
	nm = strip.replace("strip", "nm")
	work = os.path.join(work_root, job.name)
	shutil.rmtree(work, ignore_errors=True)
	os.makedirs(os.path.join(work, "o"))
	log = []
	try:
		objs, items, obj_secs = [], {}, {}
		for src in job.sources:
			base = src.replace("/", "_").rsplit(".", 1)[0]
			obj = "o/%s.o" % base
			asm = os.path.join(work, "o", base + ".s")
			# Compile to assembler, label every statement (see gaslist), assemble.
			run(cc + recipes.OPTS[job.opt] + job.cflags + ["-S", src, "-o", asm], job.src_dir, log)
			with open(asm, encoding="utf-8", errors="surrogateescape") as f:
				text, labels = gaslist.annotate(f.read())
			with open(asm, "w", encoding="utf-8", errors="surrogateescape") as f:
				f.write(text)
			run(cc + ["-c", asm, "-o", os.path.join(work, obj)], work, log)
			proc = subprocess.run([nm, "--defined-only", obj], cwd=work, stdout=subprocess.PIPE,
					      check=True)
			items[obj] = gaslist.section_items(labels, gaslist.parse_nm(proc.stdout.decode()))
			with open(os.path.join(work, obj), "rb") as f:
				obj_secs[obj] = object_sections(f.read())
			objs.append(obj)
		exe = job.name + ".full"
		run(cc + recipes.OPTS[job.opt] + objs + ["-o", exe, "-Wl,-Map=link.map"] + ldflags, work, log)
		final = os.path.join(out_dir, job.name)
		run([strip, "-o", final, exe], work, log)
		with open(os.path.join(work, "link.map"), encoding="utf-8", errors="replace") as f:
			contributions = gaslist.parse_map(f.read())
		starts, known, where, dranges = gaslist.combine(items, contributions)
		with open(final, "rb") as f:
			data = f.read()
		secs = file_sections(data)
		# Self-check: each start's first byte is the object's byte at that offset (a first byte is
		# an opcode or prefix, never relocated).
		bad = [va for obj, sec, va, off in where
		       if off >= len(obj_secs[obj].get(sec, b"")) or byte_at(secs, data, va) != obj_secs[obj][sec][off]]
		if bad or not starts:
			raise RuntimeError("%d of %d instruction starts do not match the file (first at %#x)" %
					   (len(bad), len(starts), bad[0] if bad else 0))
		with open(final + ".truth", "w") as f:
			f.writelines("%#x\n" % va for va in starts)
		with open(final + ".known", "w") as f:
			f.writelines("%#x %#x\n" % r for r in known)
		with open(final + ".data", "w") as f:
			f.writelines("%#x %#x\n" % r for r in dranges)
		if not keep_work:
			shutil.rmtree(work, ignore_errors=True)
		return [job.name, job.name + ".truth", fmt, arch, compiler, job.cls, job.program, job.opt], None
	except (RuntimeError, OSError, ValueError, struct.error, subprocess.CalledProcessError) as e:
		with open(os.path.join(work, "build.log"), "w") as f:
			f.write("\n".join(log))
		return None, "%s: %s (log: %s)" % (job.name, e, os.path.join(work, "build.log"))


def plain_jobs(src_root, gen_dir, programs, opts):
	jobs = []
	# Debian's luaconf.h wants this generated header outside Windows.
	os.makedirs(gen_dir, exist_ok=True)
	for v in ("5.1", "5.2", "5.3", "5.4"):
		with open(os.path.join(gen_dir, "lua%s-deb-multiarch.h" % v), "w") as f:
			f.write('#define DEB_HOST_MULTIARCH "x86_64-linux-gnu"\n')
	for pkg, prog in programs:
		src = os.path.join(src_root, pkg)
		if not os.path.isdir(src):
			print("skip %s: %s missing (run make corpus first)" % (prog, src), file=sys.stderr)
			continue
		r = recipes.RECIPES[pkg]
		psrc = r["programs"][prog]
		srcs = list(psrc) if prog in r.get("standalone", []) else recipes.lib_sources(pkg, src) + list(psrc)
		if pkg in recipes.PREPARE:
			recipes.PREPARE[pkg](src, os.devnull)
		for tc, spec in TOOLCHAINS.items():
			if spec[6]:
				continue
			for opt in opts:
				name = "%s-%s-%s%s" % (tc, opt, prog, ".exe" if tc.startswith("pe") else "")
				jobs.append(Job(name, tc, opt, "plain", prog, src, srcs, r["cflags"] + ["-I" + gen_dir]))
	return jobs


def datacode_jobs(gen_dir, seeds, opts):
	jobs = []
	os.makedirs(gen_dir, exist_ok=True)
	for seed in seeds:
		for fs in (False, True):
			path = os.path.join(gen_dir, "dc%d%s.c" % (seed, "-fs" if fs else ""))
			with open(path, "w") as f:
				f.write(gen_datacode.generate(seed, fs))
		for tc, spec in TOOLCHAINS.items():
			for opt in opts:
				prog = "dc%d" % seed
				name = "%s-%s-%s%s" % (tc, opt, prog, ".exe" if tc.startswith("pe") else "")
				src = "dc%d%s.c" % (seed, "-fs" if spec[6] else "")
				jobs.append(Job(name, tc, opt, "datacode", prog, gen_dir, [src], []))
	return jobs


def main():
	ap = argparse.ArgumentParser(description=__doc__)
	ap.add_argument("--out", default=os.path.join(ROOT, "corpus", "disasm-truth"))
	ap.add_argument("--src", default=os.path.join(ROOT, "corpus", ".src"))
	ap.add_argument("--small", action="store_true")
	ap.add_argument("--jobs", type=int, default=2)
	ap.add_argument("--only", default="", help="build only binaries whose name contains this")
	ap.add_argument("--keep-work", action="store_true", help="keep objects, .s files and maps of successes")
	a = ap.parse_args()
	out = os.path.abspath(a.out)
	os.makedirs(out, exist_ok=True)
	work = os.path.join(out, ".work")
	opts = ["O2"] if a.small else ["O0", "O2"]
	seeds = [1, 2] if a.small else list(range(1, 13))
	jobs = datacode_jobs(os.path.join(work, "gen"), seeds, opts)
	jobs += plain_jobs(a.src, os.path.join(work, "gen"), PLAIN_SMALL if a.small else PLAIN_FULL, opts)
	jobs = [j for j in jobs if a.only in j.name]
	# The largest first so that two workers finish together.
	jobs.sort(key=lambda j: -len(j.sources))
	rows, errors = [], []
	with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
		for row, err in ex.map(lambda j: build(j, out, work, a.keep_work), jobs):
			if row:
				rows.append(row)
			else:
				errors.append(err)
				print("failed: " + err, file=sys.stderr)
	rows.sort()
	with open(os.path.join(out, "manifest.csv"), "w", newline="") as f:
		w = csv.writer(f, lineterminator="\n")
		w.writerow(["file", "truth", "format", "arch", "compiler", "class", "program", "opt"])
		w.writerows(rows)
	print("disasm-truth: %d binaries in %s, %d failed" % (len(rows), out, len(errors)))
	return 0 if rows and not errors else 1


if __name__ == "__main__":
	sys.exit(main())
