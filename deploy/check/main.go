// Command deploy-check validates ztmint's deployment files without a cluster or a cloud account.
//
//	deploy-check k8s [-external-secret NAME]... [-external-cluster-issuer NAME]... FILE...
//	deploy-check terraform DIR
//
// The k8s mode reads multi-document YAML (such as `helm template` output). It strictly decodes every
// object into its Go API type (k8s.io/api, KubeRay ray.io/v1, cert-manager cert-manager.io/v1), so
// unknown fields are rejected. Then it runs cross-object checks: selectors match pod labels, target
// ports exist, and referenced ConfigMaps, Secrets, ServiceAccounts and Issuers are in the release.
//
// The terraform mode parses every .tf file in DIR with HCL and checks references, descriptions and
// hard-coded OCIDs or secrets.
//
// Exit status: 0 when every check passes, 1 when a problem is found, 2 on a usage error.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: deploy-check k8s [-external-secret NAME]... [-external-cluster-issuer NAME]... FILE... | deploy-check terraform DIR")
		return 2
	}
	var problems []string
	switch args[0] {
	case "k8s":
		flags := flag.NewFlagSet("k8s", flag.ContinueOnError)
		flags.SetOutput(stderr)
		var external stringList
		flags.Var(&external, "external-secret",
			"name of a Secret created outside the manifests (for example by the OCI Vault secrets operator); repeatable")
		var clusterIssuers stringList
		flags.Var(&clusterIssuers, "external-cluster-issuer",
			"name of a cert-manager ClusterIssuer that exists outside the manifests; repeatable")
		if err := flags.Parse(args[1:]); err != nil {
			return 2
		}
		if flags.NArg() == 0 {
			fmt.Fprintln(stderr, "deploy-check k8s: missing FILE; pass one or more rendered manifest files")
			return 2
		}
		objects, decodeProblems := decodeFiles(flags.Args())
		problems = append(problems, decodeProblems...)
		problems = append(problems, checkObjects(objects, external, clusterIssuers)...)
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "deploy-check k8s: %d objects valid\n", len(objects))
		}
	case "terraform":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "deploy-check terraform: expected exactly one DIR holding .tf files")
			return 2
		}
		var count int
		count, problems = checkTerraform(args[1])
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "deploy-check terraform: %d files valid\n", count)
		}
	default:
		fmt.Fprintf(stderr, "deploy-check: unknown mode %q; expected k8s or terraform\n", args[0])
		return 2
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}
