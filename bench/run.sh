#!/usr/bin/env bash
# Run every benchmark end to end and plot the results: `bench/run.sh` from anywhere.
#
# Installs the pinned load generators into .bin when missing, then runs these in order:
# - the authz benchmark: gRPC with ghz and HTTP with vegeta, against ztmint and the OPA peer;
# - the py-spy profiles of the authz service;
# - the signing stage alone (bench/mesh.py);
# - the mint benchmark on the local Ray stack;
# - the mint with the local KMS key and with OCI KMS at a 2 ms and a 60 ms round trip;
# - the plots.
# All traffic goes to 127.0.0.1, and every run is bounded in time. Results go to
# bench/results/ and scratch files to bench/out/, which git ignores. The script prints its
# running time at the end, and docs/PERFORMANCE.md records it for the 2-core machine.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export GOBIN="$repo/.bin"
export PATH="$GOBIN:$PATH"
export PYTHONPATH="$repo"
python="$repo/.venv/bin/python"

VEGETA_VERSION=v12.13.0
GHZ_VERSION=v0.120.0

[ -x .bin/vegeta ] || go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
[ -x .bin/ghz ] || go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
if [ ! -x .bin/opa ]; then
  echo "bench/run.sh: .bin/opa is missing; run \`make setup\` first" >&2
  exit 1
fi

started=$(date +%s)
"$python" -m bench.authz
"$python" -m bench.profile --caches off
"$python" -m bench.profile --caches on
"$python" -m bench.mesh "$@"
"$python" -m bench.mint "$@"
"$python" -m bench.mint --kms local oci-2ms oci-60ms "$@"
"$python" -m bench.plot
echo "bench/run.sh: finished in $(( $(date +%s) - started )) s"
