"""The RFC 9162 Merkle tree: published values, every small tree, and each rejection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mint.transparency.errors import InconsistentTrees, InvalidProof, TransparencyError
from mint.transparency.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parents[2] / "vectors" / "transparency"
MAX_EXHAUSTIVE_SIZE = 40
OTHER_HASH = hashlib.sha256(b"not a node of any test tree").digest()


def load_vectors() -> dict[str, Any]:
    with (VECTORS / "transparency-dev-merkle-rfc6962.json").open() as handle:
        vectors: dict[str, Any] = json.load(handle)
    return vectors


def vector_leaf_hashes() -> list[bytes]:
    return [leaf_hash(bytes.fromhex(leaf)) for leaf in load_vectors()["leaves_hex"]]


def numbered_leaf_hashes(count: int) -> list[bytes]:
    return [leaf_hash(f"entry {number}".encode()) for number in range(count)]


def flip_bit(value: bytes) -> bytes:
    return bytes([value[0] ^ 0x10]) + value[1:]


def rejects(check: Any, *args: Any) -> type[Exception] | None:
    """Return the exception class ``check(*args)`` raised, or None when it accepted."""
    try:
        check(*args)
    except Exception as error:  # noqa: BLE001 - the caller asserts on the class
        return type(error)
    return None


# Published values (transparency-dev/merkle, RFC 6962 hasher and proof tables).


def test_leaf_hash_matches_published_values() -> None:
    hasher = load_vectors()["hasher"]
    assert leaf_hash(b"").hex() == hasher["empty_leaf_hash_hex"]
    assert leaf_hash(b"L123456").hex() == hasher["leaf_L123456_hash_hex"]


def test_node_hash_matches_published_value() -> None:
    hasher = load_vectors()["hasher"]
    assert node_hash(b"N123", b"N456").hex() == hasher["node_N123_N456_hash_hex"]


def test_root_of_empty_tree() -> None:
    assert root([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == load_vectors()["hasher"]["empty_root_hex"]


def test_root_matches_published_roots() -> None:
    hashes = vector_leaf_hashes()
    for size, expected in enumerate(load_vectors()["roots_hex"], start=1):
        assert root(hashes[:size]).hex() == expected, f"size {size}"


def test_merkle_tree_root_matches_published_roots() -> None:
    tree = MerkleTree(vector_leaf_hashes())
    for size, expected in enumerate(load_vectors()["roots_hex"], start=1):
        assert tree.root(size).hex() == expected, f"size {size}"


def test_inclusion_proof_matches_published_proofs() -> None:
    hashes = vector_leaf_hashes()
    for case in load_vectors()["inclusion_proofs"]:
        index, size = case["leaf"] - 1, case["size"]
        built = [node.hex() for node in inclusion_proof(index, hashes[:size])]
        assert built == case["proof_hex"], f"leaf {index} of size {size}"


def test_verify_inclusion_accepts_published_proofs() -> None:
    vectors = load_vectors()
    hashes = vector_leaf_hashes()
    for case in vectors["inclusion_proofs"]:
        index, size = case["leaf"] - 1, case["size"]
        proof = [bytes.fromhex(node) for node in case["proof_hex"]]
        tree_root = bytes.fromhex(vectors["roots_hex"][size - 1])
        verify_inclusion(hashes[index], index, size, proof, tree_root)


def test_consistency_proof_matches_published_proofs() -> None:
    hashes = vector_leaf_hashes()
    for case in load_vectors()["consistency_proofs"]:
        old_size, new_size = case["size1"], case["size2"]
        built = [node.hex() for node in consistency_proof(old_size, hashes[:new_size])]
        assert built == case["proof_hex"], f"sizes {old_size} to {new_size}"


def test_verify_consistency_accepts_published_proofs() -> None:
    vectors = load_vectors()
    for case in vectors["consistency_proofs"]:
        old_size, new_size = case["size1"], case["size2"]
        verify_consistency(
            old_size,
            new_size,
            bytes.fromhex(vectors["roots_hex"][old_size - 1]),
            bytes.fromhex(vectors["roots_hex"][new_size - 1]),
            [bytes.fromhex(node) for node in case["proof_hex"]],
        )


# Every tree of 1 to 40 leaves: every index and every pair of sizes.


@pytest.mark.parametrize("size", range(1, MAX_EXHAUSTIVE_SIZE + 1))
def test_verify_inclusion_accepts_every_index(size: int) -> None:
    hashes = numbered_leaf_hashes(size)
    tree_root = root(hashes)
    for index in range(size):
        verify_inclusion(hashes[index], index, size, inclusion_proof(index, hashes), tree_root)


@pytest.mark.parametrize("size", range(1, MAX_EXHAUSTIVE_SIZE + 1))
def test_verify_inclusion_rejects_every_other_index(size: int) -> None:
    hashes = numbered_leaf_hashes(size)
    tree_root = root(hashes)
    for index in range(size):
        proof = inclusion_proof(index, hashes)
        for other in range(size):
            if other == index:
                continue
            outcome = rejects(verify_inclusion, hashes[index], other, size, proof, tree_root)
            assert outcome is InvalidProof, f"leaf {index} claimed at {other} of size {size}"


@pytest.mark.parametrize("size", range(1, MAX_EXHAUSTIVE_SIZE + 1))
def test_verify_inclusion_rejects_wrong_leaf_or_root(size: int) -> None:
    hashes = numbered_leaf_hashes(size + 1)
    tree_root = root(hashes[:size])
    for index in range(size):
        proof = inclusion_proof(index, hashes[:size])
        wrong_leaf = rejects(verify_inclusion, hashes[size], index, size, proof, tree_root)
        assert wrong_leaf is InvalidProof, f"foreign leaf at {index} of size {size}"
        wrong_root = root(hashes[: size + 1])
        outcome = rejects(verify_inclusion, hashes[index], index, size, proof, wrong_root)
        assert outcome is InvalidProof, f"leaf {index} against root of size {size + 1}"


@pytest.mark.parametrize("size", range(1, MAX_EXHAUSTIVE_SIZE + 1))
def test_verify_inclusion_rejects_tampered_proofs(size: int) -> None:
    hashes = numbered_leaf_hashes(size)
    tree_root = root(hashes)
    for index in range(size):
        proof = inclusion_proof(index, hashes)
        tampered: dict[str, list[bytes]] = {
            "appended node": [*proof, OTHER_HASH],
            "prepended node": [OTHER_HASH, *proof],
            "appended root": [*proof, tree_root],
        }
        if proof:
            tampered["last node removed"] = proof[:-1]
            tampered["first node removed"] = proof[1:]
        for position in range(len(proof)):
            flipped = list(proof)
            flipped[position] = flip_bit(flipped[position])
            tampered[f"node {position} flipped"] = flipped
        for name, bad_proof in tampered.items():
            outcome = rejects(verify_inclusion, hashes[index], index, size, bad_proof, tree_root)
            assert outcome is InvalidProof, f"{name}, leaf {index} of size {size}"


@pytest.mark.parametrize("new_size", range(1, MAX_EXHAUSTIVE_SIZE + 1))
def test_verify_consistency_accepts_every_older_size(new_size: int) -> None:
    hashes = numbered_leaf_hashes(new_size)
    new_root = root(hashes)
    for old_size in range(1, new_size + 1):
        proof = consistency_proof(old_size, hashes)
        verify_consistency(old_size, new_size, root(hashes[:old_size]), new_root, proof)


@pytest.mark.parametrize("new_size", range(2, MAX_EXHAUSTIVE_SIZE + 1))
def test_verify_consistency_rejects_tampered_proofs(new_size: int) -> None:
    hashes = numbered_leaf_hashes(new_size)
    new_root = root(hashes)
    for old_size in range(1, new_size):
        old_root = root(hashes[:old_size])
        proof = consistency_proof(old_size, hashes)
        tampered: dict[str, list[bytes]] = {
            "empty proof": [],
            "appended node": [*proof, OTHER_HASH],
            "prepended node": [OTHER_HASH, *proof],
            "prepended old root": [old_root, *proof],
            "last node removed": proof[:-1],
        }
        for position in range(len(proof)):
            flipped = list(proof)
            flipped[position] = flip_bit(flipped[position])
            tampered[f"node {position} flipped"] = flipped
        for name, bad_proof in tampered.items():
            outcome = rejects(verify_consistency, old_size, new_size, old_root, new_root, bad_proof)
            assert outcome is InconsistentTrees, f"{name}, sizes {old_size} to {new_size}"


@pytest.mark.parametrize("new_size", range(2, MAX_EXHAUSTIVE_SIZE + 1))
def test_verify_consistency_rejects_wrong_roots_or_sizes(new_size: int) -> None:
    hashes = numbered_leaf_hashes(new_size + 1)
    new_root = root(hashes[:new_size])
    for old_size in range(1, new_size):
        old_root = root(hashes[:old_size])
        proof = consistency_proof(old_size, hashes[:new_size])
        # The new size is not varied: with both roots kept, a proof can also fit the next
        # size, because the sizes are bound by the signed checkpoints and not by the proof.
        cases: dict[str, tuple[int, int, bytes, bytes]] = {
            "wrong old root": (old_size, new_size, flip_bit(old_root), new_root),
            "wrong new root": (old_size, new_size, old_root, root(hashes)),
            "swapped roots": (old_size, new_size, new_root, old_root),
            "old size minus one": (old_size - 1, new_size, old_root, new_root),
            "old size plus one": (old_size + 1, new_size, old_root, new_root),
        }
        for name, (first, second, first_root, second_root) in cases.items():
            outcome = rejects(verify_consistency, first, second, first_root, second_root, proof)
            assert outcome is InconsistentTrees, f"{name}, sizes {old_size} to {new_size}"


# The incremental tree against the recursive definition.


def test_merkle_tree_matches_definition_at_every_size() -> None:
    hashes = numbered_leaf_hashes(MAX_EXHAUSTIVE_SIZE)
    tree = MerkleTree()
    assert tree.root() == EMPTY_ROOT
    for size in range(1, MAX_EXHAUSTIVE_SIZE + 1):
        assert tree.append(hashes[size - 1]) == size - 1
        assert tree.size == size
        assert tree.root() == root(hashes[:size]), f"root at size {size}"


def test_merkle_tree_earlier_roots_match_definition() -> None:
    hashes = numbered_leaf_hashes(MAX_EXHAUSTIVE_SIZE)
    tree = MerkleTree(hashes)
    for size in range(MAX_EXHAUSTIVE_SIZE + 1):
        assert tree.root(size) == root(hashes[:size]), f"root at size {size}"


def test_merkle_tree_proofs_match_definition() -> None:
    hashes = numbered_leaf_hashes(MAX_EXHAUSTIVE_SIZE)
    tree = MerkleTree(hashes)
    for size in range(1, MAX_EXHAUSTIVE_SIZE + 1):
        for index in range(size):
            expected = inclusion_proof(index, hashes[:size])
            assert tree.inclusion_proof(index, size) == expected, f"leaf {index} of {size}"
        for old_size in range(1, size + 1):
            expected = consistency_proof(old_size, hashes[:size])
            assert tree.consistency_proof(old_size, size) == expected, f"{old_size} to {size}"


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=1, max_value=1100), data=st.data())
def test_merkle_tree_matches_definition_for_larger_trees(size: int, data: st.DataObject) -> None:
    hashes = numbered_leaf_hashes(size)
    tree = MerkleTree(hashes)
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    old_size = data.draw(st.integers(min_value=1, max_value=size), label="old_size")
    assert tree.root() == root(hashes)
    assert tree.inclusion_proof(index) == inclusion_proof(index, hashes)
    assert tree.consistency_proof(old_size) == consistency_proof(old_size, hashes)


def test_merkle_tree_leaf_hash_returns_appended_hash() -> None:
    hashes = numbered_leaf_hashes(5)
    tree = MerkleTree(hashes)
    assert [tree.leaf_hash(index) for index in range(5)] == hashes
    assert len(tree) == 5


def test_merkle_tree_repr_shows_only_size() -> None:
    assert repr(MerkleTree(numbered_leaf_hashes(3))) == "MerkleTree(size=3)"


# Rejections of impossible parameters, with their messages.


def test_verify_inclusion_rejects_index_not_below_size() -> None:
    hashes = numbered_leaf_hashes(4)
    with pytest.raises(InvalidProof, match="leaf index 4 is outside a tree of size 4"):
        verify_inclusion(hashes[0], 4, 4, [], root(hashes))


def test_verify_inclusion_rejects_negative_index() -> None:
    hashes = numbered_leaf_hashes(4)
    with pytest.raises(InvalidProof, match="leaf index -1 is outside"):
        verify_inclusion(hashes[0], -1, 4, [], root(hashes))


def test_verify_inclusion_rejects_empty_tree() -> None:
    with pytest.raises(InvalidProof, match="outside a tree of size 0"):
        verify_inclusion(EMPTY_ROOT, 0, 0, [], EMPTY_ROOT)


def test_verify_inclusion_rejects_wrong_proof_length() -> None:
    hashes = numbered_leaf_hashes(8)
    proof = inclusion_proof(3, hashes)
    with pytest.raises(InvalidProof, match="has 2 nodes, expected 3"):
        verify_inclusion(hashes[3], 3, 8, proof[:2], root(hashes))


def test_verify_inclusion_rejects_short_hash() -> None:
    hashes = numbered_leaf_hashes(2)
    with pytest.raises(InvalidProof, match="proof node 0 is not a 32-byte SHA-256 digest"):
        verify_inclusion(hashes[0], 0, 2, [hashes[1][:31]], root(hashes))


def test_verify_inclusion_rejects_short_root() -> None:
    hashes = numbered_leaf_hashes(2)
    with pytest.raises(InvalidProof, match="root is not a 32-byte"):
        verify_inclusion(hashes[0], 0, 2, [hashes[1]], root(hashes)[:16])


def test_verify_inclusion_message_names_leaf_and_size() -> None:
    hashes = numbered_leaf_hashes(3)
    with pytest.raises(InvalidProof) as caught:
        verify_inclusion(hashes[0], 0, 3, inclusion_proof(0, hashes), OTHER_HASH)
    assert "leaf 0 does not lead to the root of the tree of size 3" in str(caught.value)
    assert caught.value.reason == "inclusion_proof_invalid"


def test_verify_consistency_rejects_zero_old_size() -> None:
    with pytest.raises(InconsistentTrees, match="old tree size 0 is not positive"):
        verify_consistency(0, 3, EMPTY_ROOT, OTHER_HASH, [])


def test_verify_consistency_rejects_old_size_above_new_size() -> None:
    with pytest.raises(InconsistentTrees, match="old tree size 5 is larger than new tree size 4"):
        verify_consistency(5, 4, OTHER_HASH, OTHER_HASH, [OTHER_HASH])


def test_verify_consistency_rejects_wrong_proof_length() -> None:
    hashes = numbered_leaf_hashes(8)
    proof = consistency_proof(3, hashes)
    with pytest.raises(InconsistentTrees, match=f"has {len(proof) + 1} nodes, expected"):
        verify_consistency(3, 8, root(hashes[:3]), root(hashes), [*proof, OTHER_HASH])


def test_verify_consistency_accepts_equal_trees_with_empty_proof() -> None:
    hashes = numbered_leaf_hashes(6)
    verify_consistency(6, 6, root(hashes), root(hashes), [])


def test_verify_consistency_rejects_equal_sizes_with_nodes() -> None:
    hashes = numbered_leaf_hashes(6)
    with pytest.raises(InconsistentTrees, match="has 1 nodes, expected none"):
        verify_consistency(6, 6, root(hashes), root(hashes), [OTHER_HASH])


def test_verify_consistency_rejects_fork_at_same_size() -> None:
    hashes = numbered_leaf_hashes(6)
    with pytest.raises(InconsistentTrees, match="evidence of a forked log"):
        verify_consistency(6, 6, root(hashes), OTHER_HASH, [])


def test_verify_consistency_message_says_log_rewrote_entries() -> None:
    hashes = numbered_leaf_hashes(5)
    rewritten = [*hashes[:4], leaf_hash(b"rewritten")]
    proof = consistency_proof(3, rewritten)
    with pytest.raises(InconsistentTrees) as caught:
        verify_consistency(3, 5, root(hashes[:3]), root(hashes), proof)
    assert "does not extend the tree of size 3" in str(caught.value)
    assert caught.value.reason == "trees_inconsistent"


def test_verify_consistency_detects_edited_old_entry() -> None:
    hashes = numbered_leaf_hashes(7)
    edited = [leaf_hash(b"edited"), *hashes[1:]]
    proof = consistency_proof(4, edited)
    outcome = rejects(verify_consistency, 4, 7, root(hashes[:4]), root(edited), proof)
    assert outcome is InconsistentTrees


def test_verify_consistency_rejects_short_proof_node() -> None:
    hashes = numbered_leaf_hashes(3)
    with pytest.raises(InconsistentTrees, match="proof node 0 is not a 32-byte"):
        verify_consistency(1, 3, hashes[0], root(hashes), [b"\x00" * 31, OTHER_HASH])


def test_errors_share_the_transparency_base() -> None:
    assert issubclass(InvalidProof, TransparencyError)
    assert issubclass(InconsistentTrees, TransparencyError)


def test_inclusion_proof_rejects_index_outside_tree() -> None:
    with pytest.raises(ValueError, match=r"leaf index 3 is outside \[0, 3\)"):
        inclusion_proof(3, numbered_leaf_hashes(3))


def test_consistency_proof_rejects_zero_old_size() -> None:
    with pytest.raises(ValueError, match=r"old tree size 0 is outside \[1, 3\]"):
        consistency_proof(0, numbered_leaf_hashes(3))


def test_consistency_proof_rejects_old_size_above_tree() -> None:
    with pytest.raises(ValueError, match=r"old tree size 4 is outside \[1, 3\]"):
        consistency_proof(4, numbered_leaf_hashes(3))


def test_root_rejects_leaf_hash_of_wrong_size() -> None:
    with pytest.raises(ValueError, match=f"leaf hash at position 1 is not {HASH_SIZE} bytes"):
        root([leaf_hash(b"a"), b"short"])


def test_merkle_tree_append_rejects_wrong_size() -> None:
    tree = MerkleTree()
    with pytest.raises(ValueError, match="is not 32 bytes"):
        tree.append(b"short")
    assert tree.size == 0


def test_merkle_tree_root_rejects_size_above_tree() -> None:
    tree = MerkleTree(numbered_leaf_hashes(3))
    with pytest.raises(ValueError, match=r"tree size 4 is outside \[0, 3\]"):
        tree.root(4)


def test_merkle_tree_inclusion_proof_rejects_index_at_size() -> None:
    tree = MerkleTree(numbered_leaf_hashes(5))
    with pytest.raises(ValueError, match=r"leaf index 3 is outside \[0, 3\)"):
        tree.inclusion_proof(3, 3)


def test_merkle_tree_consistency_proof_rejects_zero_old_size() -> None:
    tree = MerkleTree(numbered_leaf_hashes(5))
    with pytest.raises(ValueError, match=r"old tree size 0 is outside \[1, 5\]"):
        tree.consistency_proof(0)
