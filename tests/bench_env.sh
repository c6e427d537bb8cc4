# Sourced by frappe_suite.sh and browser_suite.sh once $bench_dir is set: the bench's owner, the
# bench command, and as_owner, which runs a command as that owner (bench refuses root; with
# frappe_user in the bench config, root's bench drops to that user itself).
owner=$(stat -c %U "$bench_dir")
bench_cmd=$(command -v bench || true)
[ -n "$bench_cmd" ] || bench_cmd=$(eval echo ~"$owner")/benchenv/bin/bench
[ -x "$bench_cmd" ] || { echo "bench command not found (looked on PATH and in ~$owner/benchenv)"; exit 1; }

as_owner() {
	if [ "$(id -un)" = "$owner" ]; then "$@"; else runuser -u "$owner" -- env HOME="$(eval echo ~"$owner")" "$@"; fi
}
