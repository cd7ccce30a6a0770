#!/usr/bin/env python3
"""Replace the text between <!-- NAME:begin --> and <!-- NAME:end --> in FILE
with standard input (appending the section when the markers are missing).

usage: some-bench | scripts/doc-section.py NAME FILE "how it was measured"
"""
import datetime
import sys

name, path, how = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.stdin.read().strip()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
section = f"{begin}\n\nMeasured on {stamp} by `{how}`.\n\n{body}\n\n{end}"
doc = open(path).read()
if begin in doc and end in doc:
    doc = doc[: doc.index(begin)] + section + doc[doc.index(end) + len(end):]
else:
    doc = doc.rstrip() + "\n\n" + section + "\n"
open(path, "w").write(doc)
print(body)
