package ztmint.authz_test

import data.ztmint.authz

base_input := {
	"method": "GET",
	"path": "/orders/7",
	"scopes": ["orders:read"],
	"sub": "alice@example.com",
	"aud": "orders-api",
}

test_allow_read_scope_on_prefix_path if {
	authz.decision == {"allow": true, "reason": "allowed"} with input as base_input
}

test_allow_exact_prefix_path if {
	authz.decision.allow with input as object.union(base_input, {"path": "/orders"})
}

test_allow_write_scope_post if {
	authz.decision.allow with input as object.union(base_input, {"method": "POST", "scopes": ["orders:write"]})
}

test_allow_one_of_several_scopes if {
	authz.decision.allow with input as object.union(base_input, {"scopes": ["health:read", "orders:read"]})
}

test_allow_second_prefix_of_scope if {
	authz.decision.allow with input as object.union(base_input, {"path": "/catalog/items/42", "scopes": ["inventory:read"]})
}

test_deny_sibling_path_with_same_prefix_text if {
	authz.decision == {"allow": false, "reason": "scope_denied"} with input as object.union(base_input, {"path": "/orders-admin"})
}

test_deny_method_not_granted if {
	not authz.decision.allow with input as object.union(base_input, {"method": "DELETE"})
}

test_deny_lowercase_method if {
	not authz.decision.allow with input as object.union(base_input, {"method": "get"})
}

test_deny_path_outside_prefixes if {
	not authz.decision.allow with input as object.union(base_input, {"path": "/inventory/1"})
}

test_deny_unknown_scope if {
	authz.decision.reason == "scope_denied" with input as object.union(base_input, {"scopes": ["orders:admin"]})
}

test_deny_no_scopes if {
	not authz.decision.allow with input as object.union(base_input, {"scopes": []})
}

test_deny_scopes_as_string if {
	authz.decision == {"allow": false, "reason": "input_invalid"} with input as object.union(base_input, {"scopes": "orders:read"})
}

test_deny_relative_path if {
	authz.decision.reason == "input_invalid" with input as object.union(base_input, {"path": "orders/7"})
}

test_deny_missing_method if {
	authz.decision.reason == "input_invalid" with input as object.remove(base_input, ["method"])
}

test_deny_missing_path if {
	authz.decision.reason == "input_invalid" with input as object.remove(base_input, ["path"])
}

test_deny_missing_scopes if {
	authz.decision.reason == "input_invalid" with input as object.remove(base_input, ["scopes"])
}

test_deny_missing_sub if {
	authz.decision.reason == "input_invalid" with input as object.remove(base_input, ["sub"])
}

test_deny_missing_aud if {
	authz.decision.reason == "input_invalid" with input as object.remove(base_input, ["aud"])
}

test_deny_empty_input if {
	not authz.decision.allow with input as {}
}

test_deny_when_grant_table_is_empty if {
	not authz.decision.allow with input as base_input with data.authz.scopes as {}
}

test_grant_prefixes_have_no_trailing_slash if {
	every grant in authz.grants {
		every prefix in grant.path_prefixes {
			startswith(prefix, "/")
			not endswith(prefix, "/")
		}
	}
}
