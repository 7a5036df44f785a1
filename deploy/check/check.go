// Command check validates rendered Kubernetes manifests (the output of
// `helm template deploy/helm/herald`) offline, for `make deploy-check`.
//
// It owns two guarantees. First, every object decodes strictly into the
// Kubernetes API types of k8s.io/api (the version pinned in go.mod): an
// unknown or misspelt field, a field of the wrong type, a duplicate field or
// a kind the check does not know is refused, as the API server refuses them
// with strict field validation. The Prometheus operator's ServiceMonitor is
// decoded, just as strictly, into a minimal struct of its own (servicemonitor
// below) rather than the operator's Go module: it covers the fields the
// chart uses, so a field outside them is refused too. Second, the objects fit
// together as Herald needs: names and labels are valid, each workload's
// selector matches its pods, every Service, PodDisruptionBudget and
// ServiceMonitor selects something, probes and Services name ports that
// exist, every volume mount has its volume, no variable is set twice, the
// data dir is a volume, the grace period covers the preStop sleep and the
// send drain, the send drain covers the provider timeout, and the Go memory
// limit is below the container's.
//
// Usage: check [FILE...] (standard input without files). It prints one line
// per object and exits 1 naming every problem.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest.
type Object struct {
	Kind, Name string
	// Obj is the typed object: *appsv1.StatefulSet, *corev1.Service,
	// *serviceMonitor, ...
	Obj any
}

// scheme holds the API groups the chart may render; any other kind is
// refused.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

var strict = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

var serviceMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}

// Decode reads a multi-document YAML stream and decodes every object
// strictly. The error lists every document that was refused.
func Decode(r io.Reader) ([]Object, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []Object
	var errs []error
	for n := 1; ; n++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return objs, fmt.Errorf("document %d: %w", n, err)
		}
		if isEmpty(doc) {
			continue
		}
		obj, err := decodeOne(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d (%s): %w", n, describe(doc), err))
			continue
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no objects"))
	}
	return objs, errors.Join(errs...)
}

func decodeOne(doc []byte) (Object, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return Object{}, err
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return Object{}, err
	}
	if gv.WithKind(tm.Kind) == serviceMonitorGVK {
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return Object{}, err
		}
		sm := new(serviceMonitor)
		strictErrs, err := sigsjson.UnmarshalStrict(j, sm, sigsjson.DisallowUnknownFields)
		if err != nil {
			return Object{}, err
		}
		if len(strictErrs) > 0 {
			return Object{}, fmt.Errorf("strict decoding error: %w", errors.Join(strictErrs...))
		}
		return Object{Kind: tm.Kind, Name: sm.Metadata.Name, Obj: sm}, nil
	}
	obj, gvk, err := strict.Decode(doc, nil, nil)
	if err != nil {
		return Object{}, err
	}
	name := ""
	if m, ok := obj.(interface{ GetName() string }); ok {
		name = m.GetName()
	}
	return Object{Kind: gvk.Kind, Name: name, Obj: obj}, nil
}

// isEmpty reports whether a document holds only comments and blanks.
func isEmpty(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		l := strings.TrimSpace(string(line))
		if l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

// describe names a document in an error: its kind and name if they read.
func describe(doc []byte) string {
	var m struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if yaml.Unmarshal(doc, &m) != nil || m.Kind == "" {
		return "unreadable"
	}
	return m.Kind + " " + m.Metadata.Name
}

func main() {
	var in []io.Reader
	for _, f := range os.Args[1:] {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		in = append(in, bytes.NewReader(b), strings.NewReader("\n---\n"))
	}
	if len(in) == 0 {
		in = append(in, os.Stdin)
	}
	objs, err := Decode(io.MultiReader(in...))
	if err == nil {
		err = Check(objs)
	}
	for _, o := range objs {
		fmt.Printf("ok  %s %s\n", o.Kind, o.Name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploy check failed:\n%v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%d objects decoded strictly and checked\n", len(objs))
}
