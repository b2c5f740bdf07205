package argocdhealth

import (
	"fmt"
	"path/filepath"
	"sort"
	"testing"

	"gopkg.in/yaml.v3"
)

// The fixtures are shaped like real objects: their spec and status validate against the
// openAPIV3Schema of crds/*.yaml (field names, required fields, types, enums), so a CRD change that
// renames or retypes a field the fixtures use fails here.
func TestFixturesMatchTheCRDs(t *testing.T) {
	schemas := map[string]map[string]interface{}{}
	paths, err := filepath.Glob("../../crds/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no CRDs under ../../crds (%v)", err)
	}
	for _, p := range paths {
		var crd struct {
			Spec struct {
				Names    struct{ Kind string } `yaml:"names"`
				Versions []struct {
					Name   string `yaml:"name"`
					Schema struct {
						OpenAPIV3Schema map[string]interface{} `yaml:"openAPIV3Schema"`
					} `yaml:"schema"`
				} `yaml:"versions"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal([]byte(read(t, p)), &crd); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, v := range crd.Spec.Versions {
			schemas[group+"/"+v.Name+"/"+crd.Spec.Names.Kind] = v.Schema.OpenAPIV3Schema
		}
	}
	fixtures, _ := filepath.Glob("fixtures/*.yaml")
	for _, f := range fixtures {
		var obj map[string]interface{}
		if err := yaml.Unmarshal([]byte(read(t, f)), &obj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		key := fmt.Sprintf("%v/%v", obj["apiVersion"], obj["kind"])
		schema, ok := schemas[key]
		if !ok {
			t.Errorf("%s: no CRD for %s", f, key)
			continue
		}
		props, _ := schema["properties"].(map[string]interface{})
		for _, part := range []string{"spec", "status"} {
			if v, ok := obj[part]; ok {
				s, _ := props[part].(map[string]interface{})
				for _, problem := range validate(s, v, part) {
					t.Errorf("%s: %s", f, problem)
				}
			}
		}
	}
}

// validate is a small structural check: enough of OpenAPI v3 for these CRDs.
func validate(schema map[string]interface{}, v interface{}, path string) []string {
	if schema == nil {
		return []string{path + ": not in the schema"}
	}
	var out []string
	if enum, ok := schema["enum"].([]interface{}); ok {
		found := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("%s: %v is not one of %v", path, v, enum))
		}
	}
	switch schema["type"] {
	case "object":
		m, ok := v.(map[string]interface{})
		if !ok {
			return append(out, fmt.Sprintf("%s: want an object, got %T", path, v))
		}
		props, hasProps := schema["properties"].(map[string]interface{})
		extra, _ := schema["additionalProperties"].(map[string]interface{})
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch s, ok := props[k].(map[string]interface{}); {
			case ok:
				out = append(out, validate(s, m[k], path+"."+k)...)
			case extra != nil:
				out = append(out, validate(extra, m[k], path+"."+k)...)
			case hasProps:
				out = append(out, path+"."+k+": not in the schema")
			}
		}
		if req, ok := schema["required"].([]interface{}); ok {
			for _, r := range req {
				if _, ok := m[r.(string)]; !ok {
					out = append(out, fmt.Sprintf("%s: required field %v is missing", path, r))
				}
			}
		}
	case "array":
		l, ok := v.([]interface{})
		if !ok {
			return append(out, fmt.Sprintf("%s: want an array, got %T", path, v))
		}
		items, _ := schema["items"].(map[string]interface{})
		for i, e := range l {
			out = append(out, validate(items, e, fmt.Sprintf("%s[%d]", path, i))...)
		}
	case "string":
		if _, ok := v.(string); !ok {
			out = append(out, fmt.Sprintf("%s: want a string, got %T", path, v))
		}
	case "integer":
		if _, ok := v.(int); !ok {
			out = append(out, fmt.Sprintf("%s: want an integer, got %T", path, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			out = append(out, fmt.Sprintf("%s: want a boolean, got %T", path, v))
		}
	}
	return out
}
