#!/usr/bin/env python3
# Independent imphash (pefile definition) from objdump -p import listings;
# used once to derive the expected values in test_binfmt.c.
# usage: tests/binfmt/imphash.py FILE...
import sys, re, subprocess, hashlib
for f in sys.argv[1:]:
    out = subprocess.run(['x86_64-w64-mingw32-objdump','-p',f],capture_output=True,text=True).stdout
    parts=[]; dll=None; n=0
    for line in out.splitlines():
        m = re.match(r'\s*DLL Name: (\S+)', line)
        if m: dll=m.group(1).lower(); dll = dll.rsplit('.',1)[0] if dll.rsplit('.',1)[-1] in ('dll','ocx','sys') else dll; continue
        m = re.match(r'\s*[0-9a-f]+\s+(\d+)\s+(\S+)\s*$', line)
        if dll and m: parts.append(dll+'.'+m.group(2).lower()); n+=1; continue
        if line.strip()=='' : pass
        if 'The Function Table' in line or 'Export' in line and dll: dll=None
    s=','.join(parts)
    print(f, n, hashlib.md5(s.encode()).hexdigest(), s[:80])
