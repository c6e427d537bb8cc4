#!/usr/bin/env bash
# A real `bench uninstall-app cauldron_fabric` and `install-app` on a throwaway site of the bench:
# installed, the app records a save; uninstalled, its DocTypes and tables are gone and the site's
# writes work with the app's code still on the bench; installed again, it records again
# (cauldron_fabric/tests/uninstall_checks.py). Run after frappe_suite.sh, which installs this
# checkout into the bench.
# Usage: uninstall_suite.sh REPO BENCH_DIR
#
# The site's database and user are made with the credentials the core suite uses
# (FABRIC_TEST_DB_HOST, _PORT, _USER, _PASSWORD; default root with an empty password on
# 127.0.0.1:3306), and dropped with the site's folder when the suite ends, passed or not.
set -euo pipefail
repo=$1 bench_dir=$2
venv=${FABRIC_VENV:-$repo/.venv}
site=fabric-uninstall.localhost
db=fabric_uninstall_ci
password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
# shellcheck source=tests/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"

# Runs SQL statements (one per argument) as the database's administrator.
as_db_root() {
	"$venv/bin/python" - "$@" <<'PY'
import os, sys
import pymysql
connection = pymysql.connect(
	host=os.environ.get("FABRIC_TEST_DB_HOST", "127.0.0.1"),
	port=int(os.environ.get("FABRIC_TEST_DB_PORT", "3306")),
	user=os.environ.get("FABRIC_TEST_DB_USER", "root"),
	password=os.environ.get("FABRIC_TEST_DB_PASSWORD", ""),
)
with connection.cursor() as cursor:
	for statement in sys.argv[1:]:
		cursor.execute(statement)
connection.close()
PY
}

clean_up() {
	rm -rf "${bench_dir:?}/sites/$site"
	as_db_root "DROP DATABASE IF EXISTS \`$db\`" "DROP USER IF EXISTS '$db'@'%'" "DROP USER IF EXISTS '$db'@'localhost'"
}
trap clean_up EXIT
clean_up  # what a run stopped midway left

as_db_root "CREATE DATABASE \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" \
	"CREATE USER '$db'@'%' IDENTIFIED BY '$password'" "CREATE USER '$db'@'localhost' IDENTIFIED BY '$password'" \
	"GRANT ALL ON \`$db\`.* TO '$db'@'%'" "GRANT ALL ON \`$db\`.* TO '$db'@'localhost'"

check() {
	(cd "$bench_dir/sites" && as_owner "$bench_dir/env/bin/python" -m cauldron_fabric.tests.uninstall_checks "$site" "$1")
}

cd "$bench_dir"
"$bench_cmd" new-site "$site" --no-setup-db --db-name "$db" --db-password "$password" \
	--admin-password admin --install-app cauldron_fabric >/dev/null
check installed_and_recording
"$bench_cmd" --site "$site" uninstall-app cauldron_fabric --yes --no-backup >/dev/null
check gone_and_site_still_works
"$bench_cmd" --site "$site" install-app cauldron_fabric >/dev/null
check reinstalled_and_recording
echo "uninstall suite: OK"
