package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Root names that Terraform and OpenTofu define themselves; any other root must be a resource type.
var builtinRoots = map[string]bool{
	"var": true, "local": true, "data": true, "module": true, "path": true,
	"terraform": true, "count": true, "each": true, "self": true,
}

// An OCI resource identifier (OCID) in a literal: every OCID must come from a variable or a resource.
var ocidPattern = regexp.MustCompile(`ocid1\.[a-z0-9]+\.`)

// Attribute names whose literal string value would be a hard-coded credential.
var secretAttribute = regexp.MustCompile(`(?i)(password|passphrase|secret|private_key|api_key|auth_token|fingerprint)`)

type tfConfig struct {
	variables map[string]*hclsyntax.Block
	locals    map[string]bool
	resources map[string]bool // "type.name"
	data      map[string]bool // "type.name"
	modules   map[string]bool
	outputs   map[string]*hclsyntax.Block
	iterators map[string]bool // labels of dynamic blocks, usable as roots inside their content
	files     map[string]*hclsyntax.Body
}

// checkTerraform parses every .tf file in dir and returns the number of files and the problems.
func checkTerraform(dir string) (int, []string) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(paths) == 0 {
		return 0, []string{fmt.Sprintf("%s: no .tf files found", dir)}
	}
	sort.Strings(paths)
	cfg := &tfConfig{
		variables: map[string]*hclsyntax.Block{}, locals: map[string]bool{},
		resources: map[string]bool{}, data: map[string]bool{}, modules: map[string]bool{},
		outputs: map[string]*hclsyntax.Block{}, iterators: map[string]bool{},
		files: map[string]*hclsyntax.Body{},
	}
	var problems []string
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: cannot read file: %v", path, err))
			continue
		}
		file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
		for _, d := range diags {
			problems = append(problems, d.Error())
		}
		if diags.HasErrors() {
			continue
		}
		body := file.Body.(*hclsyntax.Body)
		cfg.files[path] = body
		problems = append(problems, cfg.declare(path, body)...)
	}
	problems = append(problems, cfg.checkDescriptions()...)
	for _, path := range paths {
		if body, ok := cfg.files[path]; ok {
			problems = append(problems, cfg.checkBody(body)...)
		}
	}
	return len(paths), problems
}

// declare records the top-level blocks of one file.
func (c *tfConfig) declare(path string, body *hclsyntax.Body) []string {
	var problems []string
	seen := func(set map[string]bool, key string, block *hclsyntax.Block) {
		if set[key] {
			problems = append(problems, fmt.Sprintf("%s: %s %q is declared twice", block.DefRange().String(), block.Type, key))
		}
		set[key] = true
	}
	for _, block := range body.Blocks {
		switch block.Type {
		case "variable":
			c.variables[block.Labels[0]] = block
		case "output":
			c.outputs[block.Labels[0]] = block
		case "locals":
			for name := range block.Body.Attributes {
				seen(c.locals, name, block)
			}
		case "resource":
			seen(c.resources, block.Labels[0]+"."+block.Labels[1], block)
		case "data":
			seen(c.data, block.Labels[0]+"."+block.Labels[1], block)
		case "module":
			seen(c.modules, block.Labels[0], block)
		case "terraform", "provider", "moved", "import", "check", "removed":
		default:
			problems = append(problems, fmt.Sprintf("%s: unknown top-level block %q", block.DefRange().String(), block.Type))
		}
	}
	hclsyntax.VisitAll(body, func(node hclsyntax.Node) hcl.Diagnostics {
		if block, ok := node.(*hclsyntax.Block); ok && block.Type == "dynamic" && len(block.Labels) == 1 {
			c.iterators[block.Labels[0]] = true
		}
		return nil
	})
	return problems
}

func (c *tfConfig) checkDescriptions() []string {
	var problems []string
	for kind, blocks := range map[string]map[string]*hclsyntax.Block{"variable": c.variables, "output": c.outputs} {
		for name, block := range blocks {
			attr, ok := block.Body.Attributes["description"]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: %s %q has no description", block.DefRange().String(), kind, name))
				continue
			}
			value, diags := attr.Expr.Value(nil)
			if diags.HasErrors() || value.Type() != cty.String || strings.TrimSpace(value.AsString()) == "" {
				problems = append(problems, fmt.Sprintf("%s: %s %q has an empty or non-literal description", block.DefRange().String(), kind, name))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// checkBody checks every expression: its references resolve, and it has no OCID or secret literal.
func (c *tfConfig) checkBody(body *hclsyntax.Body) []string {
	var problems []string
	// A variable's type is a type expression (string, list(string)), not a reference.
	typeConstraints := map[*hclsyntax.Attribute]bool{}
	for _, block := range body.Blocks {
		if attr, ok := block.Body.Attributes["type"]; ok && block.Type == "variable" {
			typeConstraints[attr] = true
		}
	}
	hclsyntax.VisitAll(body, func(node hclsyntax.Node) hcl.Diagnostics {
		switch n := node.(type) {
		case *hclsyntax.Attribute:
			if typeConstraints[n] {
				return nil
			}
			for _, traversal := range n.Expr.Variables() {
				if msg := c.checkReference(traversal); msg != "" {
					problems = append(problems, fmt.Sprintf("%s: %s", traversal.SourceRange().String(), msg))
				}
			}
			problems = append(problems, checkLiterals(n)...)
		}
		return nil
	})
	return problems
}

func (c *tfConfig) checkReference(traversal hcl.Traversal) string {
	root := traversal.RootName()
	name := func(i int) string {
		if len(traversal) <= i {
			return ""
		}
		if attr, ok := traversal[i].(hcl.TraverseAttr); ok {
			return attr.Name
		}
		return ""
	}
	switch {
	case root == "var":
		if c.variables[name(1)] == nil {
			return fmt.Sprintf("var.%s is not declared; add a variable block with a description", name(1))
		}
	case root == "local":
		if !c.locals[name(1)] {
			return fmt.Sprintf("local.%s is not declared in any locals block", name(1))
		}
	case root == "data":
		if !c.data[name(1)+"."+name(2)] {
			return fmt.Sprintf("data.%s.%s is not declared", name(1), name(2))
		}
	case root == "module":
		if !c.modules[name(1)] {
			return fmt.Sprintf("module.%s is not declared", name(1))
		}
	case builtinRoots[root] || c.iterators[root]:
	default:
		if !c.resources[root+"."+name(1)] {
			return fmt.Sprintf("%s.%s is not a declared resource", root, name(1))
		}
	}
	return ""
}

// checkLiterals flags OCIDs in any literal and literal values of credential-named attributes.
func checkLiterals(attr *hclsyntax.Attribute) []string {
	var problems []string
	hclsyntax.VisitAll(attr.Expr, func(node hclsyntax.Node) hcl.Diagnostics {
		var text string
		switch n := node.(type) {
		case *hclsyntax.TemplateExpr:
			for _, part := range n.Parts {
				if lit, ok := part.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String {
					text += lit.Val.AsString()
				}
			}
		case *hclsyntax.LiteralValueExpr:
			if n.Val.Type() == cty.String {
				text = n.Val.AsString()
			}
		}
		if ocidPattern.MatchString(text) {
			problems = append(problems, fmt.Sprintf("%s: attribute %s holds a literal OCID; pass it as a variable",
				attr.SrcRange.String(), attr.Name))
		}
		return nil
	})
	if secretAttribute.MatchString(attr.Name) {
		if value, diags := attr.Expr.Value(nil); !diags.HasErrors() && value.Type() == cty.String && value.AsString() != "" {
			problems = append(problems, fmt.Sprintf("%s: attribute %s holds a literal credential; reference OCI Vault or a variable instead",
				attr.SrcRange.String(), attr.Name))
		}
	}
	return problems
}
