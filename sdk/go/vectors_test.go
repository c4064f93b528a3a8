package ztmint

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

type expectation struct {
	Result   string `json:"result"`
	Reason   Reason `json:"reason"`
	Subject  string `json:"sub"`
	Scope    string `json:"scope"`
	JTI      string `json:"jti"`
	TokenJTI string `json:"token_jti"`
}

type vectorCase struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Token       string          `json:"token"`
	Receipt     string          `json:"receipt"`
	JWKS        json.RawMessage `json:"jwks"`
	Expect      expectation     `json:"expect"`
}

type vectorFile struct {
	JWKS   json.RawMessage `json:"jwks"`
	Params struct {
		Now      int64  `json:"now"`
		Audience string `json:"audience"`
		Issuer   string `json:"issuer"`
		MaxTTL   int64  `json:"max_ttl"`
		Leeway   int64  `json:"leeway"`
	} `json:"params"`
	TokenCases   []vectorCase `json:"token_cases"`
	ReceiptCases []vectorCase `json:"receipt_cases"`
	KeyCases     []vectorCase `json:"key_cases"`
}

func loadVectors(t *testing.T) (*vectorFile, *KeySet, TokenParams) {
	t.Helper()
	data, err := os.ReadFile("../vectors/tokens.json")
	if err != nil {
		t.Fatalf("read shared vectors: %v", err)
	}
	var vectors vectorFile
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatalf("parse shared vectors: %v", err)
	}
	keys, err := NewKeySet(vectors.JWKS)
	if err != nil {
		t.Fatalf("load the vectors' JWKS: %v", err)
	}
	params := TokenParams{
		Now:      time.Unix(vectors.Params.Now, 0),
		Audience: vectors.Params.Audience,
		Issuer:   vectors.Params.Issuer,
		MaxTTL:   time.Duration(vectors.Params.MaxTTL) * time.Second,
		Leeway:   time.Duration(vectors.Params.Leeway) * time.Second,
	}
	return &vectors, keys, params
}

func checkRefusal(t *testing.T, err error, want Reason) {
	t.Helper()
	var rejection *Error
	if !errors.As(err, &rejection) {
		t.Fatalf("expected rejection %s, got %v", want, err)
	}
	if rejection.Reason != want {
		t.Errorf("reason = %s, want %s (detail: %s)", rejection.Reason, want, rejection.Detail)
	}
}

func TestVerifyTokenSharedVectors(t *testing.T) {
	vectors, keys, params := loadVectors(t)
	for _, vector := range vectors.TokenCases {
		t.Run(vector.Name, func(t *testing.T) {
			claims, err := VerifyToken(vector.Token, keys, params)
			if vector.Expect.Result == "error" {
				checkRefusal(t, err, vector.Expect.Reason)
				return
			}
			if err != nil {
				t.Fatalf("expected a valid token, got %v", err)
			}
			if claims.Subject != vector.Expect.Subject {
				t.Errorf("sub = %q, want %q", claims.Subject, vector.Expect.Subject)
			}
			if claims.Scope != vector.Expect.Scope {
				t.Errorf("scope = %q, want %q", claims.Scope, vector.Expect.Scope)
			}
			if claims.JTI != vector.Expect.JTI {
				t.Errorf("jti = %q, want %q", claims.JTI, vector.Expect.JTI)
			}
		})
	}
}

func TestVerifyReceiptSharedVectors(t *testing.T) {
	vectors, keys, _ := loadVectors(t)
	for _, vector := range vectors.ReceiptCases {
		t.Run(vector.Name, func(t *testing.T) {
			claims, err := VerifyReceipt(vector.Receipt, vector.Token, keys)
			if vector.Expect.Result == "error" {
				checkRefusal(t, err, vector.Expect.Reason)
				return
			}
			if err != nil {
				t.Fatalf("expected a valid receipt, got %v", err)
			}
			if claims.TokenJTI != vector.Expect.TokenJTI {
				t.Errorf("token_jti = %q, want %q", claims.TokenJTI, vector.Expect.TokenJTI)
			}
		})
	}
}

func TestNewKeySetSharedVectors(t *testing.T) {
	vectors, _, _ := loadVectors(t)
	for _, vector := range vectors.KeyCases {
		t.Run(vector.Name, func(t *testing.T) {
			_, err := NewKeySet(vector.JWKS)
			var keyError *KeySetError
			if !errors.As(err, &keyError) {
				t.Fatalf("expected a KeySetError, got %v", err)
			}
		})
	}
}

// The standard library alone accepts R = identity with S = k*a. This test proves that the
// vector exercises verifyEd25519Strict's own check rather than a check Go already makes.
func TestStdlibEd25519AcceptsIdentityR(t *testing.T) {
	vectors, keys, _ := loadVectors(t)
	for _, vector := range vectors.TokenCases {
		if vector.Name != "signature_r_identity" {
			continue
		}
		parts := strings.Split(vector.Token, ".")
		signature, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil {
			t.Fatalf("decode signature: %v", err)
		}
		var publicKey ed25519.PublicKey
		for _, key := range keys.groupKeys {
			publicKey = key
		}
		message := []byte(parts[0] + "." + parts[1])
		if !ed25519.Verify(publicKey, message, signature) {
			t.Errorf("crypto/ed25519 rejects R = identity; the explicit check may be redundant")
		}
		if verifyEd25519Strict(publicKey, message, signature) {
			t.Errorf("verifyEd25519Strict accepts R = identity")
		}
		return
	}
	t.Fatal("vector signature_r_identity not found")
}

func TestErrorMessageNamesReason(t *testing.T) {
	err := reject(TokenExpired, "token expired at %d", 10)
	if err.Error() != "token_expired: token expired at 10" {
		t.Errorf("Error() = %q", err.Error())
	}
}
