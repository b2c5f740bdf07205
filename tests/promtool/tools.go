//go:build tools

package promtool

// Pins cmd/promtool in go.mod (build.sh builds it); the tools tag keeps it out of `go test`.
import _ "github.com/prometheus/prometheus/cmd/promtool"
