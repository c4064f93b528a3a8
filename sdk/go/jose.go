package ztmint

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

var base64URLAlphabet = regexp.MustCompile(`\A[A-Za-z0-9_-]*\z`)

// decodeSegment decodes canonical base64url without padding (RFC 7515 section 2). It rejects
// padding, the standard alphabet's '+' and '/', and non-zero unused bits, so one token has
// exactly one spelling.
func decodeSegment(segment string, reason Reason) ([]byte, error) {
	if !base64URLAlphabet.MatchString(segment) {
		return nil, reject(reason, "base64url segment has characters outside the URL-safe alphabet")
	}
	// base64.RawURLEncoding.Strict() rejects non-zero unused bits (RFC 4648 section 3.5).
	data, err := base64.RawURLEncoding.Strict().DecodeString(segment)
	if err != nil {
		return nil, reject(reason, "base64url segment is not canonical: %v", err)
	}
	return data, nil
}

// splitCompact splits a compact JWS (RFC 7515 section 7.1) into exactly three segments.
func splitCompact(text string, reason Reason) (header, payload, signature string, err error) {
	parts := strings.Split(text, ".")
	if len(parts) == 5 {
		return "", "", "", reject(reason, "five segments: this is a JWE, not a JWS")
	}
	if len(parts) != 3 {
		return "", "", "", reject(reason, "compact JWS needs 3 segments, found %d", len(parts))
	}
	return parts[0], parts[1], parts[2], nil
}

// parseObject parses one JSON object (RFC 8259) from UTF-8 and rejects duplicate member
// names, invalid UTF-8, a byte order mark and trailing data. Numbers stay json.Number, so a
// caller can tell 5 from 5.0 and 5e0.
//
// RFC 7515 section 5.2 lets a parser reject duplicate names or keep the last one. Keeping one
// lets two verifiers read different claims from one token, so ztmint rejects them everywhere.
func parseObject(data []byte, reason Reason) (map[string]any, error) {
	// encoding/json replaces invalid UTF-8 with U+FFFD instead of failing, so check first.
	if !utf8.Valid(data) {
		return nil, reject(reason, "segment is not valid UTF-8")
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	value, err := decodeValue(decoder)
	if err != nil {
		return nil, reject(reason, "segment is not valid JSON: %v", err)
	}
	if _, err := decoder.Token(); !errors.Is(err, io.EOF) {
		return nil, reject(reason, "segment has data after the JSON value")
	}
	object, ok := value.(map[string]any)
	if !ok {
		return nil, reject(reason, "segment is JSON but not an object")
	}
	return object, nil
}

func decodeValue(decoder *json.Decoder) (any, error) {
	token, err := decoder.Token()
	if err != nil {
		return nil, err
	}
	switch delimiter := token.(type) {
	case json.Delim:
		if delimiter == '{' {
			return decodeObjectMembers(decoder)
		}
		if delimiter == '[' {
			return decodeArrayElements(decoder)
		}
		return nil, fmt.Errorf("unexpected delimiter %q", delimiter)
	default:
		return token, nil
	}
}

func decodeObjectMembers(decoder *json.Decoder) (map[string]any, error) {
	object := map[string]any{}
	for decoder.More() {
		token, err := decoder.Token()
		if err != nil {
			return nil, err
		}
		// Token returns member names unescaped, so "s\u0075b" and "sub" collide here.
		name, ok := token.(string)
		if !ok {
			return nil, fmt.Errorf("member name is not a string")
		}
		if _, seen := object[name]; seen {
			return nil, fmt.Errorf("duplicate member name %q", name)
		}
		value, err := decodeValue(decoder)
		if err != nil {
			return nil, err
		}
		object[name] = value
	}
	if _, err := decoder.Token(); err != nil {
		return nil, err
	}
	return object, nil
}

func decodeArrayElements(decoder *json.Decoder) ([]any, error) {
	elements := []any{}
	for decoder.More() {
		value, err := decodeValue(decoder)
		if err != nil {
			return nil, err
		}
		elements = append(elements, value)
	}
	if _, err := decoder.Token(); err != nil {
		return nil, err
	}
	return elements, nil
}

// I-JSON (RFC 7493 section 2.2) limits interoperable integers to the range where an IEEE 754
// double is exact. Times before the epoch have no use here, so the range starts at 0, as in
// the Python verifier.
const maxSafeInteger = 1<<53 - 1

var integerLiteral = regexp.MustCompile(`\A-?(0|[1-9][0-9]*)\z`)

// safeInteger returns the value of a JSON number written as an integer literal (no fraction,
// no exponent) from 0 to 2^53 - 1.
func safeInteger(value any) (int64, bool) {
	number, ok := value.(json.Number)
	if !ok || !integerLiteral.MatchString(string(number)) {
		return 0, false
	}
	parsed, err := strconv.ParseInt(string(number), 10, 64)
	if err != nil || parsed > maxSafeInteger || parsed < 0 {
		return 0, false
	}
	return parsed, true
}
