# Writes the "datacode" test programs: C files that put data inside code on purpose, for the
# disassembly ground truth (scripts/disasm-truth/truth.py compiles them and takes the instruction
# starts from the assembler, see gaslist.py).
#
# Each program, from a seed (deterministic), mixes in .text:
#   - C functions with switches (the compilers' own jump tables land in .rodata/.rdata), some of them
#     static and reached only through a table of function pointers;
#   - hand-written asm functions (naked) whose jump table of .long entries sits inside .text, right
#     after the indirect jump;
#   - data blobs between functions (naked functions holding only data, so that gcc and clang both
#     keep them in place): bytes that decode as plausible x86 (prologues, calls, movs), strings,
#     .long tables, and blobs ending in an opcode or prefix byte that swallows the start of the
#     next function when decoded linearly;
#   - data after an unconditional jmp inside a C function;
#   - alignment padding filled with NOPs (default), INT3 (0xcc) and zeros.
# Limits: the programs are never run (samples are data); they only have to assemble and link. The
# freestanding variant (for i386 ELF without a 32-bit libc) has its own _start.
import random
import sys

CODELIKE_64 = [
	[0x55, 0x48, 0x89, 0xE5], [0x48, 0x83, 0xEC, 0x28], [0x53, 0x48, 0x83, 0xEC, 0x20],
	[0x41, 0x57, 0x41, 0x56, 0x41, 0x55], [0x48, 0x89, 0x5C, 0x24, 0x08], [0x48, 0x8B, 0x05],
	[0x48, 0x8D, 0x0D], [0x8B, 0x45, 0xFC], [0x89, 0xC8], [0x31, 0xC0], [0xC3], [0xC9, 0xC3],
	[0x48, 0x85, 0xC0], [0x74, 0x0C], [0x0F, 0x84], [0xE8], [0xE9], [0xFF, 0x15], [0x66, 0x90],
]
CODELIKE_32 = [
	[0x55, 0x89, 0xE5], [0x83, 0xEC, 0x18], [0x56, 0x53, 0x83, 0xEC, 0x14], [0x8B, 0x45, 0x08],
	[0x89, 0x04, 0x24], [0x31, 0xC0], [0xC3], [0xC9, 0xC3], [0x85, 0xC0], [0x74, 0x0C], [0x0F, 0x84],
	[0xE8], [0xE9], [0xFF, 0x15], [0x8D, 0x76, 0x00], [0xA1],
]
# Ends of blobs that make a linear sweep eat the next function's first bytes.
SWALLOW = [[0xE8], [0xE9], [0x0F], [0x48, 0x8B], [0x66, 0x0F, 0x3A], [0xB8], [0x8B, 0x84], [0xC7, 0x05]]
STRINGS = ["usage: %s [-v] file\\n", "kernel32.dll", "GetProcAddress", "error %d at %s:%d\\n",
	   "Software\\\\Microsoft\\\\Windows", "hello, world", "%08x %08x\\n", "cannot open %s",
	   "0123456789abcdef", "PATH=/usr/bin:/bin", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "\\x90\\x90\\xeb\\xfe"]


def _rand_bytes(rng, is64):
	pool = CODELIKE_64 if is64 else CODELIKE_32
	out = []
	while len(out) < rng.randint(6, 40):
		piece = list(rng.choice(pool))
		if piece[-1] in (0xE8, 0xE9, 0x15, 0x05, 0x0D, 0x84, 0xA1):
			piece += [rng.randrange(256) for _ in range(4)]
		out += piece
	return out


def _blob(rng):
	"""A top-level asm blob in .text (string literal contents), for both 32- and 64-bit."""
	kind = rng.choice(["code", "code", "string", "table", "swallow", "mixed"])
	lines = ["7:"]
	if kind in ("code", "mixed", "swallow"):
		b64 = _rand_bytes(rng, True)
		b32 = _rand_bytes(rng, False)
		if kind == "swallow":
			tail = rng.choice(SWALLOW)
			b64, b32 = b64 + tail, b32 + tail
		lines.append("#ifdef __x86_64__")
		lines.append(".byte " + ",".join("0x%02x" % x for x in b64))
		lines.append("#else")
		lines.append(".byte " + ",".join("0x%02x" % x for x in b32))
		lines.append("#endif")
	if kind in ("string", "mixed"):
		s = rng.choice(STRINGS)
		lines.append('.asciz "%s"' % s if rng.random() < 0.5 else '.ascii "%s"' % s)
	if kind == "table":
		vals = [str(rng.randrange(0, 0x400)) for _ in range(rng.randint(3, 9))]
		lines.append(".long " + ",".join(vals))
		lines.append(".long 7b - .")
	pad = rng.choice(["", "", ".p2align 4,0xcc", ".p2align 3,0", ".p2align 4", ".balign 8,0"])
	if pad:
		lines.append(pad)
	return lines


def _asm_jt(rng):
	"""A function with its jump table inside .text, just after the indirect jump."""
	n = rng.randint(3, 8)
	vals = [rng.randrange(1, 1000) for _ in range(n)]
	out = []
	out += ["#ifdef __x86_64__", "#ifdef _WIN32", "movl %ecx, %eax", "#else", "movl %edi, %eax", "#endif",
		"cmpl $%d, %%eax" % (n - 1), "ja 9f", "leaq 8f(%rip), %rdx", "movslq (%rdx,%rax,4), %rax",
		"addq %rdx, %rax", "jmp *%rax", "8:", ".long " + ",".join("%df-8b" % (10 + i) for i in range(n)),
		"#else", "movl 4(%esp), %eax", "cmpl $%d, %%eax" % (n - 1), "ja 9f", "jmp *8f(,%eax,4)", "8:",
		".long " + ",".join("%df" % (10 + i) for i in range(n)), "#endif"]
	for i, v in enumerate(vals):
		out += ["%d:" % (10 + i), "movl $%d, %%eax" % v, "ret"]
	out += ["9:", "xorl %eax, %eax", "ret"]
	if rng.random() < 0.5:
		out.append(".p2align 4,0xcc")
	return out


def _c_function(rng, name, static):
	ncase = rng.randint(4, 12)
	body = ["%sint %s(int x)" % ("static " if static else "", name), "{", "\tint r = x * %d;" %
		rng.randint(2, 9), "\tswitch (x & 15) {"]
	for c in range(ncase):
		body.append("\tcase %d: r += %d; %s" % (c, rng.randint(1, 500), rng.choice(
			["break;", "r ^= x >> 3; break;", "return r - %d;" % rng.randint(1, 9), "r *= 3; break;"])))
	body += ["\tdefault: r -= 1;", "\t}"]
	if rng.random() < 0.3:
		# Data after an unconditional jump inside a function.
		b = _rand_bytes(rng, True)[:12]
		body.append('\t__asm__ volatile("jmp 1f\\n\\t.byte %s\\n1:\\n" ::: "memory");' %
			    ",".join("0x%02x" % x for x in b))
	if rng.random() < 0.5:
		body += ["\tfor (int i = 0; i < (x & 7); i++)", "\t\tr = r * 31 + i;"]
	body += ["\treturn r;", "}"]
	return body


def _asm_block(lines):
	"""One basic asm statement; preprocessor lines stay between its string pieces."""
	out = ["\t__asm__("]
	for ln in lines:
		if ln.startswith("#"):
			out.append(ln)
		else:
			out.append('\t\t"' + ln.replace("\\", "\\\\").replace('"', '\\"') + '\\n"')
	out.append("\t);")
	return out


def _naked(name, static, lines):
	# A naked function keeps the blob in function order with both gcc and clang (clang emits all
	# top-level asm ahead of the functions).
	return ["%s__attribute__((naked, used, noinline)) %s(void)" % ("static " if static else "", name), "{"] + \
		_asm_block(lines) + ["}"]


def generate(seed, freestanding):
	rng = random.Random(seed)
	src = ["/* Generated by scripts/disasm-truth/gen_datacode.py, seed %d: data inside code on purpose. */"
	       % seed, "typedef int (*mm_fn)(int);", "volatile int mm_sink;"]
	ptr_only, direct, asm_fns = [], [], []
	nitems = rng.randint(14, 22)
	for k in range(nitems):
		choice = rng.random()
		if choice < 0.4:
			name = "mm_f%d" % k
			static = rng.random() < 0.5
			src += _c_function(rng, name, static)
			(ptr_only if static else direct).append(name)
		elif choice < 0.6:
			name = "mm_jt%d" % k
			src += _naked("int " + name, False, _asm_jt(rng))
			asm_fns.append(name)
		else:
			src += _naked("void mm_dc_anchor_%d" % k, True, _blob(rng))
	if not ptr_only:
		src += _c_function(rng, "mm_fptr", True)
		ptr_only.append("mm_fptr")
	src.append("static mm_fn const mm_table[] = {%s};" % ", ".join(ptr_only + ["(mm_fn)" + a for a in asm_fns]))
	src += ["int main(void);", "int main(void)", "{", "\tint r = mm_sink;"]
	for name in direct:
		src.append("\tr += %s(r);" % name)
	src += ["\tr += mm_table[(unsigned)r %% %d](r);" % len(ptr_only + asm_fns), "\tmm_sink = r;",
		"\treturn r & 0x7f;", "}"]
	if freestanding:
		src += ["void _start(void);", "void _start(void)", "{", "\tint r = main();",
			'\t__asm__ volatile("int $0x80" :: "a"(1), "b"(r));', "\tfor (;;)", "\t\t;", "}"]
	return "\n".join(src) + "\n"


if __name__ == "__main__":
	sys.stdout.write(generate(int(sys.argv[1]), len(sys.argv) > 2 and sys.argv[2] == "freestanding"))
