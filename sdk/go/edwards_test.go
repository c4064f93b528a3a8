package ztmint

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

func keyCaseX(t *testing.T, name string) []byte {
	t.Helper()
	vectors, _, _ := loadVectors(t)
	for _, vector := range vectors.KeyCases {
		if vector.Name != name {
			continue
		}
		var document struct {
			Keys []struct {
				X string `json:"x"`
			} `json:"keys"`
		}
		if err := json.Unmarshal(vector.JWKS, &document); err != nil {
			t.Fatalf("parse key case %s: %v", name, err)
		}
		x, err := base64.RawURLEncoding.DecodeString(document.Keys[0].X)
		if err != nil {
			t.Fatalf("decode x of %s: %v", name, err)
		}
		return x
	}
	t.Fatalf("key case %s not found", name)
	return nil
}

func TestCheckEd25519PublicKeyRejectsMixedOrder(t *testing.T) {
	problem := checkEd25519PublicKey(keyCaseX(t, "ed25519_mixed_order"))
	if !strings.Contains(problem, "prime-order subgroup") {
		t.Errorf("problem = %q, want the prime-order subgroup check to fire", problem)
	}
}

func TestCheckEd25519PublicKeyRejectsOffCurve(t *testing.T) {
	problem := checkEd25519PublicKey(keyCaseX(t, "ed25519_off_curve"))
	if !strings.Contains(problem, "not a point") {
		t.Errorf("problem = %q, want the on-curve check to fire", problem)
	}
}

func TestCheckEd25519PublicKeyAcceptsGroupKey(t *testing.T) {
	_, keys, _ := loadVectors(t)
	for kid, key := range keys.groupKeys {
		if problem := checkEd25519PublicKey(key); problem != "" {
			t.Errorf("group key %s rejected: %s", kid, problem)
		}
	}
}
