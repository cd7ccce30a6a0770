# Shared by the CLI contract tests (tests/cli/test_*.sh): a scratch folder
# removed at exit, pass/fail counters, and the checks they all use.
#   test_name=NAME; . "$(dirname "$0")/lib.sh"   (NAME goes into the scratch folder's name)
tmp=$(mktemp -d "/tmp/mamori-test-${test_name:?}-XXXXXX")
# Sample stores are read-only (mode 0444): make them writable to remove them.
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
pass=0
fail=0

check() { # check NAME EXPECTED_EXIT CMD...  (stdout in $tmp/out, stderr in $tmp/err)
	name="$1"; want="$2"; shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -eq "$want" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL: $name: exit $got, wanted $want"; sed 's/^/  stderr: /' "$tmp/err" | head -5
	fi
}

has() { # has NAME FILE TEXT
	if grep -q -- "$3" "$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1: no '$3' in $2"; fi
}

finish() { # the closing line, and the exit status of the whole test
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
}
