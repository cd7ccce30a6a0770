# Tests of the ground-truth builder's parsers (scripts/disasm-truth/gaslist.py) on a small example
# produced once and checked in (testdata/: tiny.s, the nm output of its annotated object, the map),
# and on inline snippets. Every expected address is worked out by hand from tiny.s.
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("MAMORI_SRC", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(ROOT, "scripts", "disasm-truth"))
import gaslist  # noqa: E402


def data(name):
	with open(os.path.join(HERE, "testdata", name)) as f:
		return f.read()


class Tiny(unittest.TestCase):
	def setUp(self):
		text, self.labels = gaslist.annotate(data("tiny.s"))
		self.items = gaslist.section_items(self.labels, gaslist.parse_nm(data("tiny.nm")))
		self.contrib = gaslist.parse_map(data("tiny.map"))

	def test_map(self):
		mine = [c for c in self.contrib if c[1] == "tiny.o" and gaslist.is_code_section(c[0])]
		self.assertEqual(mine, [(".text.startup", "tiny.o", 0x401000, 6), (".text", "tiny.o", 0x401010, 0x20)])

	def test_kinds(self):
		kinds = [(k, line) for _, sec, k, line in self.labels if sec == ".text"]
		# push, mov, rep stosb, jmp; .byte, .ascii; pop, ret; nop-filled .p2align; xor; ret (same
		# line as xor); zero-filled .p2align; .long; int3-filled .p2align; the end of the section.
		self.assertEqual([k for k, _ in kinds], ["insn"] * 4 + ["data"] * 2 + ["insn"] * 2 + ["unknown"] +
				 ["insn"] * 2 + ["zeropad", "data", "unknown", "end"])

	def test_truth(self):
		starts, known, where, data = gaslist.combine({"tiny.o": self.items}, self.contrib)
		# .text.startup at 0x401000: call f (5 bytes), hlt. .text at 0x401010: push (1), mov (3),
		# rep stosb (2), jmp (2), 5 bytes of data, pop, ret, 1 byte of NOP padding (unknown),
		# xor (2), ret, 5 zero bytes, .long, 4 bytes of INT3 padding (unknown).
		self.assertEqual(starts, [0x401000, 0x401005, 0x401010, 0x401011, 0x401014, 0x401016, 0x40101d,
					  0x40101e, 0x401020, 0x401022])
		self.assertEqual(known, [(0x401000, 0x401006), (0x401010, 0x40101F), (0x401020, 0x40102C)])
		self.assertIn(("tiny.o", ".text", 0x401016, 6), where)
		self.assertEqual(data, [(0x401018, 0x40101D), (0x401023, 0x40102C)])


class Snippets(unittest.TestCase):
	def test_statements_and_coff(self):
		src = ("\t.def\tf;\t.scl\t2;\t.type\t32;\t.endef\n"
		       "f:\trep;stosq\n"
		       "\tmovl $1, %eax # a comment; not a statement\n"
		       "\tfstsw %ax\n"
		       '\t.ascii "a;b#c"\n')
		text, labels = gaslist.annotate(src)
		self.assertEqual([k for _, _, k, _ in labels], ["insn", "insn", "unknown", "data", "end"])
		self.assertIn("\trep stosq", text.split("\n"))
		self.assertIn('\t.ascii "a;b#c"', text.split("\n"))
		self.assertNotIn("not a statement", text)

	def test_sections(self):
		src = ("\t.section .rodata\n\t.long 1\n\t.pushsection .text.hot,\"ax\"\n\tret\n\t.popsection\n"
		       "\t.long 2\n\t.text\n\tnop\n\t.previous\n\t.long 3\n")
		_, labels = gaslist.annotate(src)
		# Only code sections are labelled: ret in .text.hot, nop in .text.
		self.assertEqual([(s, k) for _, s, k, _ in labels],
				 [(".text.hot", "insn"), (".text", "insn"), (".text.hot", "end"), (".text", "end")])
		with self.assertRaises(ValueError):
			gaslist.annotate("\t.rept 3\n\tnop\n\t.endr\n")

	def test_map_wrapped(self):
		m = ("Discarded input sections\n .text 0x0 0x10 gone.o\n"
		     "Linker script and memory map\n"
		     ".text           0x0000000140001000     0x7a08\n"
		     " *(.text)\n"
		     " .text          0x0000000140001000      0x530 crt2.o\n"
		     " .text.unlikely\n"
		     "                0x0000000140001530       0x2d o/a.o\n"
		     " *fill*         0x000000014000155d        0x3 \n")
		self.assertEqual(gaslist.parse_map(m), [(".text", "crt2.o", 0x140001000, 0x530),
							(".text.unlikely", "o/a.o", 0x140001530, 0x2D)])

	def test_instruction_too_long(self):
		items = [gaslist.Item(0, "insn", 1), gaslist.Item(20, "end", 0)]
		with self.assertRaises(ValueError):
			gaslist.section_truth(items, 0, 20)


if __name__ == "__main__":
	unittest.main()
