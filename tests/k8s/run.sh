#!/usr/bin/env bash
# The Kubernetes manifests: render the base and the production overlay with `kubectl kustomize`
# and validate every rendered object against the Kubernetes schemas, offline
# (kubernetes-validate, which ships them, in a venv under target/).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${K8S_VENV:-$PWD/target/k8s-venv}
K8S_VERSION=1.32

if ! command -v kubectl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq kubernetes-client >/dev/null
fi
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
status=0
for target in deploy/k8s deploy/k8s/overlays/production; do
  file="$OUT/$(echo "$target" | tr / _).yaml"
  kubectl kustomize "$target" > "$file"
  kinds=$(grep -c '^kind:' "$file")
  if "$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "$file"; then
    echo "k8s: $target renders $kinds objects, all valid for Kubernetes $K8S_VERSION"
  else
    echo "k8s: $target has invalid objects"
    status=1
  fi
  for kind in Deployment Service ConfigMap PodDisruptionBudget HorizontalPodAutoscaler Job; do
    grep -q "^kind: $kind$" "$file" || { echo "k8s: $target lacks a $kind"; status=1; }
  done
done
exit $status
