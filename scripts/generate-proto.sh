#!/usr/bin/env bash
# Regenerates Sources/CairnProto/Generated from Sources/CairnProto/proto.
# Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift built from the
# swift-protobuf version Package.swift names:
#   swift build -c release --product protoc-gen-swift   (in a swift-protobuf checkout)
# and PROTOC_GEN_SWIFT pointing at it. The generated code is committed; CI
# never runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PROTOC_GEN_SWIFT:?set PROTOC_GEN_SWIFT to the protoc-gen-swift binary}"
out=Sources/CairnProto/Generated
rm -rf "$out"
mkdir -p "$out"
cd Sources/CairnProto/proto
protoc --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" \
    --swift_out="../Generated" \
    --swift_opt=Visibility=Public \
    --swift_opt=FileNaming=PathToUnderscores \
    $(find . -name '*.proto' | sort)
