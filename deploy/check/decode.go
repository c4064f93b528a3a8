package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	rayv1 "github.com/ray-project/kuberay/ray-operator/apis/ray/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest with the place it came from.
type object struct {
	source string // FILE#document-index, for messages
	kind   string
	name   string
	value  any // pointer to the typed API object
}

func (o object) id() string { return fmt.Sprintf("%s: %s/%s", o.source, o.kind, o.name) }

// newTyped returns an empty value of the Go API type for apiVersion and kind, or nil when the
// checker does not know that type. Secrets are absent on purpose: no manifest may carry one.
func newTyped(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "rbac.authorization.k8s.io/v1 Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return &rbacv1.RoleBinding{}
	case "ray.io/v1 RayCluster":
		return &rayv1.RayCluster{}
	case "cert-manager.io/v1 Issuer":
		return &certmanagerv1.Issuer{}
	case "cert-manager.io/v1 ClusterIssuer":
		return &certmanagerv1.ClusterIssuer{}
	case "cert-manager.io/v1 Certificate":
		return &certmanagerv1.Certificate{}
	}
	return nil
}

// decodeFiles strictly decodes every YAML document of every file.
func decodeFiles(paths []string) ([]object, []string) {
	var objects []object
	var problems []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: cannot read file: %v", path, err))
			continue
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for index := 0; ; index++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s#%d: invalid YAML: %v", path, index, err))
				break
			}
			source := fmt.Sprintf("%s#%d", path, index)
			obj, problem, empty := decodeDocument(source, doc)
			switch {
			case empty:
			case problem != "":
				problems = append(problems, problem)
			default:
				objects = append(objects, obj)
			}
		}
	}
	return objects, problems
}

// decodeDocument decodes one document; empty is true for a document with no content (only
// comments or whitespace, which helm emits for templates that render nothing).
func decodeDocument(source string, doc []byte) (obj object, problem string, empty bool) {
	var meta struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	jsonDoc, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return obj, fmt.Sprintf("%s: invalid YAML: %v", source, err), false
	}
	if bytes.Equal(bytes.TrimSpace(jsonDoc), []byte("null")) {
		return obj, "", true
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return obj, fmt.Sprintf("%s: not a Kubernetes object: %v", source, err), false
	}
	if meta.APIVersion == "" || meta.Kind == "" {
		return obj, fmt.Sprintf("%s: missing apiVersion or kind", source), false
	}
	if meta.APIVersion == "v1" && meta.Kind == "Secret" {
		return obj, fmt.Sprintf("%s: Secret %q found; secrets must not be in manifests, "+
			"reference a Secret that cert-manager or the OCI Vault operator creates", source,
			meta.Metadata.Name), false
	}
	typed := newTyped(meta.APIVersion, meta.Kind)
	if typed == nil {
		return obj, fmt.Sprintf("%s: unsupported type %s %s; add it to newTyped in deploy/check",
			source, meta.APIVersion, meta.Kind), false
	}
	if err := yaml.UnmarshalStrict(doc, typed); err != nil {
		return obj, fmt.Sprintf("%s: %s/%s does not match the %s %s schema: %v", source,
			meta.Kind, meta.Metadata.Name, meta.APIVersion, meta.Kind, err), false
	}
	obj = object{source: source, kind: meta.Kind, name: meta.Metadata.Name, value: typed}
	if obj.name == "" {
		return obj, fmt.Sprintf("%s: %s has no metadata.name", source, meta.Kind), false
	}
	return obj, "", false
}
