package argocdhealth

// Runs kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute), what Flux's kustomize-controller
// and helm-controller health checks (`wait: true`) use, over the same fixtures as the Argo CD health
// check, and checks each result against the `kstatus` expectation in health_test.yaml. The
// expectation must agree with the Argo CD one (Healthy -> Current, Progressing -> InProgress,
// Degraded -> Failed; any object being deleted -> Terminating) unless the test case says why not
// in `kstatusNote` (then it must differ, so a stale note fails too).

import (
	"testing"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	sigsyaml "sigs.k8s.io/yaml"
)

type kstatusCase struct {
	InputPath    string       `yaml:"inputPath"`
	HealthStatus healthStatus `yaml:"healthStatus"`
	Kstatus      struct {
		Status string `yaml:"status"`
	} `yaml:"kstatus"`
	KstatusNote string `yaml:"kstatusNote"`
}

// What kstatus should say for an object Argo CD calls argo.
var fromArgo = map[string]status.Status{
	"Healthy":     status.CurrentStatus,
	"Progressing": status.InProgressStatus,
	"Degraded":    status.FailedStatus,
}

// load decodes a fixture the way the API server hands it to a client (JSON numbers as int64).
func load(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	js, err := sigsyaml.YAMLToJSON([]byte(read(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u
}

func TestKstatus(t *testing.T) {
	var tf struct {
		Tests []kstatusCase `yaml:"tests"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "health_test.yaml")), &tf); err != nil {
		t.Fatal(err)
	}
	seen := map[status.Status]bool{}
	for _, tc := range tf.Tests {
		u := load(t, tc.InputPath)
		res, err := status.Compute(u)
		if err != nil {
			t.Errorf("%s: %v", tc.InputPath, err)
			continue
		}
		seen[res.Status] = true
		if string(res.Status) != tc.Kstatus.Status {
			t.Errorf("%s: kstatus %s (%s), want %q", tc.InputPath, res.Status, res.Message, tc.Kstatus.Status)
		}
		want := fromArgo[tc.HealthStatus.Status]
		if u.GetDeletionTimestamp() != nil {
			want = status.TerminatingStatus
		}
		agrees := string(want) == tc.Kstatus.Status
		switch {
		case !agrees && tc.KstatusNote == "":
			t.Errorf("%s: kstatus %q but Argo CD %s maps to %s; fix the operator's conditions, or say why in kstatusNote",
				tc.InputPath, tc.Kstatus.Status, tc.HealthStatus.Status, want)
		case agrees && tc.KstatusNote != "":
			t.Errorf("%s: kstatus agrees with Argo CD now; drop its kstatusNote", tc.InputPath)
		}
	}
	for _, s := range []status.Status{status.CurrentStatus, status.InProgressStatus, status.FailedStatus, status.TerminatingStatus} {
		if !seen[s] {
			t.Errorf("no fixture gets kstatus %s", s)
		}
	}
}
