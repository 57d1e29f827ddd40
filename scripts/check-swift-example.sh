#!/usr/bin/env bash
# Fails when the Swift example in docs/embedding.md or README.md (the ```swift block under the
# "## iOS (Swift)" / "### iOS (Swift)" heading)
# differs from the one the XCTest suite compiles and runs: the lines between
# `// embedding-example:start` and `// embedding-example:end` in
# swift/Tests/ApoyoSyncTests/EmbeddingExample.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
src=swift/Tests/ApoyoSyncTests/EmbeddingExample.swift
doc=docs/embedding.md

tested=$(sed -n '/\/\/ embedding-example:start/,/\/\/ embedding-example:end/p' "$src" | sed '1d;$d')
[[ -n "$tested" ]] || { echo "FAILED: no embedding-example markers in $src" >&2; exit 1; }
# The first ```swift block after the "## iOS (Swift)" heading, up to the next heading.
for doc in docs/embedding.md README.md; do
  documented=$(awk '/^##+ iOS \(Swift\)/{in_s=1; next} in_s && /^##+ /{exit}
    in_s && /^```swift/{in_b=1; next} in_b && /^```/{exit} in_b{print}' "$doc")
  [[ -n "$documented" ]] || { echo "FAILED: no \`\`\`swift block under an 'iOS (Swift)' heading in $doc" >&2; exit 1; }
  if [[ "$tested" != "$documented" ]]; then
    echo "FAILED: the Swift example in $doc differs from $src (tested copy on the left):" >&2
    diff <(printf '%s\n' "$tested") <(printf '%s\n' "$documented") >&2 || true
    exit 1
  fi
  echo "the Swift example in $doc matches $src"
done
