# Instruction starts from the tools that made the code: the compiler's assembler source, the
# assembler's symbol table and the linker's map.
#
# annotate() reads the assembler source a compiler wrote (gcc/clang -S), puts one statement per line
# and inserts a label of ours (`__mmt.N`) before every statement that may emit bytes, remembering
# which section the statement is in and what it is: an instruction, data (.byte, .long, .ascii, ...),
# zero padding, or something else. GNU as then assembles it; the labels' values in the object's
# symbol table (parse_nm()) are the offsets of the statements in their sections, and the next label
# in the same section ends each one. parse_map() reads `ld -Map` output: where each input section of
# each object landed. combine() gives absolute instruction starts and "known" byte ranges.
#
# Labels do not change code: they emit nothing, and relaxation only depends on distances. We do not
# use the assembler listing (-al): it numbers lines per statement but prints physical lines, and
# mingw's `.def ... .endef` and SEH directives put it out of step with its text.
#
# What counts as known: an instruction's bytes (its first a start, the others not), data directives
# and zero fill (non-starts). Unknown, never scored: alignment filled with NOPs or INT3 (whether a
# long NOP is one instruction or padding is a convention), .nops, directives we do not classify.
# Limits: `.rept`/`.macro`/`.irp` and subsections are refused (the compilers we drive emit none).
import re

PREFIXES = {"rep", "repe", "repz", "repne", "repnz", "lock", "data16", "data32", "addr16", "addr32", "rex",
	    "rex64", "cs", "ds", "es", "fs", "gs", "ss", "notrack", "bnd", "xacquire", "xrelease", "rex.w",
	    "{vex}", "{vex3}", "{evex}"}
DATA_DIRECTIVES = {".byte", ".short", ".value", ".word", ".hword", ".2byte", ".long", ".int", ".4byte",
		   ".quad", ".8byte", ".octa", ".ascii", ".asciz", ".string", ".string8", ".uleb128",
		   ".sleb128", ".single", ".float", ".double", ".dc", ".dc.b", ".dc.w", ".dc.l", ".dc.a",
		   ".rva", ".secrel32"}
ALIGN_DIRECTIVES = {".p2align", ".balign", ".align", ".p2alignw", ".p2alignl", ".balignw", ".balignl"}
FILL_DIRECTIVES = {".skip", ".space", ".zero", ".fill"}
# Directives that never emit bytes into the current section.
NO_BYTES = {".globl", ".global", ".section", ".text", ".data", ".bss", ".type", ".size", ".def", ".scl",
	    ".endef", ".file", ".local", ".weak", ".hidden", ".protected", ".previous", ".pushsection",
	    ".popsection", ".set", ".equ", ".equiv", ".linkonce", ".intel_syntax", ".att_syntax", ".code32",
	    ".code64", ".comm", ".lcomm", ".loc", ".ident", ".addrsig", ".addrsig_sym", ".weakref", ".symver",
	    ".end", ".extern"}
REFUSED = {".rept", ".irp", ".irpc", ".macro", ".subsection", ".org", ".if", ".ifdef", ".include", ".incbin"}

INSN, DATA, ZEROPAD, UNKNOWN = "insn", "data", "zeropad", "unknown"
LABEL_PREFIX = "__mmt."

_WAIT_FORMS = re.compile(r'^(fstsw|fstcw|finit|fclex|fsave|fstenv)[slw]?$')
_LABELS = re.compile(r'^\s*(?:(?:[A-Za-z_.$][\w.$@]*|\d+)\s*:\s*)+')


def _scan(text, stop):
	"""Index of the first char in `stop` outside string quotes, or len(text)."""
	quoted, esc = False, False
	for i, ch in enumerate(text):
		if quoted:
			if esc:
				esc = False
			elif ch == "\\":
				esc = True
			elif ch == '"':
				quoted = False
		elif ch == '"':
			quoted = True
		elif ch in stop:
			return i
	return len(text)


def strip_comment(text):
	"""Drop a '#' comment (outside quotes) and the whole of a line starting with '/' (COFF)."""
	if text.lstrip().startswith("/"):
		return ""
	return text[:_scan(text, "#")]


def split_statements(text):
	"""Split on ';' outside quotes (gas's statement separator); drops empty pieces."""
	parts = []
	while True:
		i = _scan(text, ";")
		parts.append(text[:i].strip())
		if i >= len(text):
			break
		text = text[i + 1:]
	return [p for p in parts if p]


def split_label(stmt):
	"""(labels text, rest) of a statement: `foo: .L3: movl ...` -> ("foo: .L3:", "movl ...")."""
	m = _LABELS.match(stmt)
	if not m:
		return "", stmt
	return m.group(0).strip(), stmt[m.end():].strip()


def _int_or_none(s):
	try:
		return int(s.strip(), 0)
	except ValueError:
		return None


def classify(stmt):
	"""Kind of the bytes one statement (no labels) emits: INSN, DATA, ZEROPAD, UNKNOWN; None if none."""
	words = stmt.split()
	if not words:
		return None
	word = words[0].lower()
	if _WAIT_FORMS.match(word):
		# `fstsw` is two instructions to the CPU (fwait, then fnstsw) but one statement: either
		# count is defensible, so the bytes are not scored.
		return UNKNOWN
	if not word.startswith("."):
		return INSN
	if word in NO_BYTES or word.startswith(".seh_") or word.startswith(".cfi_"):
		return None
	if word in DATA_DIRECTIVES:
		return DATA
	args = [a.strip() for a in stmt[len(word):].split(",")]
	if word in ALIGN_DIRECTIVES:
		fill = _int_or_none(args[1]) if len(args) > 1 and args[1] else None
		return ZEROPAD if fill == 0 else UNKNOWN
	if word in FILL_DIRECTIVES:
		if word == ".fill":
			val = _int_or_none(args[2]) if len(args) > 2 and args[2] else 0
		else:
			val = _int_or_none(args[1]) if len(args) > 1 and args[1] else 0
		return ZEROPAD if val == 0 else DATA
	return UNKNOWN


class Sections:
	"""The current section as section directives move it (.section, .pushsection, .previous...)."""

	def __init__(self):
		self.cur, self.prev, self.stack = ".text", ".text", []

	def apply(self, stmt):
		words = stmt.split(None, 1)
		d = words[0].lower()
		arg = words[1] if len(words) > 1 else ""
		name = arg.split(",")[0].strip().strip('"')
		if d in (".text", ".data", ".bss"):
			if arg.strip():
				raise ValueError("subsection %r not supported" % stmt)
			self.cur, self.prev = d, self.cur
		elif d == ".section":
			self.cur, self.prev = name, self.cur
		elif d == ".pushsection":
			self.stack.append((self.cur, self.prev))
			self.cur, self.prev = name, self.cur
		elif d == ".popsection":
			if self.stack:
				self.cur, self.prev = self.stack.pop()
		elif d == ".previous":
			self.cur, self.prev = self.prev, self.cur


def annotate(text):
	"""Return (new source, [(label, section, kind, source line number)]).

	The new source has one statement per line (a prefix written `rep;stosq` stays with its
	instruction), our label before each statement that may emit bytes, and at the end a label
	closing each section that had any. Only code sections (.text*) get labels."""
	out, labels = [], []
	secs = Sections()
	seen = []
	for lineno, line in enumerate(text.split("\n"), 1):
		code = strip_comment(line)
		stmts = split_statements(code)
		if not stmts:
			out.append(line if not line.lstrip().startswith("/") else "")
			continue
		merged, pending = [], ""
		for s in stmts:
			lab, rest = split_label(s)
			if lab:
				merged.append(lab)
			if not rest:
				continue
			words = rest.split()
			if words[0].lower() in PREFIXES and len(words) == 1:
				pending += rest + " "
				continue
			merged.append(pending + rest)
			pending = ""
		if pending:
			merged.append(pending.strip())
		for s in merged:
			if s.endswith(":"):
				out.append(s)
				continue
			word = s.split()[0].lower()
			if word in REFUSED:
				raise ValueError("line %d: %s not supported" % (lineno, word))
			if word.startswith("."):
				secs.apply(s)
			kind = classify(s)
			if kind is not None and is_code_section(secs.cur):
				name = "%s%d" % (LABEL_PREFIX, len(labels))
				labels.append((name, secs.cur, kind, lineno))
				if secs.cur not in seen:
					seen.append(secs.cur)
				out.append(name + ":")
			out.append("\t" + s)
	for sec in seen:
		out.append("\t.section\t%s" % sec if sec not in (".text", ".data", ".bss") else "\t" + sec)
		name = "%s%d" % (LABEL_PREFIX, len(labels))
		labels.append((name, sec, "end", 0))
		out.append(name + ":")
	return "\n".join(out) + "\n", labels


def parse_nm(text):
	"""{symbol: value} of our labels from `nm` output ("value type name" lines)."""
	vals = {}
	for line in text.splitlines():
		f = line.split()
		if len(f) == 3 and f[2].startswith(LABEL_PREFIX):
			vals[f[2]] = int(f[0], 16)
	return vals


class Item:
	__slots__ = ("offset", "kind", "line")

	def __init__(self, offset, kind, line):
		self.offset, self.kind, self.line = offset, kind, line


def section_items(labels, values):
	"""{section: [Item sorted by offset]} from annotate()'s labels and parse_nm()'s values."""
	secs = {}
	for order, (name, sec, kind, lineno) in enumerate(labels):
		if name not in values:
			raise ValueError("label %s (line %d) missing from the symbol table" % (name, lineno))
		secs.setdefault(sec, []).append((values[name], order, Item(values[name], kind, lineno)))
	return {s: [it for _, _, it in sorted(v, key=lambda t: (t[0], t[1]))] for s, v in secs.items()}


def parse_map(text):
	"""Return [(input section, object file, address, size)] from the memory map part of `ld -Map`."""
	out = []
	start = text.find("Linker script and memory map")
	if start < 0:
		return out
	pending = None
	entry = re.compile(r'^ (\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$')
	cont = re.compile(r'^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$')
	for line in text[start:].splitlines():
		m = entry.match(line)
		if m and not m.group(1).startswith("*"):
			out.append((m.group(1), m.group(4).strip(), int(m.group(2), 16), int(m.group(3), 16)))
			pending = None
			continue
		if pending is not None:
			m = cont.match(line)
			if m:
				out.append((pending, m.group(3).strip(), int(m.group(1), 16), int(m.group(2), 16)))
			pending = None
			continue
		m = re.match(r'^ (\.\S+)$', line)
		if m:
			pending = m.group(1)
	return out


def is_code_section(name):
	return name == ".text" or name.startswith(".text.") or name.startswith(".text$")


def section_truth(items, base, size):
	"""(starts, known ranges, starts as section offsets, data ranges) of one section placed at `base`.

	Items are in source order (offsets never go back without .org); each runs to the next."""
	starts, known, offs, data = [], [], [], []
	for i, it in enumerate(items):
		if it.kind == "end":
			continue
		end = items[i + 1].offset if i + 1 < len(items) else size
		if end <= it.offset:
			continue  # emitted nothing (e.g. alignment already met)
		if it.kind == INSN:
			if end - it.offset > 15:
				raise ValueError("instruction at line %d is %d bytes" % (it.line, end - it.offset))
			starts.append(base + it.offset)
			offs.append(it.offset)
		elif it.kind in (DATA, ZEROPAD):
			data.append((base + it.offset, base + end))
		else:
			continue
		known.append((base + it.offset, base + end))
	return starts, known, offs, data


def merge_ranges(ranges):
	out = []
	for s, e in sorted(ranges):
		if out and s <= out[-1][1]:
			out[-1] = (out[-1][0], max(out[-1][1], e))
		else:
			out.append((s, e))
	return out


def combine(objects, contributions):
	"""objects: {object path as the map names it: section_items() result}; contributions: parse_map().

	Returns (sorted starts, merged known ranges, [(object, section, va, offset) of each start],
	merged data ranges (the known bytes that belong to no instruction))."""
	starts, known, where, data = [], [], [], []
	seen = set()
	for sec, obj, addr, size in contributions:
		if obj not in objects or not is_code_section(sec) or size == 0:
			continue
		if (obj, sec) in seen:
			raise ValueError("section %s of %s placed twice" % (sec, obj))
		seen.add((obj, sec))
		s, k, offs, d = section_truth(objects[obj].get(sec, []), addr, size)
		starts += s
		known += k
		data += d
		where += [(obj, sec, va, off) for va, off in zip(s, offs)]
	return sorted(set(starts)), merge_ranges(known), where, merge_ranges(data)
