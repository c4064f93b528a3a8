#!/usr/bin/env bash
# Initialise a SoftHSM2 token holding the ztmint receipt key (EC P-256), for development.
#
# Usage: SOFTHSM2_CONF=FILE ZTMINT_PKCS11_PIN=... ZTMINT_PKCS11_SO_PIN=... \
#            scripts/softhsm-init.sh FOLDER
#
# Writes SOFTHSM2_CONF (when absent) with its token directory under FOLDER/tokens, initialises a
# token labelled $ZTMINT_PKCS11_TOKEN_LABEL (default "ztmint") and generates a P-256 key pair
# labelled $ZTMINT_PKCS11_KEY_LABEL (default "ztmint-receipt") with a non-extractable private key.
# Running it again with the same labels changes nothing. All state stays under FOLDER.
# It installs nothing: it needs softhsm2 (softhsm2-util, libsofthsm2.so) and a Python with
# python-pkcs11, taken from $PYTHON or else the repository's .venv.
#
# Security: softhsm2-util accepts PINs only as arguments, so the user and SO PINs are visible
# in the process list while the token is initialised. Use throwaway PINs on a shared machine.
# Key generation reads the PIN from the environment, not from arguments.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: SOFTHSM2_CONF=FILE ZTMINT_PKCS11_PIN=... ZTMINT_PKCS11_SO_PIN=... $0 FOLDER" >&2
  exit 2
fi
: "${SOFTHSM2_CONF:?set SOFTHSM2_CONF to the SoftHSM2 config file to use or create}"
: "${ZTMINT_PKCS11_PIN:?set ZTMINT_PKCS11_PIN to the user PIN for the new token}"
: "${ZTMINT_PKCS11_SO_PIN:?set ZTMINT_PKCS11_SO_PIN to the security officer PIN}"
export SOFTHSM2_CONF ZTMINT_PKCS11_PIN
export ZTMINT_PKCS11_TOKEN_LABEL="${ZTMINT_PKCS11_TOKEN_LABEL:-ztmint}"
export ZTMINT_PKCS11_KEY_LABEL="${ZTMINT_PKCS11_KEY_LABEL:-ztmint-receipt}"
export ZTMINT_PKCS11_MODULE="${ZTMINT_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo_root/.venv/bin/python}"
folder="$(mkdir -p "$1" && cd "$1" && pwd)"

command -v softhsm2-util >/dev/null || {
  echo "softhsm2-util not found; install it with: apt-get install -y softhsm2" >&2
  exit 1
}
[[ -r "$ZTMINT_PKCS11_MODULE" ]] || {
  echo "PKCS#11 module $ZTMINT_PKCS11_MODULE not found; install softhsm2 or set ZTMINT_PKCS11_MODULE" >&2
  exit 1
}

if [[ ! -e "$SOFTHSM2_CONF" ]]; then
  mkdir -p "$folder/tokens" "$(dirname "$SOFTHSM2_CONF")"
  cat >"$SOFTHSM2_CONF" <<CONF
directories.tokendir = $folder/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
fi

if softhsm2-util --show-slots | grep -Eq "^ *Label: *${ZTMINT_PKCS11_TOKEN_LABEL} *$"; then
  echo "token ${ZTMINT_PKCS11_TOKEN_LABEL} exists; keeping it"
else
  softhsm2-util --init-token --free --label "$ZTMINT_PKCS11_TOKEN_LABEL" \
    --pin "$ZTMINT_PKCS11_PIN" --so-pin "$ZTMINT_PKCS11_SO_PIN" >/dev/null
  echo "token ${ZTMINT_PKCS11_TOKEN_LABEL} initialised"
fi

"$python" - <<'PY'
import os

import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

library = pkcs11.lib(os.environ["ZTMINT_PKCS11_MODULE"])
token = library.get_token(token_label=os.environ["ZTMINT_PKCS11_TOKEN_LABEL"])
label = os.environ["ZTMINT_PKCS11_KEY_LABEL"]
with token.open(rw=True, user_pin=os.environ["ZTMINT_PKCS11_PIN"]) as session:
    existing = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                         Attribute.LABEL: label}))
    if existing:
        print(f"key {label} exists; keeping it")
    else:
        parameters = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True,
        )
        parameters.generate_keypair(
            store=True,
            label=label,
            id=b"\x01",
            private_template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
            },
        )
        print(f"key {label} generated (EC P-256)")
PY
