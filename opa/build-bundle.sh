#!/usr/bin/env bash
# Build and sign the ztmint authz policy bundle.
#
# Usage: opa/build-bundle.sh OUT_DIR KEY_DIR [REVISION]
#
# Writes OUT_DIR/bundle.tar.gz from opa/authz (test files left out), signed with ES256 by
# KEY_DIR/bundle-signing-key.pem. The bundle's .manifest carries REVISION, which defaults to
# "sha256:" and the first 16 hex digits of a SHA-256 over the policy and data files, so two
# bundles share a revision only when they hold the same files. The authz service keys its
# decision cache by this revision.
#
# Development only: when KEY_DIR has no key pair, one is generated there with openssl.
# Production bundles are signed by a key held in the KMS, and OPA gets only the public key.
#
# OPA verifies the signature when it loads the bundle:
#   opa run --server --bundle OUT_DIR/bundle.tar.gz \
#     --verification-key KEY_DIR/bundle-verification-key.pem \
#     --verification-key-id ztmint-bundle --signing-alg ES256
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 OUT_DIR KEY_DIR [REVISION]" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
policy_dir="$repo/opa/authz"
opa="${OPA:-$repo/.bin/opa}"
if [[ ! -x "$opa" ]]; then
  opa="$(command -v opa || true)"
fi
if [[ -z "$opa" ]]; then
  echo "opa not found: build it with 'make setup' or set OPA=/path/to/opa" >&2
  exit 1
fi

out_dir="$1"
key_dir="$2"
key_id="${ZTMINT_BUNDLE_KEY_ID:-ztmint-bundle}"
mkdir -p "$out_dir" "$key_dir"
out_dir="$(cd "$out_dir" && pwd)"
key_dir="$(cd "$key_dir" && pwd)"
signing_key="$key_dir/bundle-signing-key.pem"
verification_key="$key_dir/bundle-verification-key.pem"

if [[ ! -f "$signing_key" ]]; then
  echo "generating a development bundle signing key in $key_dir" >&2
  (umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$signing_key")
  openssl ec -in "$signing_key" -pubout -out "$verification_key" 2>/dev/null
fi

if [[ $# -eq 3 ]]; then
  revision="$3"
else
  digest="$(cd "$policy_dir" \
    && find . -type f \( -name '*.rego' ! -name '*_test.rego' -o -name 'data.json' \) \
    | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
  revision="sha256:$digest"
fi

claims="$(mktemp)"
trap 'rm -f "$claims"' EXIT
printf '{"keyid":"%s"}\n' "$key_id" >"$claims"

# Build from inside the policy folder so the bundle contains relative paths.
cd "$policy_dir"
"$opa" build --bundle . \
  --ignore '*_test.rego' \
  --revision "$revision" \
  --signing-key "$signing_key" \
  --signing-alg ES256 \
  --claims-file "$claims" \
  --output "$out_dir/bundle.tar.gz"

echo "$out_dir/bundle.tar.gz revision=$revision key_id=$key_id"
