module github.com/traffic-mirror-operator/traffic-mirror-operator/tests/argocd-health

go 1.22

require (
	github.com/yuin/gopher-lua v1.1.1
	gopkg.in/yaml.v3 v3.0.1
)
