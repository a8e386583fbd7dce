#!/bin/sh
# Runs every cmocka unit-test binary given as an argument and prints one
# closing line that counts binaries: "unit: N passed, N failed".
passed=0
failed=0
failed_names=""
for t in "$@"; do
	if "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failed_names="$failed_names $(basename "$t")"
	fi
done
[ -n "$failed_names" ] && echo "failed unit test binaries:$failed_names"
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
