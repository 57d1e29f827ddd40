#!/usr/bin/env bash
# Fails when a host-language mapping of the error codes and the C header disagree: the Swift
# enum (swift/Sources/ApoyoSync/ErrorCode.swift, `case name = N`) or the Java enum
# (bridge/jni/java/src/main/java/mx/ine/apoyo/sync/ErrorCode.java, `NAME(N),`) misses a code of
# include/apoyo_sync.h (`APOYO_CODE_NAME = N,`), maps a code that no longer exists, or gives a
# code another number. Names are compared in UPPER_SNAKE form (Swift's lowerCamel converted).
# APOYO_CODE_OK (0) is success: a mapping may list it (as 0) or leave it out.
#
#   scripts/check-error-codes.sh              check the files of this checkout
#   scripts/check-error-codes.sh --self-test  the negative tests: temp copies with a code
#                                             removed, added or renumbered must fail
# APOYO_EC_HEADER / APOYO_EC_SWIFT / APOYO_EC_JAVA override the three paths.
set -euo pipefail
cd "$(dirname "$0")/.."
header=${APOYO_EC_HEADER:-include/apoyo_sync.h}
swift=${APOYO_EC_SWIFT:-swift/Sources/ApoyoSync/ErrorCode.swift}
java=${APOYO_EC_JAVA:-bridge/jni/java/src/main/java/mx/ine/apoyo/sync/ErrorCode.java}

# Each prints sorted NAME=N lines.
header_codes() { sed -n 's/^[[:space:]]*APOYO_CODE_\([A-Z0-9_]*\) = \([0-9][0-9]*\),.*/\1=\2/p' "$1" | sort; }
swift_codes() {
  # Only the `public enum ErrorCode` body: up to its closing brace at column 0.
  awk '/^public enum ErrorCode/{in_e=1; next} in_e && /^}/{exit} in_e' "$1" |
    sed -n 's/^[[:space:]]*case `\{0,1\}\([A-Za-z][A-Za-z0-9]*\)`\{0,1\} = \([0-9][0-9]*\)[[:space:]]*$/\1=\2/p' |
    sed 's/\([a-z0-9]\)\([A-Z]\)/\1_\2/g' | tr '[:lower:]' '[:upper:]' | sort
}
java_codes() {
  sed -n 's/^[[:space:]]*\([A-Z][A-Z0-9_]*\)(\([0-9][0-9]*\))[[:space:]]*[,;].*/\1=\2/p' "$1" | sort
}

# compare LANG FILE CODES: prints what is wrong, returns 1 when anything is.
compare() {
  local lang="$1" file="$2" codes="$3" expected missing extra bad=0
  expected=$(header_codes "$header" | grep -v '^OK=')
  codes=$(printf '%s\n' "$codes" | grep -v '^OK=0$' | sed '/^$/d')
  missing=$(comm -23 <(printf '%s\n' "$expected") <(printf '%s\n' "$codes"))
  extra=$(comm -13 <(printf '%s\n' "$expected") <(printf '%s\n' "$codes"))
  if [[ -n "$missing" ]]; then
    echo "FAILED: the $lang mapping ($file) lacks these header codes (NAME=N): $(echo $missing)" >&2
    bad=1
  fi
  if [[ -n "$extra" ]]; then
    echo "FAILED: the $lang mapping ($file) maps codes the header ($header) does not have, or with another number: $(echo $extra)" >&2
    bad=1
  fi
  [[ $bad -eq 0 ]] && echo "ok: the $lang mapping has the header's $(printf '%s\n' "$expected" | wc -l) error codes"
  return $bad
}

check() {
  local n status=0
  [[ -f "$header" ]] || { echo "FAILED: no header at $header" >&2; return 1; }
  n=$(header_codes "$header" | wc -l)
  [[ $n -ge 2 ]] || { echo "FAILED: found no APOYO_CODE_* values in $header" >&2; return 1; }
  if [[ -f "$swift" ]]; then compare Swift "$swift" "$(swift_codes "$swift")" || status=1
  else echo "FAILED: the Swift mapping $swift does not exist" >&2; status=1; fi
  if [[ -f "$java" ]]; then compare Java "$java" "$(java_codes "$java")" || status=1
  else
    echo "FAILED: the Java mapping $java does not exist (yet): it comes with the JNI bridge" \
      "(bridge/jni, issue 12); this check fails until it lands" >&2
    status=1
  fi
  return $status
}

self_test() {
  local tmp fails=0
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cp "$header" "$tmp/h.h"
  cp "$swift" "$tmp/E.swift"
  if [[ -f "$java" ]]; then cp "$java" "$tmp/E.java"; echo "self-test: with the real Java mapping"
  else
    echo "self-test: the Java mapping is not here yet; using a fixture made from the header"
    { echo "public enum ErrorCode {"; header_codes "$header" | grep -v '^OK=' | sed 's/\(.*\)=\(.*\)/    \1(\2),/'
      echo "    ;"; echo "}"; } >"$tmp/E.java"
  fi
  run() { APOYO_EC_HEADER="$tmp/${3:-h.h}" APOYO_EC_SWIFT="$tmp/$1" APOYO_EC_JAVA="$tmp/$2" "$0" >"$tmp/out" 2>&1; }
  expect() { # expect pass|fail NAME SWIFT JAVA [HEADER]
    local want="$1" name="$2"; shift 2
    if run "$@"; then got=pass; else got=fail; fi
    if [[ $got == fail ]] && ! grep -q '^FAILED: ' "$tmp/out"; then
      echo "SELF-TEST FAILED: $name failed without saying why" >&2; cat "$tmp/out" >&2; fails=1
    elif [[ $got == "$want" ]]; then echo "self-test ok: $name ($got: $(grep -m1 '^FAILED' "$tmp/out" | cut -c1-90))"
    else echo "SELF-TEST FAILED: $name: expected $want, got $got" >&2; cat "$tmp/out" >&2; fails=1; fi
  }
  expect pass "the copies as they are" E.swift E.java
  grep -v 'case duplicate = 8' "$tmp/E.swift" >"$tmp/missing.swift"
  expect fail "Swift without .duplicate" missing.swift E.java
  sed 's/^    case panic = 102$/    case panic = 102\n    case retired = 77/' "$tmp/E.swift" >"$tmp/extra.swift"
  expect fail "Swift with a code the header lacks" extra.swift E.java
  sed 's/case storeBusy = 32/case storeBusy = 36/' "$tmp/E.swift" >"$tmp/renum.swift"
  expect fail "Swift with a renumbered code" renum.swift E.java
  grep -v '^[[:space:]]*DUPLICATE(8)' "$tmp/E.java" >"$tmp/missing.java"
  expect fail "Java without DUPLICATE" E.swift missing.java
  sed 's/^\([[:space:]]*\)DUPLICATE(8),/\1DUPLICATE(8),\n\1RETIRED(77),/' "$tmp/E.java" >"$tmp/extra.java"
  expect fail "Java with a code the header lacks" E.swift extra.java
  sed 's/APOYO_CODE_PANIC = 102,/APOYO_CODE_PANIC = 102,\n  APOYO_CODE_NEW_THING = 104,/' "$tmp/h.h" >"$tmp/newcode.h"
  expect fail "a code added to the header and to neither mapping" E.swift E.java newcode.h
  expect fail "no Java mapping" E.swift absent.java
  for f in missing.swift extra.swift renum.swift missing.java extra.java newcode.h; do
    cmp -s "$tmp/$f" "$tmp/E.swift" || cmp -s "$tmp/$f" "$tmp/E.java" || cmp -s "$tmp/$f" "$tmp/h.h" &&
      { echo "SELF-TEST FAILED: the edit for $f changed nothing" >&2; fails=1; }
  done
  [[ $fails -eq 0 ]] && echo "self-test passed"
  return $fails
}

if [[ "${1:-}" == "--self-test" ]]; then self_test; else check; fi
