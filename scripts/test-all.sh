#!/usr/bin/env bash
# The one test command (README) and CI's entry (.ci/run calls it): runs the stage files in
# scripts/ci/stages/ (NN-name.sh, in NN order), printing each stage's duration and a summary
# table. Adding a stage = dropping a file there. See docs/ci.md.
#
#   scripts/test-all.sh                    every stage
#   scripts/test-all.sh rust-tests 30      only these stages (by name, without NN-; a unique
#                                          prefix such as `rust` or `30` works too)
#   APOYO_CI_STAGES=fmt-clippy,rust-tests  the same through the environment
#   scripts/test-all.sh --list             list the stages
#
# A stage passes (exit 0), fails (any other code) or skips visibly (exit 77 via ci_skip, with a
# "skipped because" line). All selected stages run; the script exits non-zero if any failed.
# APOYO_CI_FAIL_FAST=1 stops at the first failure; APOYO_CI_NO_SKIP=1 makes a skip a failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export APOYO_ROOT="$root"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
stage_dir="$root/scripts/ci/stages"

all_files=()
while IFS= read -r f; do all_files+=("$f"); done < <(find "$stage_dir" -maxdepth 1 -name '[0-9][0-9]-*.sh' | sort)
[ "${#all_files[@]}" -gt 0 ] || { echo "test-all: no stage files in $stage_dir" >&2; exit 2; }
stage_name() { local b; b="$(basename "$1" .sh)"; printf '%s' "${b#[0-9][0-9]-}"; }

if [ "${1:-}" = --list ]; then
    for f in "${all_files[@]}"; do printf '%s\t%s\n' "$(stage_name "$f")" "scripts/ci/stages/$(basename "$f")"; done
    exit 0
fi

# resolve WANT: the stage file whose name (or NN-name) equals WANT, else the one it prefixes.
resolve() {
    local want="$1" f hits=()
    for f in "${all_files[@]}"; do
        [ "$(stage_name "$f")" = "$want" ] || [ "$(basename "$f" .sh)" = "$want" ] && { echo "$f"; return 0; }
    done
    for f in "${all_files[@]}"; do
        case "$(basename "$f" .sh)" in "$want"*|[0-9][0-9]-"$want"*) hits+=("$f") ;; esac
    done
    [ "${#hits[@]}" -eq 1 ] && { echo "${hits[0]}"; return 0; }
    echo "test-all: unknown or ambiguous stage '$want'; stages: $(for f in "${all_files[@]}"; do printf '%s ' "$(stage_name "$f")"; done)" >&2
    return 1
}

wanted=("$@")
if [ "${#wanted[@]}" -eq 0 ] && [ -n "${APOYO_CI_STAGES:-}" ]; then
    read -r -a wanted <<<"${APOYO_CI_STAGES//,/ }"
fi
files=()
if [ "${#wanted[@]}" -eq 0 ]; then
    files=("${all_files[@]}")
else
    for w in "${wanted[@]}"; do files+=("$(resolve "$w")") || exit 2; done
fi

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
names=() results=() durations=() notes=()
failed=0
run_start=$SECONDS
for f in "${files[@]}"; do
    name="$(stage_name "$f")"
    skip_file="$(mktemp)"
    echo
    echo "==> stage $name (scripts/ci/stages/$(basename "$f")) at $(date -u +%H:%M:%SZ)"
    start=$SECONDS
    set +e
    APOYO_CI_STAGE="$name" APOYO_CI_SKIP_FILE="$skip_file" bash "$f" </dev/null
    rc=$?
    set -e
    took=$((SECONDS - start))
    case $rc in
        0) result=PASS note="" ;;
        77) if [ -s "$skip_file" ]; then result=SKIP note="skipped because $(cat "$skip_file")"
            else result=FAIL note="exit 77 without ci_skip"; failed=$((failed + 1)); fi ;;
        *) result=FAIL note="exit $rc"; failed=$((failed + 1)) ;;
    esac
    rm -f "$skip_file"
    echo "<== stage $name: $result in $(fmt_secs "$took")${note:+ ($note)}"
    names+=("$name") results+=("$result") durations+=("$took") notes+=("$note")
    if [ "$result" = FAIL ] && [ "${APOYO_CI_FAIL_FAST:-0}" = 1 ]; then
        echo "test-all: APOYO_CI_FAIL_FAST=1, stopping after the first failure"
        break
    fi
done

echo
echo "== summary"
printf '%-16s %-6s %9s  %s\n' STAGE RESULT DURATION NOTE
for i in "${!names[@]}"; do
    printf '%-16s %-6s %9s  %s\n' "${names[$i]}" "${results[$i]}" "$(fmt_secs "${durations[$i]}")" "${notes[$i]}"
done
printf '%-16s %-6s %9s\n' total "$([ "$failed" -eq 0 ] && echo PASS || echo FAIL)" "$(fmt_secs $((SECONDS - run_start)))"
[ "$failed" -eq 0 ] || { echo "test-all: $failed stage(s) failed"; exit 1; }
