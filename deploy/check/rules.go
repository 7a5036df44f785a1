package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/herald-dispatch/herald/contract"
	"github.com/herald-dispatch/herald/internal/sender"
)

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart uses; decoded with unknown fields refused.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// workload is a StatefulSet's or a Deployment's pod template.
type workload struct {
	name     string
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
	// claims are the StatefulSet's volumeClaimTemplates' names.
	claims []string
}

// Check verifies that decoded objects fit together (see the package doc).
func Check(objs []Object) error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s %s: %s", o.Kind, o.Name, fmt.Sprintf(format, args...)))
	}
	works, services := index(objs, fail)
	for _, o := range objs {
		var msgs []string
		switch v := o.Obj.(type) {
		case *appsv1.StatefulSet, *appsv1.Deployment:
			for _, w := range works {
				if w.name == o.Name {
					msgs = append(msgs, checkWorkload(w)...)
				}
			}
		case *corev1.Service:
			msgs = checkService(v, works)
		case *policyv1.PodDisruptionBudget:
			if msg := selectsSome(v.Spec.Selector, works); msg != "" {
				msgs = []string{msg}
			}
		case *serviceMonitor:
			msgs = checkServiceMonitor(v, services)
		}
		for _, msg := range msgs {
			fail(o, "%s", msg)
		}
	}
	return errors.Join(errs...)
}

// index checks every object's name and labels, and returns the workloads
// (StatefulSets and Deployments) and Services among them.
func index(objs []Object, fail func(o Object, format string, args ...any)) ([]workload, []*corev1.Service) {
	var works []workload
	var services []*corev1.Service
	for _, o := range objs {
		meta := metaOf(o)
		if meta == nil {
			fail(o, "no metadata")
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
			fail(o, "name %q: %s", meta.Name, msg)
		}
		for _, e := range metavalidation.ValidateLabels(meta.Labels, field.NewPath("metadata", "labels")) {
			fail(o, "%v", e)
		}
		switch v := o.Obj.(type) {
		case *appsv1.StatefulSet:
			w := workload{name: v.Name, selector: v.Spec.Selector, template: v.Spec.Template}
			for _, c := range v.Spec.VolumeClaimTemplates {
				w.claims = append(w.claims, c.Name)
			}
			works = append(works, w)
		case *appsv1.Deployment:
			works = append(works, workload{name: v.Name, selector: v.Spec.Selector, template: v.Spec.Template})
		case *corev1.Service:
			services = append(services, v)
		}
	}
	return works, services
}

// checkService checks that a Service selects some workload's pods, and
// that its named target ports are ports of them.
func checkService(v *corev1.Service, works []workload) []string {
	if len(v.Spec.Selector) == 0 {
		return []string{"no selector"}
	}
	var out []string
	sel := labels.SelectorFromSet(v.Spec.Selector)
	matched := false
	for _, w := range works {
		if !sel.Matches(labels.Set(w.template.Labels)) {
			continue
		}
		matched = true
		for _, p := range v.Spec.Ports {
			if p.TargetPort.StrVal != "" && !hasPort(w.template.Spec, p.TargetPort.StrVal) {
				out = append(out, fmt.Sprintf("targetPort %q is no port of %s's pods", p.TargetPort.StrVal, w.name))
			}
		}
	}
	if !matched {
		out = append(out, "selects no workload's pods")
	}
	return out
}

// checkServiceMonitor checks that a ServiceMonitor selects some Service
// and scrapes ports it has, at intervals that parse.
func checkServiceMonitor(v *serviceMonitor, services []*corev1.Service) []string {
	sel, err := metav1.LabelSelectorAsSelector(&v.Spec.Selector)
	if err != nil || sel.Empty() {
		return []string{fmt.Sprintf("selector %v: %v", v.Spec.Selector, err)}
	}
	var out []string
	var picked []*corev1.Service
	for _, s := range services {
		if sel.Matches(labels.Set(s.Labels)) {
			picked = append(picked, s)
		}
	}
	if len(picked) == 0 {
		out = append(out, "selects no Service")
	}
	if len(v.Spec.Endpoints) == 0 {
		out = append(out, "no endpoints")
	}
	for _, ep := range v.Spec.Endpoints {
		if _, err := time.ParseDuration(ep.Interval); ep.Interval != "" && err != nil {
			out = append(out, fmt.Sprintf("interval %q: %v", ep.Interval, err))
		}
		for _, s := range picked {
			if !serviceHasPort(s, ep.Port) {
				out = append(out, fmt.Sprintf("endpoint port %q is no port of Service %s", ep.Port, s.Name))
			}
		}
	}
	return out
}

func metaOf(o Object) *metav1.ObjectMeta {
	switch v := o.Obj.(type) {
	case *serviceMonitor:
		return &v.Metadata
	case metav1.ObjectMetaAccessor:
		return v.GetObjectMeta().(*metav1.ObjectMeta)
	}
	return nil
}

func selectsSome(ls *metav1.LabelSelector, works []workload) string {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || sel.Empty() {
		return fmt.Sprintf("selector %v: empty or invalid (%v)", ls, err)
	}
	for _, w := range works {
		if sel.Matches(labels.Set(w.template.Labels)) {
			return ""
		}
	}
	return "selects no workload's pods"
}

// problems collects what a check finds, one message each.
type problems []string

func (p *problems) bad(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// checkWorkload checks one pod template against Herald's needs.
func checkWorkload(w workload) []string {
	var out problems
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.template.Labels)) {
		out.bad("selector %v does not match its pods' labels %v (%v)", w.selector, w.template.Labels, err)
	}
	spec := w.template.Spec
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range w.claims {
		volumes[c] = true
	}
	if len(spec.Containers) == 0 {
		out.bad("no containers")
	}
	for _, c := range spec.Containers {
		env := checkEnv(&out, c)
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				out.bad("container %s mounts %q, which is no volume", c.Name, m.Name)
			}
			mounts[m.MountPath] = true
		}
		if d := env["HERALD_DATA_DIR"]; d == "" || !mounts[d] {
			out.bad("container %s: HERALD_DATA_DIR %q is not a mounted volume", c.Name, d)
		}
		checkProbes(&out, c, spec)
		checkStop(&out, c, env, spec)
		checkMemory(&out, c, env)
	}
	return out
}

// checkEnv returns a container's environment, and finds variables set
// twice and Secret references without a name or key.
func checkEnv(out *problems, c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			out.bad("container %s sets %s twice", c.Name, e.Name)
		}
		env[e.Name] = e.Value
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && (r.SecretKeyRef.Name == "" || r.SecretKeyRef.Key == "") {
			out.bad("container %s: %s from a Secret without a name or key", c.Name, e.Name)
		}
	}
	return env
}

// checkProbes wants HTTP liveness (/healthz) and readiness (/readyz)
// probes, and every probe on a port the pod has.
func checkProbes(out *problems, c corev1.Container, spec corev1.PodSpec) {
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil {
			if name != "startup" {
				out.bad("container %s has no HTTP %s probe", c.Name, name)
			}
			continue
		}
		if port := p.HTTPGet.Port.StrVal; port != "" && !hasPort(spec, port) {
			out.bad("container %s: %s probe on port %q, which it does not have", c.Name, name, port)
		}
	}
	if p := c.LivenessProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path != "/healthz" {
		out.bad("container %s: liveness probe on %s, want /healthz", c.Name, p.HTTPGet.Path)
	}
	if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path != "/readyz" {
		out.bad("container %s: readiness probe on %s, want /readyz", c.Name, p.HTTPGet.Path)
	}
}

// checkStop checks a clean stop: the send drain covers the provider
// timeout, and the grace period covers the preStop sleep and the drain.
func checkStop(out *problems, c corev1.Container, env map[string]string, spec corev1.PodSpec) {
	var need time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		need += time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	// A clean stop awaits every call already at a provider: the send
	// drain is at least the provider timeout (a call cut off is sent
	// again by the partition's next owner).
	drain, providerTimeout := sender.DefaultDrainTimeout, contract.DefaultProviderTimeout
	for name, p := range map[string]*time.Duration{"HERALD_SEND_DRAIN_TIMEOUT": &drain, "HERALD_PROVIDER_TIMEOUT": &providerTimeout} {
		if v := env[name]; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				out.bad("container %s: %s %q: %v", c.Name, name, v, err)
			}
			*p = d
		}
	}
	if drain < providerTimeout {
		out.bad("container %s: the send drain %s is shorter than the provider timeout %s: a clean stop would cut off calls at a provider", c.Name, drain, providerTimeout)
	}
	need += drain
	grace := 30 * time.Second // the API's default
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= need {
		out.bad("terminationGracePeriodSeconds %s does not exceed the preStop sleep plus the send drain (%s)", grace, need)
	}
}

// checkMemory wants the Go memory limit below the container's.
func checkMemory(out *problems, c corev1.Container, env map[string]string) {
	if v := env["HERALD_MEMORY_LIMIT"]; v != "" {
		n, err := humanize.ParseBytes(v)
		if err != nil {
			out.bad("container %s: HERALD_MEMORY_LIMIT %q: %v", c.Name, v, err)
		} else if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || int64(n) >= lim.Value() {
			out.bad("container %s: HERALD_MEMORY_LIMIT %s is not below the memory limit %s", c.Name, v, lim.String())
		}
	}
}

func hasPort(spec corev1.PodSpec, name string) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func serviceHasPort(s *corev1.Service, name string) bool {
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}
