#!/usr/bin/env bash
# Checks the Prometheus files beside this script: rule syntax, the example configuration
# (which loads the rules) and the rule unit tests. Runs from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v promtool >/dev/null 2>&1; then
    echo "error: promtool not found: install prometheus (apt-get install prometheus)" >&2
    exit 1
fi

cd "$here"
echo "== promtool check rules"
promtool check rules ethershelf-rules.yml
echo "== promtool check config"
promtool check config prometheus.yml
echo "== promtool test rules"
promtool test rules ethershelf-rules.test.yml
echo "ok: ethershelf Prometheus rules, config and tests pass"
