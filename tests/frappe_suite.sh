#!/usr/bin/env bash
# Installs this checkout into a bench and runs the app's Frappe tests on a real site.
# Usage: frappe_suite.sh REPO BENCH_DIR SITE
set -euo pipefail
repo=$1 bench_dir=$2 site=$3
# shellcheck source=tests/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"

# The bench's user must read the app: link this checkout when it can, else copy it.
app_dir=$repo
if ! as_owner test -r "$repo/pyproject.toml"; then
	app_dir=$bench_dir/../fabric-ci-app
	rm -rf "$app_dir" && mkdir -p "$app_dir"
	tar -C "$repo" --exclude=.venv --exclude=.git -cf - . | tar -C "$app_dir" -xf -
	chown -R "$owner": "$app_dir"
	echo "copied the app to $app_dir (the bench user cannot read $repo)"
fi
ln -sfn "$app_dir" "$bench_dir/apps/cauldron_fabric"
if ! grep -qx cauldron_fabric "$bench_dir/sites/apps.txt"; then
	sed -i -e '$a\' "$bench_dir/sites/apps.txt"  # the file may lack its final newline
	echo cauldron_fabric >> "$bench_dir/sites/apps.txt"
fi
as_owner "$bench_dir/env/bin/pip" install --quiet --disable-pip-version-check -e "$app_dir[test]"

cd "$bench_dir"
as_owner "$bench_cmd" --site "$site" set-config allow_tests true >/dev/null
if "$bench_cmd" --site "$site" list-apps 2>/dev/null | grep -q '^cauldron_fabric'; then
	"$bench_cmd" --site "$site" migrate --skip-search-index
else
	# Frappe caches each app's module list in Redis; a list cached before the app was linked
	# would make install-app sync none of its DocTypes.
	"$bench_cmd" --site "$site" clear-cache
	"$bench_cmd" --site "$site" install-app cauldron_fabric
fi
run_tests_checked "frappe suite" "$bench_cmd" --site "$site" run-tests --app cauldron_fabric
