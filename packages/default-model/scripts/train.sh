#!/usr/bin/env bash
# Recipe of the default model: installs the King James Bible (public domain) from Debian, turns it
# into one verse per line, and trains the model with `ryzanstein train`. Not run by npm ci or
# npm test; the trained GGUF is committed. Run from anywhere after `npm ci && npm run build`:
#   bash packages/default-model/scripts/train.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${WORK_DIR:-${TMPDIR:-/tmp}/ryzanstein-default-model}"
mkdir -p "$work" "$here/model"

if ! command -v bible >/dev/null; then
  apt-get install -y bible-kjv
fi
# The whole KJV; verse numbers and chapter headings dropped, wrapped lines joined: one verse a line.
bible "gen1:1-rev22:21" | awk '
/^ +[0-9]+ / { if (v != "") print v; sub(/^ +[0-9]+ +/, ""); v = $0; blank = 0; next }
/^[ \t]*$/ { if (v != "") print v; v = ""; blank = 1; next }
{ if (blank) { blank = 0; next } v = v " " $0 }
END { if (v != "") print v }' > "$work/kjv.txt"
echo "data: $(wc -l < "$work/kjv.txt") verses, $(wc -c < "$work/kjv.txt") bytes" >&2

node "$root/packages/cli/dist/bin.js" train \
  --config "$here/train-config.json" \
  --data "$work/kjv.txt" \
  --out "$here/model/kjv-4m-q8_0.gguf" \
  --checkpoint "$work/kjv-4m.ckpt" \
  --export-type q8_0 \
  "$@"
