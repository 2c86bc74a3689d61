// helm-render: renders a Helm chart offline with the ingredients of Helm's own template engine,
// for tests on machines without a helm binary (tests/helm_chart_test.py, tests/helm_flags_test.cc).
//
//	helm-render [-f values.yaml]... [--set a.b=v]... [--set-string a.b=v]... [--name R]
//	            [--namespace N] [--show-only templates/x.yaml]... [--api-versions g/v]... CHART_DIR
//
// What it reproduces from Helm 3 (pkg/engine, pkg/chartutil):
//   - values: the chart's values.yaml, then each -f file, then --set/--set-string, coalesced the
//     way Helm does (maps merge deeply, a null removes a default); numbers from YAML files are
//     float64 as in Helm (which decodes YAML through JSON), --set integers are int64;
//   - validation of the merged values against values.schema.json (gojsonschema, as Helm);
//   - templates: text/template with Sprig's function map (minus env/expandenv, as Helm) plus
//     Helm's include, tpl, required, toYaml, fromYaml, fromYamlArray, toJson, fromJson, lookup
//     (always empty, as in `helm template`), missingkey=zero and "<no value>" erased;
//   - the built-in objects .Values, .Chart (Chart.yaml), .Release, .Capabilities, .Template and
//     .Files (Get, GetBytes, Glob, Lines, AsConfig, AsSecrets) over the chart's non-template
//     files, symbolic links followed (as Helm's loader does), .helmignore applied.
//
// What it does not do: subcharts/dependencies, hooks and their ordering, post-renderers, the
// cluster-side lookup function, and the Kubernetes OpenAPI validation that `helm install` gets
// from the API server. Output: the rendered manifests as a YAML stream, each document preceded
// by "# Source: <chart>/templates/<file>", in file-name order. Errors go to stderr, exit 1.
//
// Built with Debian's Go 1.19 and /usr/share/gocode (GO111MODULE=off; tests/helm/build.sh).
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"gopkg.in/yaml.v3"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// ChartMeta is the part of Chart.yaml templates see as .Chart (Helm's chart.Metadata names).
type ChartMeta struct {
	APIVersion  string   `yaml:"apiVersion"`
	Name        string   `yaml:"name"`
	Version     string   `yaml:"version"`
	AppVersion  string   `yaml:"appVersion"`
	KubeVersion string   `yaml:"kubeVersion"`
	Description string   `yaml:"description"`
	Type        string   `yaml:"type"`
	Home        string   `yaml:"home"`
	Icon        string   `yaml:"icon"`
	Keywords    []string `yaml:"keywords"`
	Sources     []string `yaml:"sources"`
}

// Files is .Files: the chart's files other than templates and the chart's own metadata.
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }

// Glob matches with path.Match against the whole relative path ("*" does not cross "/").
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

func (f Files) Lines(name string) []string {
	s := strings.TrimSuffix(string(f[name]), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (f Files) asMap(encode func([]byte) string) string {
	m := map[string]string{}
	for name, data := range f {
		m[path.Base(name)] = encode(data)
	}
	if len(m) == 0 {
		return ""
	}
	s, _ := toYAML(m)
	return s
}

func (f Files) AsConfig() string { return f.asMap(func(b []byte) string { return string(b) }) }
func (f Files) AsSecrets() string {
	return f.asMap(func(b []byte) string { return base64.StdEncoding.EncodeToString(b) })
}

// APIVersions is .Capabilities.APIVersions.
type APIVersions []string

func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

var defaultAPIVersions = APIVersions{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1",
	"rbac.authorization.k8s.io/v1",
}

func main() {
	var valueFiles, sets, setStrings, showOnly, apiVersions multiFlag
	name := flag.String("name", "rerankd", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "release namespace (.Release.Namespace)")
	kubeVersion := flag.String("kube-version", "v1.29.0", ".Capabilities.KubeVersion")
	flag.Var(&valueFiles, "f", "a values file (repeatable; later wins)")
	flag.Var(&valueFiles, "values", "same as -f")
	flag.Var(&sets, "set", "key.path=value (repeatable)")
	flag.Var(&setStrings, "set-string", "key.path=value, always a string (repeatable)")
	flag.Var(&showOnly, "show-only", "only this template, e.g. templates/deployment.yaml (repeatable)")
	flag.Var(&apiVersions, "api-versions", "an extra .Capabilities.APIVersions entry (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [flags] CHART_DIR")
		flag.PrintDefaults()
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), *name, *namespace, *kubeVersion, valueFiles, sets, setStrings,
		showOnly, append(append(APIVersions{}, defaultAPIVersions...), apiVersions...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}

func render(chartDir, name, namespace, kubeVersion string, valueFiles, sets, setStrings,
	showOnly []string, apiVersions APIVersions) (string, error) {
	var meta ChartMeta
	if err := readYAML(filepath.Join(chartDir, "Chart.yaml"), &meta); err != nil {
		return "", err
	}
	if meta.APIVersion != "v2" || meta.Name == "" || meta.Version == "" {
		return "", fmt.Errorf("Chart.yaml: apiVersion v2, name and version are required")
	}

	values := map[string]interface{}{}
	if err := readValues(filepath.Join(chartDir, "values.yaml"), &values); err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		override := map[string]interface{}{}
		if err := readValues(f, &override); err != nil {
			return "", err
		}
		values = coalesce(values, override)
	}
	for _, s := range sets {
		if err := setValue(values, s, false); err != nil {
			return "", err
		}
	}
	for _, s := range setStrings {
		if err := setValue(values, s, true); err != nil {
			return "", err
		}
	}
	values = coalesce(values, map[string]interface{}{}) // drops the nulls --set may have left
	if err := validateSchema(filepath.Join(chartDir, "values.schema.json"), values); err != nil {
		return "", err
	}

	files, templates, err := loadChartFiles(chartDir)
	if err != nil {
		return "", err
	}
	major, minor := "1", "29"
	if p := strings.SplitN(strings.TrimPrefix(kubeVersion, "v"), ".", 3); len(p) >= 2 {
		major, minor = p[0], p[1]
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  meta,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm", "IsInstall": true,
			"IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": kubeVersion, "GitVersion": kubeVersion, "Major": major, "Minor": minor,
			},
			"APIVersions": apiVersions,
			"HelmVersion": map[string]interface{}{"Version": "v3.14.0"},
		},
		"Files": files,
	}

	t := template.New("gotpl").Option("missingkey=zero")
	includeDepth := map[string]int{}
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = func(v interface{}) string { s, _ := toYAML(v); return s }
	funcs["fromYaml"] = fromYAML
	funcs["fromYamlArray"] = fromYAMLArray
	funcs["toJson"] = func(v interface{}) string { b, _ := json.Marshal(v); return string(b) }
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includeDepth[name] > 1000 {
			return "", fmt.Errorf("rendering template %q: too many nested includes", name)
		}
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		c, err = c.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("tpl: %w", err)
		}
		var buf bytes.Buffer
		if err := c.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("tpl: %w", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	t.Funcs(funcs)

	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	base := meta.Name + "/templates"
	for _, n := range names {
		if _, err := t.New(base + "/" + n).Parse(templates[n]); err != nil {
			return "", err
		}
	}

	wanted := map[string]bool{}
	for _, s := range showOnly {
		wanted[strings.TrimPrefix(s, "templates/")] = true
	}
	var out strings.Builder
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		full := base + "/" + n
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": full, "BasePath": base}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, full, data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if n == "NOTES.txt" || strings.TrimSpace(text) == "" {
			continue // NOTES.txt is rendered (errors count) but is not a manifest
		}
		if len(wanted) > 0 && !wanted[n] {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, strings.TrimRight(text, "\n"))
		delete(wanted, n)
	}
	if len(wanted) > 0 {
		var missing []string
		for n := range wanted {
			missing = append(missing, n)
		}
		sort.Strings(missing)
		return "", fmt.Errorf("could not find template(s) %s in chart (or they rendered empty)",
			strings.Join(missing, ", "))
	}
	return out.String(), nil
}

func readYAML(file string, v interface{}) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// readValues decodes a values file with numbers as float64, as Helm's YAML-through-JSON does.
func readValues(file string, values *map[string]interface{}) error {
	var raw interface{}
	if err := readYAML(file, &raw); err != nil {
		return err
	}
	if raw == nil {
		return nil
	}
	m, ok := jsonLike(raw).(map[string]interface{})
	if !ok {
		return fmt.Errorf("%s: a values file must be a mapping", file)
	}
	*values = m
	return nil
}

// jsonLike converts decoded YAML to what encoding/json would produce: float64 numbers,
// map[string]interface{} objects.
func jsonLike(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = jsonLike(e)
		}
		return x
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonLike(e)
		}
		return m
	case []interface{}:
		for i, e := range x {
			x[i] = jsonLike(e)
		}
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	default:
		return v
	}
}

// coalesce returns defaults overlaid with override: maps merge recursively, any other value
// replaces, and a nil in override deletes the key (Helm's "null removes a default").
func coalesce(defaults, override map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range override {
		if v == nil {
			delete(out, k)
			continue
		}
		dm, dok := out[k].(map[string]interface{})
		om, ook := v.(map[string]interface{})
		if dok && ook {
			out[k] = coalesce(dm, om)
		} else {
			out[k] = v
		}
	}
	for k, v := range out {
		if m, ok := v.(map[string]interface{}); ok {
			out[k] = coalesce(m, map[string]interface{}{})
		} else if v == nil {
			delete(out, k)
		}
	}
	return out
}

// setValue applies one --set a.b.c=value (Helm's strvals for scalar values: null, true/false,
// integers as int64, anything else a string; with asString always a string).
func setValue(values map[string]interface{}, assignment string, asString bool) error {
	key, raw, ok := strings.Cut(assignment, "=")
	if !ok || key == "" {
		return fmt.Errorf("--set %q: expected key=value", assignment)
	}
	if strings.ContainsAny(key, "[]{},") || strings.ContainsAny(raw, "{},") {
		return fmt.Errorf("--set %q: lists and escapes are not supported by this renderer; "+
			"use a values file", assignment)
	}
	var value interface{} = raw
	if !asString {
		switch {
		case raw == "null":
			value = nil
		case raw == "true" || raw == "false":
			value = raw == "true"
		default:
			if i, err := strconv.ParseInt(raw, 10, 64); err == nil && raw == strconv.FormatInt(i, 10) {
				value = i
			}
		}
	}
	parts := strings.Split(key, ".")
	m := values
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
	return nil
}

func validateSchema(file string, values map[string]interface{}) error {
	schema, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema),
		gojsonschema.NewGoLoader(values))
	if err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	if result.Valid() {
		return nil
	}
	var msgs []string
	for _, e := range result.Errors() {
		msgs = append(msgs, fmt.Sprintf("- %s: %s", e.Field(), e.Description()))
	}
	sort.Strings(msgs)
	return fmt.Errorf("values don't meet the specifications of the schema(s) in the following "+
		"chart(s):\n%s", strings.Join(msgs, "\n"))
}

// loadChartFiles walks the chart (following symbolic links, as Helm's loader does) and splits it
// into .Files and the templates (relative to templates/). .helmignore patterns (path.Match on the
// relative path or the base name, a trailing "/" for directories) are skipped.
func loadChartFiles(chartDir string) (Files, map[string]string, error) {
	var ignore []string
	if data, err := os.ReadFile(filepath.Join(chartDir, ".helmignore")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				ignore = append(ignore, line)
			}
		}
	}
	ignored := func(rel string, dir bool) bool {
		for _, p := range ignore {
			pat := strings.TrimSuffix(p, "/")
			if strings.HasSuffix(p, "/") && !dir {
				continue
			}
			if ok, _ := path.Match(pat, rel); ok {
				return true
			}
			if ok, _ := path.Match(pat, path.Base(rel)); ok {
				return true
			}
		}
		return false
	}
	files := Files{}
	templates := map[string]string{}
	var walk func(dir, rel string, depth int) error
	walk = func(dir, rel string, depth int) error {
		if depth > 20 {
			return fmt.Errorf("%s: symbolic links nested too deep", dir)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			full := filepath.Join(dir, e.Name())
			r := path.Join(rel, e.Name())
			info, err := os.Stat(full) // follows symbolic links
			if err != nil {
				return fmt.Errorf("%s: %w", r, err)
			}
			if ignored(r, info.IsDir()) {
				continue
			}
			if info.IsDir() {
				if err := walk(full, r, depth+1); err != nil {
					return err
				}
				continue
			}
			data, err := os.ReadFile(full)
			if err != nil {
				return err
			}
			switch {
			case strings.HasPrefix(r, "templates/"):
				templates[strings.TrimPrefix(r, "templates/")] = string(data)
			case r == "Chart.yaml" || r == "values.yaml" || r == "values.schema.json" ||
				strings.HasPrefix(r, "charts/"):
			default:
				files[r] = data
			}
		}
		return nil
	}
	if err := walk(chartDir, "", 0); err != nil {
		return nil, nil, err
	}
	return files, templates, nil
}

// toYAML is Helm's toYaml: through JSON (so numbers print as JSON does, keys sorted), two-space
// indentation, no trailing newline.
func toYAML(v interface{}) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic interface{}
	if err := dec.Decode(&generic); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(numbers(generic)); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// numbers turns json.Number into int64 or float64 so that YAML prints them as numbers.
func numbers(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []interface{}:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		m["Error"] = err.Error()
		return m
	}
	if got, ok := jsonLike(raw).(map[string]interface{}); ok {
		return got
	}
	if raw != nil {
		m["Error"] = fmt.Sprintf("expected a mapping, got %s", reflect.TypeOf(raw))
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var raw interface{}
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return []interface{}{err.Error()}
	}
	if got, ok := jsonLike(raw).([]interface{}); ok {
		return got
	}
	return []interface{}{}
}
