// render: renders a Helm chart the way `helm template` does, for tests on
// machines without Helm (Debian does not package it). Go's text/template
// with sprig's functions, as Helm uses them, plus the Helm functions and
// objects the pwru-agent chart uses: include, tpl, required, toYaml,
// .Values (values.yaml, then each -f file merged over it), .Release, .Chart,
// .Files.Get, .Capabilities.APIVersions.Has and lookup (against the objects
// of a -cluster file: what an upgrade finds in the cluster; without one,
// nothing, as `helm template` and a first install). Like Helm, it first checks
// the merged values against the chart's values.schema.json (with
// gojsonschema, the validator Helm 3 uses) and refuses them with Helm's
// message.
//
// Usage: render [-f VALUES.yaml]... [-api-versions a/v1,b/v1] [-cluster OBJECTS.yaml] [-name RELEASE]
//        [-namespace NAMESPACE] [-notes] CHART_DIR
// Prints the manifests as YAML documents, each after "# Source: NAME"; with
// -notes, the rendered templates/NOTES.txt instead (what `helm install`
// prints).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

type apiVersions []string

// Has is .Capabilities.APIVersions.Has.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type chartFiles string

// Get is .Files.Get: a file of the chart by its path in the chart.
func (c chartFiles) Get(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(string(c), name))
	return string(b), err
}

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// merge puts over into base: maps merge key by key, anything else replaces,
// and null removes the key, as Helm's coalescing does (how a user drops a
// default such as nodeSelector's kubernetes.io/os).
func merge(base, over map[string]interface{}) map[string]interface{} {
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		if vm, ok := v.(map[string]interface{}); ok {
			if bm, ok := base[k].(map[string]interface{}); ok {
				base[k] = merge(bm, vm)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// cluster is what lookup finds: objects as the API server would return them.
type cluster []map[string]interface{}

func readCluster(path string) (cluster, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out cluster
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		obj := map[string]interface{}{}
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if len(obj) > 0 {
			out = append(out, obj)
		}
	}
}

// lookup is Helm's: one object by name (an empty map when there is none),
// or with name "" a list of every such object in the namespace.
func (c cluster) lookup(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
	var items []interface{}
	for _, obj := range c {
		meta, _ := obj["metadata"].(map[string]interface{})
		if obj["apiVersion"] != apiVersion || obj["kind"] != kind || meta == nil {
			continue
		}
		if namespace != "" && meta["namespace"] != namespace {
			continue
		}
		if name == "" {
			items = append(items, obj)
		} else if meta["name"] == name {
			return obj, nil
		}
	}
	if name == "" {
		return map[string]interface{}{"apiVersion": apiVersion, "kind": kind + "List", "items": items}, nil
	}
	return map[string]interface{}{}, nil
}

func toYAML(v interface{}) (string, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func main() {
	var files valueFiles
	flag.Var(&files, "f", "values file merged over values.yaml (repeatable)")
	apis := flag.String("api-versions", "", "comma-separated API versions the cluster serves")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	clusterFile := flag.String("cluster", "", "YAML documents: the objects lookup finds (an upgrade); none: a first install")
	release := flag.String("name", "pwru-agent", "release name (.Release.Name)")
	namespace := flag.String("namespace", "pwru", "release namespace (.Release.Namespace)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [-f VALUES.yaml]... [-api-versions a/v1,b/v1] [-cluster OBJECTS.yaml] [-name RELEASE] [-namespace NAMESPACE] [-notes] CHART_DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	objects, err := readCluster(*clusterFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	if err := render(dir, files, *apis, objects, *notes, *release, *namespace); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

// validateValues is Helm's check of values against values.schema.json
// (pkg/chartutil: every error as "- FIELD: DESCRIPTION" under the chart's
// name).
func validateValues(dir, chartName string, values map[string]interface{}) error {
	schema, err := os.ReadFile(filepath.Join(dir, "values.schema.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewGoLoader(values))
	if err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	if result.Valid() {
		return nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n", chartName)
	for _, e := range result.Errors() {
		fmt.Fprintf(&sb, "- %s\n", e)
	}
	return errors.New(strings.TrimSuffix(sb.String(), "\n"))
}

func render(dir string, files []string, apis string, objects cluster, notes bool, release, namespace string) error {
	chart, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		over, err := readYAML(f)
		if err != nil {
			return err
		}
		values = merge(values, over)
	}
	if err := validateValues(dir, fmt.Sprint(chart["name"]), values); err != nil {
		return err
	}
	var versions apiVersions
	if apis != "" {
		versions = strings.Split(apis, ",")
	}
	data := map[string]interface{}{
		"Values":       values,
		"Release":      map[string]interface{}{"Name": release, "Namespace": namespace, "Service": "Helm"},
		"Chart":        map[string]interface{}{"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
		"Capabilities": map[string]interface{}{"APIVersions": versions},
		"Files":        chartFiles(dir),
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	funcs["include"] = func(name string, v interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, v)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, v interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, v)
		return buf.String(), err
	}
	funcs["required"] = func(message string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, errors.New(message)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["lookup"] = objects.lookup
	root.Funcs(funcs).Option("missingkey=zero")

	paths, err := filepath.Glob(filepath.Join(dir, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	var manifests []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		name := "pwru-agent/templates/" + filepath.Base(p)
		if _, err := root.New(name).Parse(string(b)); err != nil {
			return err
		}
		if !strings.HasPrefix(filepath.Base(p), "_") && strings.HasSuffix(p, ".yaml") {
			manifests = append(manifests, name)
		}
	}
	if notes {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, "pwru-agent/templates/NOTES.txt", data); err != nil {
			return err
		}
		fmt.Print(buf.String())
		return nil
	}
	for _, name := range manifests {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return err
		}
		for _, doc := range strings.Split(buf.String(), "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Printf("---\n# Source: %s\n%s\n", name, strings.Trim(doc, "\n"))
		}
	}
	return nil
}
