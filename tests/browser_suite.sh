#!/usr/bin/env bash
# Runs the browser tests of the app's Desk JavaScript (cauldron_fabric/tests/browser): a headless
# Chromium, driven by Selenium, against `bench serve` for the site. Run after frappe_suite.sh,
# which installs this checkout into the bench.
# Usage: browser_suite.sh REPO BENCH_DIR SITE
#
# Environment: FABRIC_CHROMIUM and FABRIC_CHROMEDRIVER (default Debian's /usr/bin/chromium and
# /usr/bin/chromedriver), installed with apt-get when missing and running as root;
# FABRIC_BROWSER_ARGS, more options for run-tests (--case TestDeadLetterForm runs one class).
set -euo pipefail
repo=$1 bench_dir=$2 site=$3
export FABRIC_CHROMIUM=${FABRIC_CHROMIUM:-/usr/bin/chromium}
export FABRIC_CHROMEDRIVER=${FABRIC_CHROMEDRIVER:-/usr/bin/chromedriver}
module=cauldron_fabric.tests.browser.suite

if [ ! -d "$bench_dir/apps/frappe" ]; then
	echo "== browser suite NOT RUN: no Frappe bench at $bench_dir."
	echo "   Set FRAPPE_BENCH_PATH, or build a bench as the README's 'Frappe bench' section says."
	exit 0
fi
if [ ! -e "$bench_dir/apps/cauldron_fabric" ]; then
	echo "browser suite: cauldron_fabric is not in $bench_dir; run tests/frappe_suite.sh first (bash tests/run does)"
	exit 1
fi

if [ ! -x "$FABRIC_CHROMIUM" ] || [ ! -x "$FABRIC_CHROMEDRIVER" ]; then
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		echo "installing chromium and chromium-driver with apt-get"
		# The package lists may be missing (a fresh container) or stale: update them once on failure.
		apt-get install -y -q chromium chromium-driver >/dev/null ||
			{ apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
	else
		echo "== browser suite NOT RUN: no $FABRIC_CHROMIUM or $FABRIC_CHROMEDRIVER, and only root can install them."
		echo "   Install Chromium and its driver (Debian: apt-get install chromium chromium-driver), or set"
		echo "   FABRIC_CHROMIUM and FABRIC_CHROMEDRIVER to where they are."
		exit 0
	fi
fi

# shellcheck source=tests/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"

# Selenium comes with the app's test extra, which frappe_suite.sh installs into the bench.
if ! as_owner "$bench_dir/env/bin/python" -c "import selenium" 2>/dev/null; then
	app_dir=$(readlink -f "$bench_dir/apps/cauldron_fabric")
	as_owner "$bench_dir/env/bin/pip" install --quiet --disable-pip-version-check -e "$app_dir[test]"
fi

cd "$bench_dir"
# What the tests change on the site (the setup wizard flag, Fabric Settings' broker), saved now and
# put back when this script ends: the time limit below stops a hung run before its cleanups.
state=$(mktemp)
[ "$(id -u)" -ne 0 ] || chown "$owner" "$state"  # bench runs as its owner
site_state() {
	"$bench_cmd" --site "$site" execute "cauldron_fabric.tests.browser.site_state.$1" --kwargs "{\"path\": \"$state\"}"
}
site_state save
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
server_log=$(mktemp)
# The server leads a process group of its own (setsid), so that stopping it stops all it started.
setsid "$bench_cmd" --site "$site" serve --port "$port" --noreload >"$server_log" 2>&1 &
server=$!
# The tests start their Kafka broker in a session of its own; when the time limit kills a test
# process hard, its broker is left to init. Those orphans are stopped at the end, but none that
# were already running before this run (another run's).
orphan_brokers() {
	ps -eo pid=,ppid=,args= | awk '$2 == 1 && / broker --listener-url tcp:\/\/127\.0\.0\.1:/ {print $1}'
}
brokers_before=" $(orphan_brokers | tr '\n' ' ') "
stop_server() {
	kill -TERM -- "-$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
	for pid in $(orphan_brokers); do
		case "$brokers_before" in *" $pid "*) ;; *) kill -TERM "$pid" 2>/dev/null || true ;; esac
	done
	site_state restore || echo "browser suite: could not put back the site's settings saved in $state"
	rm -f "$server_log"
}
trap stop_server EXIT

echo "browser suite: waiting for bench serve at $url (site $site)"
if ! python3 - "$url" "$server" <<'EOF'; then
import os, sys, time, urllib.request

url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
	try:
		os.kill(pid, 0)
	except ProcessLookupError:
		sys.exit("bench serve ended before it answered")
	try:
		with urllib.request.urlopen(url + "/api/method/ping", timeout=5) as answer:
			if answer.status == 200:
				sys.exit(0)
	except OSError:
		time.sleep(0.5)
sys.exit("bench serve did not answer within 120 s")
EOF
	echo "browser suite: the web server did not come up; its output:"
	tail -n 40 "$server_log"
	exit 1
fi

# The time limit keeps a hung browser from holding CI.
export FABRIC_BROWSER_URL=$url
status=0
run_tests_checked "browser suite" timeout --kill-after=30 900 \
	"$bench_cmd" --site "$site" run-tests --module "$module" ${FABRIC_BROWSER_ARGS:-} || status=$?
if [ "$status" -ne 0 ]; then
	echo "browser suite: the web server's last output:"
	tail -n 40 "$server_log"
fi
exit "$status"
