"""Key lifecycle of the signer mesh: share refresh, share repair, guardian escrow, break-glass.

Pure logic with no Ray and no logging. Randomness and time are parameters. Signers and the
coordinator call these modules through thin methods, so the logic is testable without Ray.

- ``refresh``: proactive refresh of every signing share, with the same group key.
- ``repair``: rebuild one lost signing share from t helpers.
- ``escrow``: split a signing share among guardians, each piece encrypted to a P-256 key.
- ``guardian_keys``: guardian P-256 keys that compute ECDH in software or in a YubiKey.
- ``breakglass``: requests approved by t guardians' WebAuthn assertions, and the grant.
- ``channel``: the X25519 box encryption of secret scalars relayed by the coordinator.
- ``errors``: the ``LifecycleError`` hierarchy.
"""
