"""FROST(Ed25519, SHA-512) threshold signing (RFC 9591) and dealerless key generation.

Pure code: no Ray, no I/O, no logging. Randomness is passed in as a ``Callable[[int], bytes]``
(``os.urandom`` by default), and all scalar and point arithmetic runs in libsodium.

Modules, in protocol order:

- ``ciphersuite``: encodings, hashes and Ed25519 verification.
- ``keys``: identifiers, key packages and Shamir helpers.
- ``dkg``: dealerless key generation.
- ``round1``: nonces and commitments.
- ``round2``: signature shares.
- ``aggregate``: share verification and aggregation.
- ``refresh``: new shares for the same group key.
- ``repair``: restoring a lost share.
- ``errors``: the ``FrostError`` hierarchy.
"""
