#!/usr/bin/python3
# Checks a built corpus: labels.csv against the sample files, and that byte variants kept the code.
#
# usage: scripts/corpus/check.py DIR
# Fails (exit 1) when the header is not the 7 columns, a row is malformed, a sha256 repeats, a row has
# no file or a file no row, a file is not PE, or a variant's executable sections differ from its
# original's. Prints the counts per family and subfamily. Limits: reads every sample (about a GiB for
# the full corpus); takes seconds, not minutes.
import collections
import csv
import hashlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pevariant  # noqa: E402

HEADER = ["sha256", "family", "subfamily", "program", "arch", "opt", "stripped"]


def code_sections(data):
	pe = pevariant.PE(data)
	return [bytes(pe.data[p:p + n]) for name, p, n, ch in pe.sections() if ch & 0x20000000]


def main():
	if len(sys.argv) != 2:
		sys.exit("usage: check.py DIR")
	out = sys.argv[1]
	errors = []
	with open(os.path.join(out, "labels.csv"), newline="") as f:
		rows = list(csv.reader(f))
	if not rows or rows[0] != HEADER:
		sys.exit("check: labels.csv header is %r" % (rows[:1],))
	labels = {}
	for i, r in enumerate(rows[1:], 2):
		if len(r) != 7 or not re.fullmatch(r"[0-9a-f]{64}", r[0]) or r[4] not in ("i686", "x86_64") \
		   or r[6] not in ("0", "1") or not all(r[1:6]):
			errors.append("line %d malformed: %r" % (i, r))
			continue
		if r[0] in labels:
			errors.append("line %d repeats sha256 %s" % (i, r[0]))
		labels[r[0]] = r
	files = {}
	for d, _, names in os.walk(os.path.join(out, "samples")):
		for n in names:
			p = os.path.join(d, n)
			with open(p, "rb") as f:
				data = f.read()
			h = hashlib.sha256(data).hexdigest()
			if h in files:
				errors.append("%s is identical to %s" % (p, files[h][0]))
			files[h] = (p, data)
	for h, r in labels.items():
		if h not in files:
			errors.append("row %s (%s) has no file" % (h, "/".join(r[1:])))
		elif os.path.basename(os.path.dirname(files[h][0])) != r[1]:
			errors.append("%s is not under its family %s" % (files[h][0], r[1]))
	for h, (p, _) in files.items():
		if h not in labels:
			errors.append("%s has no row" % p)
	by_name = {os.path.basename(p)[:-4]: (h, data) for h, (p, data) in files.items()}
	variants = 0
	for name, (h, data) in by_name.items():
		try:
			code = code_sections(data)
		except ValueError as e:
			errors.append("%s: not PE: %s" % (name, e))
			continue
		m = re.fullmatch(r"(.*)-v\d+-[a-z_]+", name)
		if not m:
			continue
		variants += 1
		orig = by_name.get(m.group(1))
		if orig is None:
			errors.append("variant %s has no original" % name)
		elif code_sections(orig[1]) != code:
			errors.append("variant %s changed code" % name)
		elif orig[0] in labels and h in labels and labels[orig[0]][1:] != labels[h][1:]:
			errors.append("variant %s is labelled unlike its original" % name)
	fam = collections.Counter(r[1] for r in labels.values())
	sub = collections.Counter(r[2] for r in labels.values())
	print("check: %d rows, %d files, %d variants" % (len(labels), len(files), variants))
	print("check: families: " + ", ".join("%s=%d" % kv for kv in sorted(fam.items())))
	print("check: subfamilies: " + ", ".join("%s=%d" % kv for kv in sorted(sub.items())))
	for e in errors[:20]:
		print("check: " + e)
	if errors:
		print("check: %d errors" % len(errors))
		return 1
	print("check: ok")
	return 0


if __name__ == "__main__":
	sys.exit(main())
