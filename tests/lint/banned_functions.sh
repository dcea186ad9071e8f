#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fails when our C sources call a function STYLE.md bans (sprintf, strcpy,
# strcat, atoi, gets, strtok): each has a bounded or checked replacement.
set -euo pipefail
src="${1:?source dir}"
hits="$(grep -nE '\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|gets|strtok)[[:space:]]*\(' \
  "$src"/common/*.[ch] "$src"/edge/*.[ch] "$src"/hub/*.[ch] "$src"/tests/fakes/*.c 2>/dev/null \
  | grep -vE ':[[:space:]]*(/\*|\*)' || true)"
if [ -n "$hits" ]; then
  echo "banned functions used:"
  echo "$hits"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "1 passed, 0 failed"
