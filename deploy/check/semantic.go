package main

import (
	"fmt"
	"slices"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	rayv1 "github.com/ray-project/kuberay/ray-operator/apis/ray/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// podTemplate is a pod that the release creates, with the labels it will carry.
type podTemplate struct {
	owner  string
	labels labels.Set
	spec   *corev1.PodSpec
}

// release indexes the names that objects may reference.
type release struct {
	pods            []podTemplate
	configMaps      map[string]bool
	secrets         map[string]bool // Certificate secretName values and -external-secret names
	serviceAccounts map[string]bool
	issuers         map[string]bool
	clusterIssuers  map[string]bool
}

func indexRelease(objects []object, external, clusterIssuers []string) *release {
	r := &release{
		configMaps:      map[string]bool{},
		secrets:         map[string]bool{},
		serviceAccounts: map[string]bool{},
		issuers:         map[string]bool{},
		clusterIssuers:  map[string]bool{},
	}
	for _, name := range external {
		r.secrets[name] = true
	}
	for _, name := range clusterIssuers {
		r.clusterIssuers[name] = true
	}
	for _, o := range objects {
		switch v := o.value.(type) {
		case *appsv1.Deployment:
			r.pods = append(r.pods, podTemplate{o.id(), v.Spec.Template.Labels, &v.Spec.Template.Spec})
		case *appsv1.StatefulSet:
			r.pods = append(r.pods, podTemplate{o.id(), v.Spec.Template.Labels, &v.Spec.Template.Spec})
		case *rayv1.RayCluster:
			r.pods = append(r.pods, rayPods(o, v)...)
		case *corev1.ConfigMap:
			r.configMaps[o.name] = true
		case *corev1.ServiceAccount:
			r.serviceAccounts[o.name] = true
		case *certmanagerv1.Certificate:
			r.secrets[v.Spec.SecretName] = true
		case *certmanagerv1.Issuer:
			r.issuers[o.name] = true
		case *certmanagerv1.ClusterIssuer:
			r.clusterIssuers[o.name] = true
		}
	}
	return r
}

// rayPods returns the pods KubeRay creates for a RayCluster, with the labels KubeRay v1.5 adds
// (ray.io/cluster, ray.io/node-type, ray.io/group) and the group's Ray labels, which KubeRay
// copies onto the pods.
func rayPods(o object, cluster *rayv1.RayCluster) []podTemplate {
	head := labels.Merge(labels.Set(cluster.Spec.HeadGroupSpec.Template.Labels), labels.Set{
		"ray.io/cluster": o.name, "ray.io/node-type": "head", "ray.io/group": "headgroup",
	})
	head = labels.Merge(head, cluster.Spec.HeadGroupSpec.Labels)
	pods := []podTemplate{{o.id() + " head", head, &cluster.Spec.HeadGroupSpec.Template.Spec}}
	for i := range cluster.Spec.WorkerGroupSpecs {
		group := &cluster.Spec.WorkerGroupSpecs[i]
		set := labels.Merge(labels.Set(group.Template.Labels), labels.Set{
			"ray.io/cluster": o.name, "ray.io/node-type": "worker", "ray.io/group": group.GroupName,
		})
		set = labels.Merge(set, group.Labels)
		pods = append(pods, podTemplate{o.id() + " worker group " + group.GroupName, set, &group.Template.Spec})
	}
	return pods
}

// checkObjects runs the cross-object checks and returns one message per problem.
func checkObjects(objects []object, external, clusterIssuers []string) []string {
	r := indexRelease(objects, external, clusterIssuers)
	var problems []string
	add := func(o object, format string, args ...any) {
		problems = append(problems, o.id()+": "+fmt.Sprintf(format, args...))
	}
	for _, o := range objects {
		switch v := o.value.(type) {
		case *appsv1.Deployment:
			checkWorkloadSelector(o, v.Spec.Selector, v.Spec.Template.Labels, add)
		case *appsv1.StatefulSet:
			checkWorkloadSelector(o, v.Spec.Selector, v.Spec.Template.Labels, add)
		case *corev1.Service:
			checkService(o, v, r, add)
		case *policyv1.PodDisruptionBudget:
			checkSelectsPods(o, "spec.selector", v.Spec.Selector, r, false, add)
		case *networkingv1.NetworkPolicy:
			checkNetworkPolicy(o, v, r, add)
		case *certmanagerv1.Certificate:
			checkCertificate(o, v, r, add)
		case *rayv1.RayCluster:
			checkRayCluster(o, v, add)
		}
	}
	for _, pod := range r.pods {
		for _, p := range checkPodSpec(pod, r) {
			problems = append(problems, pod.owner+": "+p)
		}
	}
	return problems
}

type reporter func(o object, format string, args ...any)

func checkWorkloadSelector(o object, selector *metav1.LabelSelector, podLabels map[string]string, add reporter) {
	if selector == nil {
		add(o, "spec.selector is missing")
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		add(o, "spec.selector is invalid: %v", err)
		return
	}
	if sel.Empty() || !sel.Matches(labels.Set(podLabels)) {
		add(o, "spec.selector %s does not match the pod template labels %v", sel, podLabels)
	}
}

// matchingPods returns the release's pods that selector matches.
func matchingPods(selector *metav1.LabelSelector, r *release) ([]podTemplate, error) {
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, err
	}
	var pods []podTemplate
	for _, pod := range r.pods {
		if sel.Matches(pod.labels) {
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

func checkSelectsPods(o object, field string, selector *metav1.LabelSelector, r *release, emptyAllowed bool, add reporter) []podTemplate {
	if selector == nil {
		add(o, "%s is missing", field)
		return nil
	}
	if len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0 {
		if !emptyAllowed {
			add(o, "%s is empty, which selects every pod; name the pods it is for", field)
		}
		return r.pods
	}
	pods, err := matchingPods(selector, r)
	if err != nil {
		add(o, "%s is invalid: %v", field, err)
		return nil
	}
	if len(pods) == 0 {
		add(o, "%s %v matches no pod of this release", field, selector.MatchLabels)
	}
	return pods
}

func checkService(o object, svc *corev1.Service, r *release, add reporter) {
	if len(svc.Spec.Selector) == 0 {
		add(o, "spec.selector is empty; a Service of this release must select its pods")
		return
	}
	pods := checkSelectsPods(o, "spec.selector", &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, r, false, add)
	for _, port := range svc.Spec.Ports {
		target := port.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(port.Port)
		}
		for _, pod := range pods {
			if !podHasPort(pod.spec, target) {
				add(o, "port %q targets %s, which %s does not declare as a containerPort",
					port.Name, target.String(), pod.owner)
			}
		}
	}
}

func podHasPort(spec *corev1.PodSpec, port intstr.IntOrString) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) ||
				(port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

func checkNetworkPolicy(o object, np *networkingv1.NetworkPolicy, r *release, add reporter) {
	selected := checkSelectsPods(o, "spec.podSelector", &np.Spec.PodSelector, r, true, add)
	if len(np.Spec.PolicyTypes) == 0 {
		add(o, "spec.policyTypes is empty; list Ingress and/or Egress so the policy's intent is explicit")
	}
	peers := func(direction string, list []networkingv1.NetworkPolicyPeer) {
		for _, peer := range list {
			if peer.PodSelector != nil && peer.NamespaceSelector == nil {
				checkSelectsPods(o, direction+" podSelector", peer.PodSelector, r, true, add)
			}
		}
	}
	for _, rule := range np.Spec.Ingress {
		peers("ingress", rule.From)
		for _, port := range rule.Ports {
			if port.Port == nil || port.Port.Type != intstr.String {
				continue
			}
			for _, pod := range selected {
				if !podHasPort(pod.spec, *port.Port) {
					add(o, "ingress port %q is not a named containerPort of %s", port.Port.StrVal, pod.owner)
				}
			}
		}
	}
	for _, rule := range np.Spec.Egress {
		peers("egress", rule.To)
	}
}

func checkCertificate(o object, cert *certmanagerv1.Certificate, r *release, add reporter) {
	if cert.Spec.SecretName == "" {
		add(o, "spec.secretName is missing")
	}
	ref := cert.Spec.IssuerRef
	switch ref.Kind {
	case "", "Issuer":
		if !r.issuers[ref.Name] {
			add(o, "spec.issuerRef names Issuer %q, which this release does not define", ref.Name)
		}
	case "ClusterIssuer":
		if !r.clusterIssuers[ref.Name] {
			add(o, "spec.issuerRef names ClusterIssuer %q, which this release does not define", ref.Name)
		}
	}
	if len(cert.Spec.URIs) == 0 && len(cert.Spec.DNSNames) == 0 && !cert.Spec.IsCA {
		add(o, "spec has neither uris nor dnsNames; a workload certificate needs its identity")
	}
}

// checkRayCluster mirrors the group checks of KubeRay v1.5's ValidateRayClusterSpec that matter
// here: Ray labels go in the group's labels field (rayStartParams["labels"] is rejected), and
// label keys and values must be valid Kubernetes labels.
func checkRayCluster(o object, cluster *rayv1.RayCluster, add reporter) {
	groupLabels := func(group string, params, rayLabels map[string]string) {
		if _, found := params["labels"]; found {
			add(o, "group %s: rayStartParams[\"labels\"] is rejected by KubeRay; use the group's labels field", group)
		}
		for key, value := range rayLabels {
			for _, msg := range validation.IsQualifiedName(key) {
				add(o, "group %s: invalid Ray label key %q: %s", group, key, msg)
			}
			for _, msg := range validation.IsValidLabelValue(value) {
				add(o, "group %s: invalid Ray label value %q: %s", group, value, msg)
			}
		}
	}
	head := cluster.Spec.HeadGroupSpec
	groupLabels("head", head.RayStartParams, head.Labels)
	var names []string
	for _, group := range cluster.Spec.WorkerGroupSpecs {
		if group.GroupName == "" || slices.Contains(names, group.GroupName) {
			add(o, "worker group name %q is empty or repeated", group.GroupName)
		}
		names = append(names, group.GroupName)
		groupLabels(group.GroupName, group.RayStartParams, group.Labels)
		if group.MinReplicas != nil && group.MaxReplicas != nil && *group.MinReplicas > *group.MaxReplicas {
			add(o, "worker group %s: minReplicas %d is above maxReplicas %d", group.GroupName,
				*group.MinReplicas, *group.MaxReplicas)
		}
	}
}

// checkPodSpec checks that a pod's references resolve inside the release.
func checkPodSpec(pod podTemplate, r *release) []string {
	var problems []string
	spec := pod.spec
	if spec.ServiceAccountName == "" || !r.serviceAccounts[spec.ServiceAccountName] {
		problems = append(problems, fmt.Sprintf(
			"serviceAccountName %q is not a ServiceAccount of this release", spec.ServiceAccountName))
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil && !r.configMaps[v.ConfigMap.Name] {
			problems = append(problems, fmt.Sprintf("volume %s: ConfigMap %q is not in this release", v.Name, v.ConfigMap.Name))
		}
		if v.Secret != nil && !r.secrets[v.Secret.SecretName] {
			problems = append(problems, fmt.Sprintf(
				"volume %s: Secret %q is neither issued by a Certificate of this release nor passed as -external-secret",
				v.Name, v.Secret.SecretName))
		}
	}
	containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for _, c := range containers {
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				problems = append(problems, fmt.Sprintf("container %s mounts volume %q, which the pod does not define", c.Name, m.Name))
			}
		}
		for _, env := range c.Env {
			if env.ValueFrom != nil && env.ValueFrom.SecretKeyRef != nil && !r.secrets[env.ValueFrom.SecretKeyRef.Name] {
				problems = append(problems, fmt.Sprintf("container %s env %s: Secret %q is not known to this release",
					c.Name, env.Name, env.ValueFrom.SecretKeyRef.Name))
			}
		}
	}
	return problems
}
