#!/usr/bin/env bash
# Rough size check of the harness (the architecture issue's bound): per file, the lines before
# its `#[cfg(test)]` module (limit ~450), and every function longer than ~80 lines, counted from
# its `fn` line to the `}` at the same indentation (test modules skipped). Exits 1 if over.
#
#   loadtest/size-check.sh            # loadtest/src
#   loadtest/size-check.sh src        # another tree
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-loadtest/src}"
file_limit="${FILE_LIMIT:-450}"
fn_limit="${FN_LIMIT:-80}"
files=$(find "$dir" -name '*.rs' | sort)

echo "== lines before #[cfg(test)] (limit $file_limit)"
for f in $files; do
    awk -v f="$f" -v lim="$file_limit" '
        /^#\[cfg\(test\)\]/ { exit }
        { n++ }
        END { printf "%5d %s%s\n", n, f, (n > lim ? "  OVER" : "") }' "$f"
done

# Every function: "length file:line name".
fns=$(for f in $files; do
    awk -v f="$f" '
        /^#\[cfg\(test\)\]/ { exit }
        !open && /^ *(pub(\([a-z]+\))? )?(const )?(async )?fn [a-z_0-9]+/ && !/\}$/ && !/;$/ {
            match($0, /^ */); indent = RLENGTH; start = NR; open = 1
            name = $0; sub(/.*fn /, "", name); sub(/[(<].*/, "", name); next
        }
        open && match($0, /^ *}/) && RLENGTH == indent + 1 {
            printf "%5d %s:%d %s\n", NR - start + 1, f, start, name; open = 0
        }' "$f"
done | sort -rn)
echo "== functions: $(echo "$fns" | wc -l), longest five"
echo "$fns" | head -5
over=$(echo "$fns" | awk -v lim="$fn_limit" '$1 > lim')
echo "== functions over $fn_limit lines"
echo "${over:-none}"
over_files=$(for f in $files; do awk -v lim="$file_limit" '/^#\[cfg\(test\)\]/ { exit } { n++ } END { if (n > lim) print FILENAME }' "$f"; done)
[ -z "$over" ] && [ -z "$over_files" ]
