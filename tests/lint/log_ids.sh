#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every message id our code logs ("EDGE-UPSTREAM", ...) must be listed in
# docs/log-ids.md, so operators can grep for what a line means.
set -euo pipefail
src="${1:?source dir}"
ids="$(grep -rhoE 'gw_log(_req)?\([^,]+, *"[A-Z0-9-]+"' "$src"/common "$src"/edge "$src"/hub "$src"/tests/fakes \
  | grep -oE '"[A-Z0-9-]+"' | tr -d '"' | sort -u)"
missing=""
for id in $ids; do
  grep -q "\`$id\`" "$src/docs/log-ids.md" || missing="$missing $id"
done
if [ -n "$missing" ]; then
  echo "message ids missing from docs/log-ids.md:$missing"
  echo "0 passed, 1 failed"; exit 1
fi
echo "1 passed, 0 failed"
