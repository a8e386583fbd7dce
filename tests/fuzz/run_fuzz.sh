#!/bin/sh
# Runs every libFuzzer binary given for SECONDS each, two at a time, on a
# scratch corpus seeded from tests/fuzz/corpus/<name>/ (the checked-in seeds
# are never written to). A crash leaves its reproducer in build-fuzz/crashes/.
# Closing line: "fuzz: N passed, N failed".
set -u
seconds=$1
shift
mkdir -p build-fuzz/crashes build-fuzz/logs
run_one() {
	bin=$1
	name=$(basename "$bin")
	scratch=$(mktemp -d)
	seeds="tests/fuzz/corpus/$name"
	[ -d "$seeds" ] || seeds=""
	if "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="build-fuzz/crashes/$name-" \
		"$scratch" $seeds >"build-fuzz/logs/$name.log" 2>&1; then
		echo "fuzz $name: ok ($(grep -c . "build-fuzz/logs/$name.log") log lines, $(ls "$scratch" | wc -l) new inputs)"
		rm -rf "$scratch"
		return 0
	fi
	echo "fuzz $name: FAILED, see build-fuzz/logs/$name.log"
	tail -30 "build-fuzz/logs/$name.log"
	rm -rf "$scratch"
	return 1
}
passed=0
failed=0
set -- "$@"
while [ $# -gt 0 ]; do
	a=$1; shift
	b=""
	if [ $# -gt 0 ]; then b=$1; shift; fi
	run_one "$a" > build-fuzz/logs/.a.out 2>&1 &
	pa=$!
	if [ -n "$b" ]; then run_one "$b" > build-fuzz/logs/.b.out 2>&1 & pb=$!; fi
	if wait $pa; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	cat build-fuzz/logs/.a.out
	if [ -n "$b" ]; then
		if wait $pb; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
		cat build-fuzz/logs/.b.out
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
