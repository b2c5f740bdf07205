#!/usr/bin/env bash
# Starts a local environment in the background: etcd + kube-apiserver + kube-controller-manager (built
# from the pinned Go modules; the controller manager runs the namespace controller and the garbage
# collector, so `kubectl delete namespace` and ownerReference garbage collection finish as in a real cluster),
# the VPC emulator with a demo credential (and no data: filters and sessions are made by the operator
# from deploy/examples/), the CRDs, a credentials Secret and a ProviderConfig named `default` pointing
# at the emulator. Writes .dev/env (source it).
# Idempotent: a running environment is reused. Stop everything with hack/dev-down.sh (make dev-down).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dev="$root/.dev"
mkdir -p "$dev"
cd "$root"

alive() { [[ -f "$dev/$1.pid" ]] && kill -0 "$(cat "$dev/$1.pid")" 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then echo "dev-up: timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

if alive etcd && alive kube-apiserver && alive kube-controller-manager && alive emulator \
  && [[ -f "$dev/env" ]]; then
  echo "dev-up: already running (source .dev/env; make dev-down to stop)"
  exit 0
fi
"$root/hack/dev-down.sh" >/dev/null 2>&1 || true
mkdir -p "$dev"

cp_dir="$("$root/tests/control-plane/build.sh" | tail -n 1)"
echo "dev-up: control plane binaries in $cp_dir"
cargo build --quiet --bin traffic-mirror-operator --bin hwc-vpc-emulator
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/debug"

# --- etcd ---------------------------------------------------------------------------------------
etcd_port="$(free_port)"
mkdir -p "$dev/etcd"
"$cp_dir/etcd" --data-dir "$dev/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:0" \
  --unsafe-no-fsync --log-level warn >"$dev/etcd.log" 2>&1 &
echo $! >"$dev/etcd.pid"

# --- kube-apiserver -----------------------------------------------------------------------------
api_port="$(free_port)"
mkdir -p "$dev/certs"
[[ -f "$dev/sa.key" ]] || openssl ecparam -name prime256v1 -genkey -noout -out "$dev/sa.key" 2>/dev/null
token="$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
kcm_token="$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
kcm_user=system:kube-controller-manager
{
  echo "$token,admin,admin,\"system:masters\""
  echo "$kcm_token,$kcm_user,$kcm_user,\"system:masters\""
} >"$dev/tokens.csv"
"$cp_dir/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --cert-dir "$dev/certs" \
  --secure-port "$api_port" --bind-address 127.0.0.1 --service-cluster-ip-range 10.0.0.0/24 \
  --authorization-mode RBAC --token-auth-file "$dev/tokens.csv" --allow-privileged=true \
  --disable-admission-plugins ServiceAccount --endpoint-reconciler-type none \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$dev/sa.key" --service-account-signing-key-file "$dev/sa.key" \
  >"$dev/kube-apiserver.log" 2>&1 &
echo $! >"$dev/kube-apiserver.pid"
wait_until 60 "the kube-apiserver certificate" test -f "$dev/certs/apiserver.crt"
write_kubeconfig() { # write_kubeconfig PATH USER TOKEN
  cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: dev
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dev/certs/apiserver.crt
users:
- name: "$2"
  user:
    token: $3
contexts:
- name: dev
  context: {cluster: dev, user: "$2", namespace: default}
current-context: dev
KUBECONFIG
}
write_kubeconfig "$dev/kubeconfig" admin "$token"
export KUBECONFIG="$dev/kubeconfig"
export PATH="$cp_dir:$PATH"
wait_until 90 "kube-apiserver /readyz" kubectl get --raw /readyz
wait_until 30 "the default namespace" kubectl get namespace default

# --- kube-controller-manager (namespace controller + garbage collector only) ---------------------
write_kubeconfig "$dev/kube-controller-manager.kubeconfig" "$kcm_user" "$kcm_token"
kcm_port="$(free_port)"
"$cp_dir/kube-controller-manager" --kubeconfig "$dev/kube-controller-manager.kubeconfig" \
  --controllers namespace,garbagecollector --use-service-account-credentials=false \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port "$kcm_port" \
  >"$dev/kube-controller-manager.log" 2>&1 &
echo $! >"$dev/kube-controller-manager.pid"
kcm_healthy() { # both controllers are built and /healthz says ok (self-signed certificate)
  local health
  health="$(curl -fsk "https://127.0.0.1:$kcm_port/healthz?verbose")" || return 1
  grep -q '\[+\]namespace-controller ok' <<<"$health" \
    && grep -q '\[+\]garbage-collector-controller ok' <<<"$health"
}
wait_until 60 "kube-controller-manager /healthz" kcm_healthy

# --- emulator (empty: the operator creates what deploy/examples/ declares) ----------------------
project=0123456789abcdef0123456789abcdef
ak=DEMOACCESSKEY0000001
sk=demo-secret-key-0000000000000000000000001
"$bin/hwc-vpc-emulator" --listen 127.0.0.1:0 --project-id "$project" --credential "$ak:$sk" \
  --state "$dev/emulator-state.json" >"$dev/emulator.out" 2>"$dev/emulator.log" &
echo $! >"$dev/emulator.pid"
wait_until 30 "the emulator" grep -q '^listening on ' "$dev/emulator.out"
emulator_url="$(head -n 1 "$dev/emulator.out" | sed 's/^listening on //')"

# --- CRDs, Secret, ProviderConfig ---------------------------------------------------------------
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=Established --timeout 60s -f crds/ >/dev/null
kubectl create secret generic hwcloud-demo -n default \
  --from-literal=accessKey="$ak" --from-literal=secretKey="$sk" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<PC
apiVersion: vpc.hwcloud.dev/v1alpha1
kind: ProviderConfig
metadata:
  name: default
spec:
  region: emulated-1
  projectId: $project
  endpoint: $emulator_url
  credentials:
    secretRef: {namespace: default, name: hwcloud-demo}
PC

cat >"$dev/env" <<ENV
# Generated by make dev-up; source it: . .dev/env
export KUBECONFIG="$dev/kubeconfig"
export EMULATOR_URL="$emulator_url"
export PATH="$cp_dir:\$PATH"
ENV
echo "dev-up: ready"
echo "  kube-apiserver  https://127.0.0.1:$api_port   (KUBECONFIG=$dev/kubeconfig)"
echo "  kube-controller-manager  namespace deletion + garbage collection   (log .dev/kube-controller-manager.log)"
echo "  emulator        $emulator_url   (calls: curl \$EMULATOR_URL/_emulator/calls)"
echo "  next: . .dev/env && make run      stop: make dev-down"
