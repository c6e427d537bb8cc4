# Sourced by frappe_suite.sh and browser_suite.sh once $bench_dir is set: the bench's owner, the
# bench command, as_owner, which runs a command as that owner (bench refuses root; with
# frappe_user in the bench config, root's bench drops to that user itself), and run_tests_checked.
owner=$(stat -c %U "$bench_dir")
bench_cmd=$(command -v bench || true)
[ -n "$bench_cmd" ] || bench_cmd=$(eval echo ~"$owner")/benchenv/bin/bench
[ -x "$bench_cmd" ] || { echo "bench command not found (looked on PATH and in ~$owner/benchenv)"; exit 1; }

as_owner() {
	if [ "$(id -un)" = "$owner" ]; then "$@"; else runuser -u "$owner" -- env HOME="$(eval echo ~"$owner")" "$@"; fi
}

# Runs a bench run-tests command (the words after SUITE) with CI=1, showing its output, and
# returns non-zero unless it passed. Frappe's run-tests exits non-zero on failures only when CI
# is set; its OK summary line is checked as well, in case bench drops the variable when it
# switches to its user. Usage: run_tests_checked SUITE COMMAND...
run_tests_checked() {
	local -  # the set -o below ends with the function
	local suite=$1 log status=0
	shift
	set -o pipefail
	log=$(mktemp)
	CI=1 "$@" 2>&1 | tee "$log" || status=$?
	if [ "$status" -eq 0 ] && ! grep -Eq '^OK( |$)' "$log"; then
		echo "$suite: no OK summary from run-tests, counting it as failed"
		status=1
	fi
	rm -f "$log"
	return "$status"
}
