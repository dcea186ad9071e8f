#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# docs/config.md is generated from the programs' config tables; fails when
# it is stale. Regenerate: aicarpool-hub --write-config-reference docs/config.md
set -euo pipefail
hub="${1:?aicarpool-hub}"; doc="${2:?docs/config.md}"
tmp="$(mktemp)"; trap 'rm -f "$tmp"' EXIT
"$hub" --write-config-reference "$tmp" >/dev/null
if ! diff -u "$doc" "$tmp"; then
  echo "docs/config.md is stale: regenerate it with aicarpool-hub --write-config-reference docs/config.md"
  echo "0 passed, 1 failed"; exit 1
fi
echo "1 passed, 0 failed"
