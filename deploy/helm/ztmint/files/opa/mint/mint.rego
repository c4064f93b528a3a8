# METADATA
# title: ztmint mint policy
# description: |
#   Decides whether an identity may mint a token with these scopes for this audience
#   and TTL. The mint queries data.ztmint.mint.decision with the input
#   {sub, scopes, aud, ttl_seconds} after it has verified the WebAuthn assertion.
#   A scope is granted through the identity's groups; each scope names the audiences it
#   may be used with and its maximum TTL, which must lie within 5 to 60 minutes.
#   Anything not explicitly allowed is denied, including a missing or mistyped field.
package ztmint.mint

min_ttl_seconds := 300

max_ttl_seconds := 3600

# The tables live in data.json next to this file. OPA mounts it at data.mint when it loads
# opa/ (opa test opa/) or `mint:opa/mint`, and at the data root when it loads opa/mint alone.
users := data.mint.users if {
	is_object(data.mint.users)
} else := data.users

groups := data.mint.groups if {
	is_object(data.mint.groups)
} else := data.groups

scopes := data.mint.scopes if {
	is_object(data.mint.scopes)
} else := data.scopes

default decision := {
	"allow": false,
	"reason": "input_invalid",
	"message": "policy input must have sub (string), scopes (non-empty array of strings), aud (string) and ttl_seconds (number)",
	"denied_scopes": [],
}

decision := {
	"allow": true,
	"reason": "allowed",
	"message": "allowed",
	"denied_scopes": [],
} if {
	input_valid
	identity_known
	every scope in input.scopes {
		scope in granted_scopes
	}
	count(problems) == 0
}

decision := {
	"allow": false,
	"reason": first.reason,
	"message": concat("; ", [p.message | some p in sorted_problems]),
	"denied_scopes": sort({p.scope | some p in problems}),
} if {
	input_valid
	count(problems) > 0
	first := sorted_problems[0]
}

input_valid if {
	is_string(input.sub)
	is_array(input.scopes)
	count(input.scopes) > 0
	every scope in input.scopes {
		is_string(scope)
	}
	is_string(input.aud)
	is_number(input.ttl_seconds)
}

sorted_problems := sort(problems)

user_groups := users[input.sub].groups

identity_known if is_array(user_groups)

scope_defined(scope) if is_object(scopes[scope])

granted_scopes contains scope if {
	some group in user_groups
	some scope in groups[group].scopes
}

# A problem is an object {reason, scope, message}; sort orders them by reason first.
problems contains {
	"reason": "identity_unknown",
	"scope": scope,
	"message": sprintf("identity %q is not in the mint policy", [input.sub]),
} if {
	not identity_known
	some scope in input.scopes
}

problems contains {
	"reason": "ttl_out_of_range",
	"scope": scope,
	"message": sprintf("ttl_seconds %v is outside %d to %d", [input.ttl_seconds, min_ttl_seconds, max_ttl_seconds]),
} if {
	not ttl_in_range(input.ttl_seconds)
	some scope in input.scopes
}

problems contains {
	"reason": "scope_not_granted",
	"scope": scope,
	"message": sprintf("scope %q is not granted to %q by any of its groups", [scope, input.sub]),
} if {
	identity_known
	some scope in input.scopes
	not scope in granted_scopes
}

problems contains {
	"reason": "scope_unknown",
	"scope": scope,
	"message": sprintf("scope %q has no entry in the mint policy", [scope]),
} if {
	some scope in input.scopes
	scope in granted_scopes
	not scope_defined(scope)
}

problems contains {
	"reason": "audience_not_allowed",
	"scope": scope,
	"message": sprintf("scope %q may not be used with audience %q", [scope, input.aud]),
} if {
	some scope in input.scopes
	scope in granted_scopes
	entry := scopes[scope]
	not input.aud in entry.audiences
}

problems contains {
	"reason": "scope_ttl_invalid",
	"scope": scope,
	"message": sprintf("scope %q has max_ttl_seconds %v, outside %d to %d; fix the policy data", [scope, entry.max_ttl_seconds, min_ttl_seconds, max_ttl_seconds]),
} if {
	some scope in input.scopes
	scope in granted_scopes
	entry := scopes[scope]
	not ttl_in_range(entry.max_ttl_seconds)
}

problems contains {
	"reason": "ttl_exceeds_scope_max",
	"scope": scope,
	"message": sprintf("ttl_seconds %v exceeds the maximum %v of scope %q", [input.ttl_seconds, entry.max_ttl_seconds, scope]),
} if {
	some scope in input.scopes
	scope in granted_scopes
	entry := scopes[scope]
	ttl_in_range(entry.max_ttl_seconds)
	ttl_in_range(input.ttl_seconds)
	input.ttl_seconds > entry.max_ttl_seconds
}

ttl_in_range(ttl) if {
	is_number(ttl)
	ttl >= min_ttl_seconds
	ttl <= max_ttl_seconds
}
