# METADATA
# title: ztmint request authorization
# description: |
#   Decides whether a verified token's scopes allow one HTTP method on one path.
#   The ext_authz service queries data.ztmint.authz.decision with the input
#   {method, path, scopes, sub, aud} after it has verified the token and its receipt
#   and normalised the path. Anything not explicitly allowed is denied, including an
#   input with a missing or mistyped field.
package ztmint.authz

# The grant table lives in data.json next to this file. OPA mounts a data.json under the
# path of its folder relative to the loaded root, so the table is data.scopes when OPA loads
# opa/authz (the server) and data.authz.scopes when it loads opa/ (opa test opa/).
grants := data.authz.scopes if {
	is_object(data.authz.scopes)
} else := data.scopes

default decision := {"allow": false, "reason": "input_invalid"}

decision := {"allow": true, "reason": "allowed"} if {
	input_valid
	allowed
}

decision := {"allow": false, "reason": "scope_denied"} if {
	input_valid
	not allowed
}

input_valid if {
	is_string(input.method)
	is_string(input.path)
	startswith(input.path, "/")
	is_array(input.scopes)
	is_string(input.sub)
	is_string(input.aud)
}

allowed if {
	some scope in input.scopes
	grant := grants[scope]
	input.method in grant.methods
	some prefix in grant.path_prefixes
	path_within(input.path, prefix)
}

# METADATA
# description: |
#   True when path is prefix itself or lies below it on a segment boundary, so the
#   prefix /orders covers /orders and /orders/7 but not /orders-admin.
path_within(path, "/") if startswith(path, "/")

path_within(path, prefix) if path == prefix

path_within(path, prefix) if {
	prefix != "/"
	startswith(path, concat("", [prefix, "/"]))
}
