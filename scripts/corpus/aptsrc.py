#!/usr/bin/python3
# Prints the deb-src line for bookworm main that matches the machine's own bookworm deb entry.
#
# Reads /etc/apt/sources.list, *.list and deb822 *.sources; takes the first enabled "deb" entry whose
# suites include bookworm, and repeats its URI and Signed-By (apt refuses two entries for one URI and
# suite with different Signed-By). Exit 2 when a deb-src for bookworm is already configured (nothing to
# add), exit 1 when no bookworm deb entry exists. Limits: no hosts of its own; only what is configured.
import glob
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "/etc/apt"


def one_line_entries(path):
	with open(path) as f:
		for line in f:
			words = line.split("#", 1)[0].split()
			if len(words) < 3 or words[0] not in ("deb", "deb-src"):
				continue
			typ, opts = words[0], {}
			rest = words[1:]
			if rest[0].startswith("["):
				raw = []
				while rest:
					w = rest.pop(0)
					raw.append(w.strip("[]"))
					if w.endswith("]"):
						break
				for o in raw:
					if "=" in o:
						k, v = o.split("=", 1)
						opts[k.lower()] = v
			if len(rest) >= 2:
				yield typ, rest[0], [rest[1]], opts.get("signed-by")


def deb822_entries(path):
	with open(path) as f:
		stanzas = f.read().split("\n\n")
	for st in stanzas:
		fields, key = {}, None
		for line in st.splitlines():
			if line.startswith("#") or not line.strip():
				continue
			if line[0] in " \t" and key:
				fields[key] += "\n" + line.strip()
				continue
			if ":" in line:
				key, v = line.split(":", 1)
				key = key.strip().lower()
				fields[key] = v.strip()
		if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
			continue
		signed = fields.get("signed-by")
		if signed and "\n" in signed:
			signed = None  # an inline key cannot go on a one-line entry
		for typ in fields.get("types", "").split():
			for uri in fields["uris"].split():
				yield typ, uri, fields.get("suites", "").split(), signed


def main():
	entries = []
	paths = [ROOT + "/sources.list"] + sorted(glob.glob(ROOT + "/sources.list.d/*.list"))
	for p in paths:
		try:
			entries += list(one_line_entries(p))
		except OSError:
			pass
	for p in sorted(glob.glob(ROOT + "/sources.list.d/*.sources")):
		entries += list(deb822_entries(p))
	if any(t == "deb-src" and "bookworm" in s for t, _, s, _ in entries):
		return 2
	for typ, uri, suites, signed in entries:
		if typ == "deb" and "bookworm" in suites:
			opts = "[signed-by=%s] " % signed if signed else ""
			print("deb-src %s%s bookworm main" % (opts, uri))
			return 0
	return 1


if __name__ == "__main__":
	sys.exit(main())
