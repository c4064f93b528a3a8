package ztmint.mint_test

import data.ztmint.mint

base := {"sub": "alice@example.com", "scopes": ["payments:read"], "aud": "payments", "ttl_seconds": 900}

test_allow_granted_scope_within_ttl if {
	mint.decision.allow with input as base
}

test_allow_two_scopes_at_tightest_max if {
	mint.decision.allow with input as object.union(base, {"scopes": ["payments:read", "payments:write"], "ttl_seconds": 900})
}

test_allow_scope_at_its_max_ttl if {
	mint.decision.allow with input as object.union(base, {"ttl_seconds": 3600})
}

test_allow_second_audience_of_scope if {
	mint.decision.allow with input as {"sub": "bob@example.com", "scopes": ["orders:read"], "aud": "orders-admin", "ttl_seconds": 600}
}

test_deny_unknown_identity if {
	d := mint.decision with input as object.union(base, {"sub": "mallory@example.com"})
	not d.allow
	d.reason == "identity_unknown"
}

test_deny_scope_not_granted if {
	d := mint.decision with input as object.union(base, {"scopes": ["payments:read", "orders:read"]})
	not d.allow
	d.reason == "scope_not_granted"
	d.denied_scopes == ["orders:read"]
}

test_deny_audience_not_allowed if {
	d := mint.decision with input as object.union(base, {"aud": "orders"})
	not d.allow
	d.reason == "audience_not_allowed"
}

test_deny_ttl_above_scope_max if {
	d := mint.decision with input as object.union(base, {"scopes": ["payments:write"], "ttl_seconds": 1800})
	not d.allow
	d.reason == "ttl_exceeds_scope_max"
	d.denied_scopes == ["payments:write"]
}

test_deny_ttl_below_global_min if {
	d := mint.decision with input as object.union(base, {"ttl_seconds": 60})
	not d.allow
	d.reason == "ttl_out_of_range"
}

test_deny_ttl_above_global_max if {
	d := mint.decision with input as object.union(base, {"ttl_seconds": 7200})
	not d.allow
	d.reason == "ttl_out_of_range"
}

test_deny_granted_scope_without_entry if {
	d := mint.decision with input as base with data.mint.scopes as {"payments:write": {"max_ttl_seconds": 900, "audiences": ["payments"]}}
	not d.allow
	d.reason == "scope_unknown"
}

test_deny_scope_max_outside_range if {
	d := mint.decision with input as base with data.mint.scopes as {"payments:read": {"max_ttl_seconds": 86400, "audiences": ["payments"]}}
	not d.allow
	d.reason == "scope_ttl_invalid"
}

test_deny_message_names_every_problem if {
	d := mint.decision with input as object.union(base, {"scopes": ["payments:read", "orders:read"], "aud": "orders"})
	contains(d.message, "orders:read")
	contains(d.message, "payments:read")
}

test_deny_missing_sub if {
	d := mint.decision with input as object.remove(base, ["sub"])
	not d.allow
	d.reason == "input_invalid"
}

test_deny_missing_scopes if {
	d := mint.decision with input as object.remove(base, ["scopes"])
	d.reason == "input_invalid"
}

test_deny_missing_aud if {
	d := mint.decision with input as object.remove(base, ["aud"])
	d.reason == "input_invalid"
}

test_deny_missing_ttl if {
	d := mint.decision with input as object.remove(base, ["ttl_seconds"])
	d.reason == "input_invalid"
}

test_deny_empty_scopes if {
	d := mint.decision with input as object.union(base, {"scopes": []})
	d.reason == "input_invalid"
}

test_deny_non_string_scope if {
	d := mint.decision with input as object.union(base, {"scopes": [7]})
	d.reason == "input_invalid"
}

test_deny_string_ttl if {
	d := mint.decision with input as object.union(base, {"ttl_seconds": "900"})
	d.reason == "input_invalid"
}

test_deny_empty_input if {
	not mint.decision.allow with input as {}
}
