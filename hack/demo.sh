#!/usr/bin/env bash
# The newcomer's single command (make demo): the whole loop on the local environment.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# wait_ready KIND/NAME SECONDS: kubectl wait polls until Ready=True or the deadline; on a timeout the
# object's conditions and the end of the operator log say why.
wait_ready() {
  kubectl wait --for condition=Ready "$1" -n default --timeout "${2}s" && return 0
  echo "demo: $1 is not Ready after ${2}s; its conditions:" >&2
  kubectl get "$1" -n default -o jsonpath='{range .status.conditions[*]}  {.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2 || true
  tail -n 20 .dev/operator.log >&2 || true
  return 1
}

step "Starting the local environment (control plane, emulator, CRDs, ProviderConfig)"
hack/dev-up.sh
# shellcheck disable=SC1091
. .dev/env

step "Starting the operator in the background (log: .dev/operator.log)"
if ! { [[ -f .dev/operator.pid ]] && kill -0 "$(cat .dev/operator.pid)" 2>/dev/null; }; then
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  "$target_dir/debug/traffic-mirror-operator" run --metrics-addr 127.0.0.1:0 --resync-interval 30s \
    >.dev/operator.log 2>&1 &
  echo $! >.dev/operator.pid
fi
kubectl wait --for condition=Ready providerconfig/default --timeout 60s

step "Applying deploy/examples/: filter web-filter (3 rules), session web-tap (references it by name), set web-nodes"
kubectl apply -f deploy/examples/
# The session waits (Ready=False, FilterNotReady) until the filter is Ready, then is created at once.
wait_ready tmf/web-filter 120
wait_ready tms/web-tap 120
kubectl get tmf,tms -n default -o wide

step "Editing one field: spec.priority 10 -> 20"
curl -fsS -X DELETE "$EMULATOR_URL/_emulator/calls" >/dev/null
generation="$(kubectl patch tms web-tap -n default --type merge -p '{"spec":{"priority":20}}' -o jsonpath='{.metadata.generation}')"
kubectl wait --for "jsonpath={.status.observedGeneration}=$generation" tms/web-tap -n default --timeout 60s
wait_ready tms/web-tap 60
echo "The cloud calls that edit caused (from the emulator's call log):"
curl -fsS "$EMULATOR_URL/_emulator/calls" | python3 -c '
import json, sys
calls = json.load(sys.stdin)
calls = calls.get("calls", calls) if isinstance(calls, dict) else calls
for c in calls:
    # Writes to the traffic-mirror API only (the set web-nodes reads tagged ports with a POST).
    if c["method"] != "GET" and "/vpc/" in c["path"]:
        print("  %s %s -> %s  body: %s" % (c["method"], c["path"], c["status"], json.dumps(c["body"])))
'
kubectl get tms -n default -o wide

# demo_node N: the Node demo-node-N (a plain object: no kubelet), labelled mirror=on, with its port
# seeded in the emulator (in the example set's VPC), as a cloud would have it.
demo_vpc="$(grep -m1 'vpcId:' deploy/examples/trafficmirrorsessionset.yaml | awk '{print $2}')"
demo_node() {
  local n="$1" ip="10.0.7.$((10 + $1))"
  curl -fsS -X POST "$EMULATOR_URL/_emulator/ports" -H 'Content-Type: application/json' -d "{
    \"id\": \"port-demo-node-$n\", \"vpc_id\": \"$demo_vpc\", \"device_id\": \"srv-demo-$n\",
    \"device_owner\": \"compute:az1\", \"private_ips\": [{\"subnet_cidr_id\": \"subnet-demo\", \"ip_address\": \"$ip\"}]}" >/dev/null
  kubectl apply -f - >/dev/null <<NODE
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "demo-node-$n", "labels": {"mirror": "on"}},
 "spec": {"providerID": "huaweicloud://srv-demo-$n"},
 "status": {"addresses": [{"type": "InternalIP", "address": "$ip"}]}}
NODE
}
# wait_ports N: the set web-nodes selects N ports and is Ready for them.
wait_ports() {
  kubectl wait --for "jsonpath={.status.selectedPorts}=$1" tmset/web-nodes -n default --timeout 60s
  wait_ready tmset/web-nodes 120
}

step "Three Nodes labelled mirror=on: the set web-nodes mirrors their ports through session web-nodes-0"
for n in 1 2 3; do demo_node "$n"; done
wait_ports 3
kubectl get tmset,tms -n default

step "A fourth Node joins: its port is added to web-nodes-0 (one add-sources)"
curl -fsS -X DELETE "$EMULATOR_URL/_emulator/calls" >/dev/null
demo_node 4
wait_ports 4
curl -fsS "$EMULATOR_URL/_emulator/calls" | python3 -c '
import json, sys
calls = json.load(sys.stdin)
calls = calls.get("calls", calls) if isinstance(calls, dict) else calls
for c in calls:
    print("  %s %s -> %s  body: %s" % (c["method"], c["path"], c["status"], json.dumps(c["body"])))
'
kubectl get tmset -n default

step "Done. Go on:"
cat <<MSG
  . .dev/env                                   # KUBECONFIG, EMULATOR_URL, kubectl on PATH
  kubectl explain tms.spec                     # every field, its range and default (tmf.spec too)
  kubectl describe tmf web-filter              # the filter: rule ids, conditions and events
  kubectl describe tms web-tap                 # conditions and events
  kubectl edit tms web-tap                     # change a field, watch one PUT happen
  kubectl edit tmf web-filter                  # change a rule field: one rule PUT with only it
  kubectl describe tmset web-nodes             # the set: ports, sessions, unresolved Nodes
  kubectl label node demo-node-2 mirror=off    # a Node leaves the set: its port leaves web-nodes-0
  curl -s \$EMULATOR_URL/_emulator/calls        # every cloud call the operator made
  tail -f .dev/operator.log                    # the operator's log
Stop everything:  make dev-down
MSG
