# Byte-level variants of a PE file that keep its code, as much of a real malware collection does.
#
# A variant may get another COFF TimeDateStamp, changed same-length strings in .rdata/.data, an
# appended overlay of random bytes, and a correct PE checksum. Code sections are never touched, so a
# variant disassembles to the same instructions as its original. Everything is driven by a caller's
# random.Random, so a fixed seed gives identical files on every run. Limits: only well-formed PE files
# written by our own toolchain are expected; a malformed one raises ValueError.
import struct

KINDS = ("ts", "str", "ov", "ck")

# 2008-01-01 .. 2024-12-31: timestamps a real collection would carry.
TS_MIN = 1199145600
TS_MAX = 1735603200


class PE:
	def __init__(self, data):
		self.data = bytearray(data)
		if self.data[:2] != b"MZ" or len(self.data) < 0x40:
			raise ValueError("no MZ header")
		self.pe = struct.unpack_from("<I", self.data, 0x3C)[0]
		if self.pe + 24 > len(self.data) or self.data[self.pe:self.pe + 4] != b"PE\0\0":
			raise ValueError("no PE signature")
		coff = self.pe + 4
		self.nsect, = struct.unpack_from("<H", self.data, coff + 2)
		opt_size, = struct.unpack_from("<H", self.data, coff + 16)
		self.opt = coff + 20
		magic, = struct.unpack_from("<H", self.data, self.opt)
		if magic not in (0x10B, 0x20B):
			raise ValueError("bad optional header magic")
		self.sect = self.opt + opt_size
		if self.sect + 40 * self.nsect > len(self.data):
			raise ValueError("section table out of file")

	def sections(self):
		for i in range(self.nsect):
			off = self.sect + 40 * i
			name = bytes(self.data[off:off + 8]).rstrip(b"\0").decode("latin-1")
			vsize, _, rsize, rptr = struct.unpack_from("<IIII", self.data, off + 8)
			chars, = struct.unpack_from("<I", self.data, off + 36)
			yield name, rptr, min(rsize, vsize) if vsize else rsize, chars

	def set_timestamp(self, ts):
		struct.pack_into("<I", self.data, self.pe + 8, ts)

	def set_checksum(self):
		ck_off = self.opt + 64
		struct.pack_into("<I", self.data, ck_off, 0)
		buf = bytes(self.data) + (b"\0" if len(self.data) % 2 else b"")
		total = 0
		for (w,) in struct.iter_unpack("<H", buf):
			total += w
			total = (total & 0xFFFF) + (total >> 16)
		total = (total & 0xFFFF) + (total >> 16)
		struct.pack_into("<I", self.data, ck_off, (total + len(self.data)) & 0xFFFFFFFF)

	def change_strings(self, rng, count):
		"""Change up to count printable strings in data sections, same length; returns how many."""
		IMAGE_SCN_MEM_EXECUTE = 0x20000000
		runs = []
		for name, ptr, size, chars in self.sections():
			if name not in (".rdata", ".data") or chars & IMAGE_SCN_MEM_EXECUTE:
				continue
			end = min(ptr + size, len(self.data))
			i = ptr
			while i < end:
				j = i
				while j < end and 0x20 <= self.data[j] < 0x7F:
					j += 1
				# A NUL-terminated text run with no format directives or escapes: a message
				# or a version string, whose change cannot alter the code path.
				if j - i >= 8 and j < end and self.data[j] == 0:
					text = bytes(self.data[i:j])
					if b"%" not in text and b"\\" not in text and sum(chr(c).isalpha() for c in text) >= 4:
						runs.append((i, j))
				i = j + 1
		if not runs:
			return 0
		picked = rng.sample(runs, min(count, len(runs)))
		for start, end in picked:
			letters = [k for k in range(start, end) if chr(self.data[k]).isalnum()]
			for k in rng.sample(letters, max(1, len(letters) // 6)):
				c = chr(self.data[k])
				if c.isdigit():
					alphabet = "0123456789"
				elif c.isupper():
					alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				else:
					alphabet = "abcdefghijklmnopqrstuvwxyz"
				self.data[k] = ord(rng.choice(alphabet.replace(c, "")))
		return len(picked)

	def append_overlay(self, rng):
		n = rng.randint(64, 48 * 1024)
		self.data += rng.randbytes(n)


def make_variant(data, rng):
	"""Return (bytes, kinds) for one variant of data; every variant gets a fresh timestamp."""
	pe = PE(data)
	kinds = ["ts"]
	pe.set_timestamp(rng.randint(TS_MIN, TS_MAX))
	if rng.random() < 0.45 and pe.change_strings(rng, rng.randint(1, 3)):
		kinds.append("str")
	if rng.random() < 0.4:
		pe.append_overlay(rng)
		kinds.append("ov")
	if rng.random() < 0.35:
		pe.set_checksum()
		kinds.append("ck")
	return bytes(pe.data), kinds
