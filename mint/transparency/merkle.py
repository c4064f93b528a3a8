"""The Merkle tree of the audit log, with inclusion and consistency proofs (RFC 9162 section 2.1).

The tree is the Certificate Transparency Merkle Hash Tree with SHA-256: a leaf hash is
``SHA-256(0x00 || leaf)``, an interior node is ``SHA-256(0x01 || left || right)``, and a tree
of n > 1 leaves splits at k, the largest power of two smaller than n (RFC 9162 section 2.1.1).
RFC 6962 section 2.1 defines the same tree, so RFC 6962 tooling and test data apply.

The module-level functions follow the RFC's recursive definitions over a list of leaf hashes
and recompute every node on each call. ``MerkleTree`` gives the same results incrementally.
It appends a leaf in O(1) amortised hashes and keeps the root of every complete subtree, so a
root or proof at any size costs O(log^2 n) hashes at most.

All functions take leaf hashes, not leaves: hash each entry with ``leaf_hash`` first.

Security:
    A verifier must take every root hash and tree size from a checkpoint whose signature it
    has verified (see ``mint.transparency.checkpoint``). A proof only shows that a leaf or an
    older tree is part of the tree with that root. It does not bind the tree size, since the
    same path can also fit a neighbouring size, and an unsigned root proves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

from mint.transparency.errors import InconsistentTrees, InvalidProof

HASH_SIZE = 32
"""Size in bytes of every leaf hash, node hash and root hash (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the empty tree, ``SHA-256()`` (RFC 9162 section 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

SubtreeHash = Callable[[int, int], bytes]
"""Return the Merkle Tree Hash of the leaves ``[start, end)``, with ``start < end``."""


def leaf_hash(leaf: bytes) -> bytes:
    """Hash one log entry into a leaf hash, ``SHA-256(0x00 || leaf)`` (RFC 9162 section 2.1.1).

    Args:
        leaf: the entry exactly as stored in the log.

    Returns:
        The 32-byte leaf hash.
    """
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes into their parent, ``SHA-256(0x01 || left || right)``.

    The 0x01 prefix differs from the leaf prefix 0x00, so an interior node can never be
    passed off as a leaf (RFC 9162 section 2.1.1).
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Compute the Merkle Tree Hash MTH of a list of leaf hashes (RFC 9162 section 2.1.1).

    Args:
        leaf_hashes: the leaf hashes in log order, possibly none.

    Returns:
        The 32-byte root hash: ``EMPTY_ROOT`` for no leaves, the leaf hash itself for one.

    Raises:
        ValueError: a leaf hash is not 32 bytes.
    """
    _require_hashes(leaf_hashes, "leaf hash")
    if not leaf_hashes:
        return EMPTY_ROOT
    return _recursive_subtree_hash(leaf_hashes)(0, len(leaf_hashes))


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Build the audit path PATH(index, D[n]) of one leaf (RFC 9162 section 2.1.3.1).

    Args:
        index: the 0-based position of the leaf.
        leaf_hashes: all leaf hashes of the tree, in log order.

    Returns:
        The sibling hashes from the leaf up to the root, none for a tree of one leaf.

    Raises:
        ValueError: ``index`` is outside ``[0, len(leaf_hashes))`` or a hash is not 32 bytes.
    """
    _require_hashes(leaf_hashes, "leaf hash")
    _require_index(index, len(leaf_hashes))
    return _audit_path(index, 0, len(leaf_hashes), _recursive_subtree_hash(leaf_hashes))


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Build the consistency proof PROOF(old_size, D[n]) (RFC 9162 section 2.1.4.1).

    Args:
        old_size: the size of the older tree, from 1 up to ``len(leaf_hashes)``.
        leaf_hashes: all leaf hashes of the newer tree, in log order.

    Returns:
        The proof nodes, none when ``old_size`` equals the newer size.

    Raises:
        ValueError: ``old_size`` is outside ``[1, len(leaf_hashes)]`` or a hash is not 32
            bytes. RFC 9162 defines no proof from the empty tree, which every tree extends.
    """
    _require_hashes(leaf_hashes, "leaf hash")
    _require_old_size(old_size, len(leaf_hashes))
    return _subproof(old_size, 0, len(leaf_hashes), True, _recursive_subtree_hash(leaf_hashes))


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that a leaf hash sits at ``index`` in the tree with ``root`` (RFC 9162 2.1.3.2).

    Args:
        leaf_hash: the leaf hash, ``leaf_hash(entry)``.
        index: the claimed 0-based position of the leaf.
        tree_size: the size of the tree that ``root`` commits to.
        proof: the audit path, from the leaf up.
        root: the root hash of a verified checkpoint of size ``tree_size``.

    Raises:
        InvalidProof: the index is not below the tree size, the proof has the wrong number
            of nodes for this index and size, a hash is not 32 bytes, or the path does not
            lead to ``root``.
    """
    if not 0 <= index < tree_size:
        raise InvalidProof(
            f"leaf index {index} is outside a tree of size {tree_size}. An inclusion proof "
            "needs 0 <= index < tree_size, so check which checkpoint the proof was made for"
        )
    _check_proof_hashes(InvalidProof, leaf=leaf_hash, root=root, proof=proof)
    expected_length = _inclusion_proof_length(index, tree_size)
    if len(proof) != expected_length:
        raise InvalidProof(
            f"inclusion proof for leaf {index} of a tree of size {tree_size} has {len(proof)} "
            f"nodes, expected {expected_length}"
        )

    computed = _root_from_inclusion_path(leaf_hash, index, tree_size, proof)
    if not hmac.compare_digest(computed, root):
        raise InvalidProof(
            f"inclusion proof for leaf {index} does not lead to the root of the tree of size "
            f"{tree_size}, so the leaf, the proof or the checkpoint is not the one the log made"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree with ``new_root`` extends the one with ``old_root`` (RFC 9162 2.1.4.2).

    Equal sizes need an empty proof and equal roots, as PROOF(m, D[m]) is empty.

    Args:
        old_size: the size of the older tree, at least 1.
        new_size: the size of the newer tree, at least ``old_size``.
        old_root: the root hash of the older verified checkpoint.
        new_root: the root hash of the newer verified checkpoint.
        proof: the consistency proof nodes.

    Raises:
        InconsistentTrees: ``old_size`` is 0 or larger than ``new_size``, the proof has the
            wrong number of nodes for these sizes, a hash is not 32 bytes, or the proof does
            not reproduce both roots. RFC 9162 defines no proof from the empty tree: a caller
            whose older checkpoint is empty checks that its root is ``EMPTY_ROOT`` instead.
    """
    if old_size < 1:
        raise InconsistentTrees(
            f"old tree size {old_size} is not positive. RFC 9162 defines consistency proofs "
            "only from a non-empty tree, and every tree extends the empty one"
        )
    if old_size > new_size:
        raise InconsistentTrees(
            f"old tree size {old_size} is larger than new tree size {new_size}. A log only "
            "grows, so pass the checkpoints in the order the log signed them"
        )
    _check_proof_hashes(InconsistentTrees, old_root=old_root, new_root=new_root, proof=proof)
    if old_size == new_size:
        _verify_same_size(old_size, old_root, new_root, proof)
        return
    expected_length = _consistency_proof_length(old_size, new_size)
    if len(proof) != expected_length:
        raise InconsistentTrees(
            f"consistency proof from size {old_size} to {new_size} has {len(proof)} nodes, "
            f"expected {expected_length}"
        )

    old_computed, new_computed = _roots_from_consistency_path(old_size, new_size, old_root, proof)
    if not hmac.compare_digest(old_computed, old_root):
        raise InconsistentTrees(
            f"consistency proof does not reproduce the root of the tree of size {old_size}: "
            "the log changed entries it had already signed, or the proof or older checkpoint "
            "was altered"
        )
    if not hmac.compare_digest(new_computed, new_root):
        raise InconsistentTrees(
            f"the tree of size {new_size} does not extend the tree of size {old_size}: the "
            "log rewrote or removed entries, or the proof or newer checkpoint was altered"
        )


def _root_from_inclusion_path(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """Run steps 2 to 5 of RFC 9162 section 2.1.3.2 and return the computed root."""
    # Steps 2 to 4: walk from the leaf up, taking each node as a left or right sibling.
    fn = index
    sn = tree_size - 1
    computed = leaf_hash
    for sibling in proof:
        if sn == 0:
            raise InvalidProof("inclusion proof has more nodes than the tree has levels")
        if fn & 1 or fn == sn:
            computed = node_hash(sibling, computed)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            computed = node_hash(computed, sibling)
        fn >>= 1
        sn >>= 1

    # Step 5: the walk must have reached the root level.
    if sn != 0:
        raise InvalidProof("inclusion proof has fewer nodes than the tree has levels")
    return computed


def _roots_from_consistency_path(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """Run steps 1 to 7 of RFC 9162 section 2.1.4.2, for 0 < old_size < new_size.

    Returns:
        The computed old and new roots, for the caller to compare.
    """
    # Step 1: trees of different sizes always need at least one proof node.
    if not proof:
        raise InconsistentTrees(
            f"consistency proof from size {old_size} to {new_size} is empty, expected nodes"
        )

    # Step 2: a power-of-two old tree is itself a complete subtree, so the proof omits it.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)

    # Steps 3 and 4: skip the levels where the old tree's last node is a right child.
    fn = old_size - 1
    sn = new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1

    # Steps 5 and 6: rebuild both roots from the shared first node.
    old_computed = path[0]
    new_computed = path[0]
    for node in path[1:]:
        if sn == 0:
            raise InconsistentTrees("consistency proof has more nodes than the tree has levels")
        if fn & 1 or fn == sn:
            old_computed = node_hash(node, old_computed)
            new_computed = node_hash(node, new_computed)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            new_computed = node_hash(new_computed, node)
        fn >>= 1
        sn >>= 1

    # Step 7: the walk must have reached the root level.
    if sn != 0:
        raise InconsistentTrees("consistency proof has fewer nodes than the tree has levels")
    return old_computed, new_computed


class MerkleTree:
    """An append-only Merkle tree that keeps the root of every complete subtree.

    ``_levels[h][i]`` is the hash of the complete subtree of 2**h leaves that starts at leaf
    ``i * 2**h``, so ``_levels[0]`` is the list of leaf hashes. Appending a leaf adds one
    node per level at which it completes a subtree, which is O(1) hashes amortised and
    O(log n) at worst. Roots and proofs are returned for the current size or any earlier one.

    Args:
        leaf_hashes: leaf hashes to append at construction, in log order.

    Limitations:
        Every node stays in memory, about 64 bytes per leaf plus list overhead, so a log of
        tens of millions of entries needs a store of tiles on disk in place of this class.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for hash_ in leaf_hashes:
            self.append(hash_)

    def __len__(self) -> int:
        return len(self._levels[0])

    def __repr__(self) -> str:
        return f"MerkleTree(size={len(self)})"

    @property
    def size(self) -> int:
        """Number of leaves in the tree."""
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and return its 0-based index.

        Raises:
            ValueError: ``leaf_hash`` is not 32 bytes.
        """
        _require_hashes([leaf_hash], "leaf hash")
        index = len(self._levels[0])
        self._levels[0].append(leaf_hash)

        # Each level whose node count turns even has just completed a pair of subtrees.
        level = 0
        while len(self._levels[level]) % 2 == 0:
            if level + 1 == len(self._levels):
                self._levels.append([])
            left, right = self._levels[level][-2:]
            self._levels[level + 1].append(node_hash(left, right))
            level += 1
        return index

    def leaf_hash(self, index: int) -> bytes:
        """Return the leaf hash at ``index``.

        Raises:
            ValueError: ``index`` is outside ``[0, size)``.
        """
        _require_index(index, self.size)
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """Return the root hash of the first ``size`` leaves (all leaves by default).

        Raises:
            ValueError: ``size`` is negative or larger than the tree.
        """
        size = self._resolve_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._subtree_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return PATH(index, D[size]) from cached subtrees (RFC 9162 section 2.1.3.1).

        Raises:
            ValueError: ``size`` is larger than the tree or ``index`` is not below ``size``.
        """
        size = self._resolve_size(size)
        _require_index(index, size)
        return _audit_path(index, 0, size, self._subtree_hash)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Return PROOF(old_size, D[new_size]) from cached subtrees (RFC 9162 2.1.4.1).

        Raises:
            ValueError: ``new_size`` is larger than the tree, or ``old_size`` is outside
                ``[1, new_size]``.
        """
        new_size = self._resolve_size(new_size)
        _require_old_size(old_size, new_size)
        return _subproof(old_size, 0, new_size, True, self._subtree_hash)

    def _resolve_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(
                f"tree size {size} is outside [0, {self.size}] because this tree has "
                f"{self.size} leaves"
            )
        return size

    def _subtree_hash(self, start: int, end: int) -> bytes:
        width = end - start
        height = width.bit_length() - 1
        if width == 1 << height and start % width == 0:
            return self._levels[height][start >> height]
        split = _largest_power_of_two_below(width)
        return node_hash(
            self._subtree_hash(start, start + split), self._subtree_hash(start + split, end)
        )


def _recursive_subtree_hash(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """Return MTH over ``leaf_hashes`` computed from the definition, caching nothing."""

    def subtree_hash(start: int, end: int) -> bytes:
        if end - start == 1:
            return leaf_hashes[start]
        split = start + _largest_power_of_two_below(end - start)
        return node_hash(subtree_hash(start, split), subtree_hash(split, end))

    return subtree_hash


def _audit_path(index: int, start: int, end: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """Return PATH(index - start, D[start:end]), deepest sibling first."""
    if end - start == 1:
        return []
    split = start + _largest_power_of_two_below(end - start)
    if index < split:
        return [*_audit_path(index, start, split, subtree_hash), subtree_hash(split, end)]
    return [*_audit_path(index, split, end, subtree_hash), subtree_hash(start, split)]


def _subproof(
    old_end: int, start: int, end: int, known: bool, subtree_hash: SubtreeHash
) -> list[bytes]:
    """Return SUBPROOF(old_end - start, D[start:end], known) of RFC 9162 section 2.1.4.1.

    ``known`` is the RFC's flag b: true while the subtree D[start:old_end] is the whole older
    tree, whose root the verifier already has.
    """
    if old_end == end:
        return [] if known else [subtree_hash(start, end)]
    split = start + _largest_power_of_two_below(end - start)
    if old_end <= split:
        return [*_subproof(old_end, start, split, known, subtree_hash), subtree_hash(split, end)]
    return [*_subproof(old_end, split, end, False, subtree_hash), subtree_hash(start, split)]


def _verify_same_size(size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    if proof:
        raise InconsistentTrees(
            f"consistency proof between two trees of size {size} has {len(proof)} nodes, "
            "expected none"
        )
    if not hmac.compare_digest(old_root, new_root):
        raise InconsistentTrees(
            f"two checkpoints of size {size} have different root hashes: the log signed two "
            "different trees of the same size, which is evidence of a forked log"
        )


def _inclusion_proof_length(index: int, tree_size: int) -> int:
    """Return the audit path length for a leaf, the number of its levels below the root.

    Below the level where ``index`` and the last leaf diverge, every level contributes a
    sibling. Above it, the leaf's subtree only has a left sibling where ``index`` has a 1 bit.
    """
    inner = (index ^ (tree_size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def _consistency_proof_length(old_size: int, new_size: int) -> int:
    """Return the number of nodes in PROOF(old_size, D[new_size]) for 0 < old_size < new_size.

    The proof is the audit path of the old tree's last leaf, less the levels inside the
    largest complete subtree that ends the old tree, plus that subtree's root unless it is
    the whole old tree.
    """
    shift = (old_size & -old_size).bit_length() - 1
    path_length = _inclusion_proof_length(old_size - 1, new_size)
    seed = 0 if old_size == 1 << shift else 1
    return seed + path_length - shift


def _largest_power_of_two_below(width: int) -> int:
    """Return k, the largest power of two strictly smaller than ``width`` (``width > 1``)."""
    return 1 << ((width - 1).bit_length() - 1)


def _require_hashes(hashes: Iterable[bytes], role: str) -> None:
    for position, value in enumerate(hashes):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise ValueError(
                f"{role} at position {position} is not {HASH_SIZE} bytes. Pass SHA-256 digests "
                "as bytes, with leaf_hash() applied to each entry"
            )


def _require_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside [0, {size}) for a tree of size {size}")


def _require_old_size(old_size: int, new_size: int) -> None:
    if not 1 <= old_size <= new_size:
        raise ValueError(
            f"old tree size {old_size} is outside [1, {new_size}]. RFC 9162 defines a "
            "consistency proof only from a non-empty tree to a tree at least as large"
        )


def _check_proof_hashes(
    error: type[InvalidProof] | type[InconsistentTrees],
    proof: Sequence[bytes],
    **roots: bytes,
) -> None:
    for name, value in roots.items():
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise error(f"{name} is not a {HASH_SIZE}-byte SHA-256 digest")
    for position, value in enumerate(proof):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise error(f"proof node {position} is not a {HASH_SIZE}-byte SHA-256 digest")
