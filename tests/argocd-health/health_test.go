// Runs deploy/argocd/health.lua (and its per-kind copies, and the scripts embedded in
// deploy/argocd/argocd-cm-patch.yaml) in gopher-lua, the Lua interpreter Argo CD embeds, over the
// objects in fixtures/, and checks the health each gets against health_test.yaml (the layout of
// Argo CD's own resource_customizations tests).
package argocdhealth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"gopkg.in/yaml.v3"
)

const (
	group      = "vpc.hwcloud.dev"
	deployDir  = "../../deploy/argocd"
	sharedPath = deployDir + "/health.lua"
	patchPath  = deployDir + "/argocd-cm-patch.yaml"
)

var kinds = []string{"TrafficMirrorSession", "TrafficMirrorFilter", "TrafficMirrorSessionSet", "ProviderConfig"}

type healthStatus struct {
	Status  string `yaml:"status"`
	Message string `yaml:"message"`
}

type testCase struct {
	InputPath    string       `yaml:"inputPath"`
	HealthStatus healthStatus `yaml:"healthStatus"`
}

type testFile struct {
	Tests []testCase `yaml:"tests"`
}

// The statuses Argo CD accepts from a health script.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// toLua converts a decoded YAML/JSON value the way Argo CD hands `obj` to the script (maps and
// lists become tables, numbers LNumber).
func toLua(L *lua.LState, v interface{}) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case map[string]interface{}:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []interface{}:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	default:
		panic(fmt.Sprintf("unsupported value %T", v))
	}
}

// run executes a health script over obj in a sandbox like Argo CD's (base, table, string, math).
func run(script string, obj map[string]interface{}) (healthStatus, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return healthStatus{}, err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("script returned %s, not a table", L.Get(-1).Type())
	}
	return healthStatus{
		Status:  lua.LVAsString(ret.RawGetString("status")),
		Message: lua.LVAsString(ret.RawGetString("message")),
	}, nil
}

// scripts returns every copy of the script Argo CD may run, by where it comes from.
func scripts(t *testing.T) map[string]string {
	t.Helper()
	shared := read(t, sharedPath)
	out := map[string]string{sharedPath: shared}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal([]byte(read(t, patchPath)), &cm); err != nil {
		t.Fatalf("%s: %v", patchPath, err)
	}
	for _, kind := range kinds {
		perKind := filepath.Join(deployDir, group, kind, "health.lua")
		out[perKind] = read(t, perKind)
		key := "resource.customizations.health." + group + "_" + kind
		s, ok := cm.Data[key]
		if !ok {
			t.Fatalf("%s: no data key %s", patchPath, key)
		}
		out[patchPath+" "+key] = s
	}
	return out
}

// Every copy is the shared script, byte for byte (deploy/argocd/sync.sh writes them).
func TestCopiesAreTheSharedScript(t *testing.T) {
	all := scripts(t)
	shared := all[sharedPath]
	for where, s := range all {
		if s != shared {
			t.Errorf("%s differs from %s; run deploy/argocd/sync.sh", where, sharedPath)
		}
	}
}

func TestHealth(t *testing.T) {
	var tf testFile
	if err := yaml.Unmarshal([]byte(read(t, "health_test.yaml")), &tf); err != nil {
		t.Fatal(err)
	}
	all := scripts(t)
	seen := map[string]bool{}
	perKind := map[string]map[string]bool{}
	for _, tc := range tf.Tests {
		seen[filepath.Base(tc.InputPath)] = true
		var obj map[string]interface{}
		if err := yaml.Unmarshal([]byte(read(t, tc.InputPath)), &obj); err != nil {
			t.Fatalf("%s: %v", tc.InputPath, err)
		}
		kind, _ := obj["kind"].(string)
		if apiVersion, _ := obj["apiVersion"].(string); !strings.HasPrefix(apiVersion, group+"/") {
			t.Errorf("%s: apiVersion %q is not in %s", tc.InputPath, apiVersion, group)
		}
		if perKind[kind] == nil {
			perKind[kind] = map[string]bool{}
		}
		perKind[kind][tc.HealthStatus.Status] = true
		// The per-kind file Argo CD would run for this object, and the shared one.
		for _, where := range []string{sharedPath, filepath.Join(deployDir, group, kind, "health.lua"),
			patchPath + " resource.customizations.health." + group + "_" + kind} {
			script, ok := all[where]
			if !ok {
				t.Errorf("%s: no script for kind %q (%s)", tc.InputPath, kind, where)
				continue
			}
			got, err := run(script, obj)
			if err != nil {
				t.Errorf("%s (%s): %v", tc.InputPath, where, err)
				continue
			}
			if !validStatuses[got.Status] {
				t.Errorf("%s (%s): status %q is not one Argo CD knows", tc.InputPath, where, got.Status)
			}
			if got != tc.HealthStatus {
				t.Errorf("%s (%s):\n got  %+v\n want %+v", tc.InputPath, where, got, tc.HealthStatus)
			}
		}
	}
	// Every fixture is checked, and every kind reaches Healthy, Progressing and Degraded.
	entries, err := os.ReadDir("fixtures")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("fixtures/%s is not in health_test.yaml", e.Name())
		}
	}
	for _, kind := range kinds {
		for _, s := range []string{"Healthy", "Progressing", "Degraded"} {
			if !perKind[kind][s] {
				t.Errorf("no fixture of kind %s expects %s", kind, s)
			}
		}
	}
}
