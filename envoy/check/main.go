// Command envoy-check validates Envoy v3 configuration files against Envoy's own schema.
//
// Each file is read as YAML, converted to JSON and unmarshalled with protojson into an
// envoy.config.bootstrap.v3.Bootstrap (or, with -message discovery-response, into an
// envoy.service.discovery.v3.DiscoveryResponse, the format of SDS files that Envoy reads
// through path_config_source). Unknown fields, unknown enum names and typed_config Any values
// whose type is not registered fail the unmarshal. The checker then runs the
// protoc-gen-validate rules generated into go-control-plane (ValidateAll) on the message and
// on the content of every Any, and reports every use of a field or enum value that the
// schema marks deprecated.
//
// Usage:
//
//	envoy-check [-message bootstrap|discovery-response] FILE...
//
// The exit status is 0 when every file is valid, 1 when at least one file has a violation
// and 2 on a usage error.
//
// Limitations: Envoy checks more than its schema when it loads a configuration (cluster
// references, listener address conflicts, files that must exist). Only `envoy --mode validate`
// covers those checks, and this checker does not replace it.
package main

import (
	"flag"
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	// These imports register the extension types that the configurations name in
	// typed_config, so protojson can resolve each Any and ValidateAll can check its content.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

const (
	messageBootstrap         = "bootstrap"
	messageDiscoveryResponse = "discovery-response"
)

func main() {
	message := flag.String("message", messageBootstrap,
		"top-level message type of every FILE: bootstrap or discovery-response")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(),
			"usage: envoy-check [-message bootstrap|discovery-response] FILE...\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if *message != messageBootstrap && *message != messageDiscoveryResponse {
		fmt.Fprintf(os.Stderr, "envoy-check: invalid -message %q: expected %q or %q\n",
			*message, messageBootstrap, messageDiscoveryResponse)
		os.Exit(2)
	}

	failed := false
	for _, path := range flag.Args() {
		violations, err := checkFile(path, *message)
		if err != nil {
			fmt.Printf("%s: %v\n", path, err)
			failed = true
			continue
		}
		for _, violation := range violations {
			fmt.Printf("%s: %s\n", path, violation)
		}
		if len(violations) > 0 {
			failed = true
			continue
		}
		fmt.Printf("%s: OK\n", path)
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile parses one file into the message type named by message and returns its
// schema violations. An error means the file could not be read or parsed at all.
func checkFile(path string, message string) ([]string, error) {
	document, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	jsonDocument, err := yaml.YAMLToJSON(document)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}

	var root proto.Message = &bootstrapv3.Bootstrap{}
	if message == messageDiscoveryResponse {
		root = &discoveryv3.DiscoveryResponse{}
	}
	// DiscardUnknown stays false: a misspelled field must fail, as it does in Envoy.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(jsonDocument, root); err != nil {
		return nil, fmt.Errorf("does not match the Envoy v3 schema: %w", err)
	}
	return validateTree(root)
}
