# METADATA
# title: ztmint check, written for OPA's Envoy plugin (the benchmark peer)
# description: |
#   Does the work the ztmint authz service does for one ext_authz check, in the
#   input shape of the opa-envoy-plugin (input.attributes.request.http): verify the
#   token (EdDSA, group key) and the receipt (ES256, receipt key), check that the
#   receipt binds the token's SHA-256 and jti, check iss, aud, exp and nbf with the
#   same leeway, then look the scopes up in the same grant table (opa/authz/data.json,
#   loaded at data.scopes). The keys come from data.bench_keys, written by bench/authz.py.
#   Only for the benchmark: the path is not normalised as authz/paths.py does.
package envoy.authz

default allow := false

leeway_ns := 10 * 1000000000

http_request := input.attributes.request.http

bearer := token if {
	authorization := http_request.headers.authorization
	startswith(authorization, "Bearer ")
	token := substring(authorization, 7, -1)
}

receipt := http_request.headers["x-kms-sig"]

token_claims := claims if {
	io.jwt.verify_eddsa(bearer, data.bench_keys.group_jwks)
	[header, claims, _] := io.jwt.decode(bearer)
	header.alg == "EdDSA"
	header.typ == "JWT"
	header.kid == data.bench_keys.group_kid
}

receipt_claims := claims if {
	io.jwt.verify_es256(receipt, data.bench_keys.receipt_jwks)
	[header, claims, _] := io.jwt.decode(receipt)
	header.alg == "ES256"
	header.typ == "kms-receipt+jwt"
}

receipt_bound if {
	# crypto.sha256 returns hex, the receipt carries base64url, so compare the hex forms.
	hex.encode(base64url.decode(receipt_claims.token_sha256)) == crypto.sha256(bearer)
	receipt_claims.token_jti == token_claims.jti
}

token_current if {
	now := time.now_ns()
	token_claims.iss == data.bench_keys.issuer
	token_claims.aud == data.bench_keys.audience
	now < (token_claims.exp * 1000000000) + leeway_ns
	now >= (token_claims.nbf * 1000000000) - leeway_ns
}

request_path := split(http_request.path, "?")[0]

scope_allows if {
	some scope in split(token_claims.scope, " ")
	grant := data.scopes[scope]
	http_request.method in grant.methods
	some prefix in grant.path_prefixes
	path_within(request_path, prefix)
}

allow if {
	receipt_bound
	token_current
	scope_allows
}

path_within(path, prefix) if path == prefix

path_within(path, prefix) if startswith(path, concat("", [prefix, "/"]))
