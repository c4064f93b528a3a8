"""The audit log as a transparency log: an RFC 9162 Merkle tree and signed checkpoints."""
