#!/usr/bin/env bash
# Validates the packaging offline with real tools (no cluster, no Docker daemon, no systemd
# running): Kubernetes manifests, the systemd unit, the Dockerfile and every shipped config.
# Installs what is missing (apt: systemd, kubectl or kubernetes-client, yamllint; npm:
# dockerfile-utils; deno fetches its npm packages itself). Exits 1 if any check fails; with
# CI=true a tool that cannot be installed is a failure too, otherwise its check is skipped.
#
#   bash deploy/validate.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

export NO_COLOR=1
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { echo "[validate] $*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

ok=()
failed=()
skipped=()
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Runs one named check; its output goes to stderr, its status into the summary.
check() {
  local name="$1"
  shift
  log "--- $name"
  if "$@"; then ok+=("$name"); else
    log "FAILED: $name"
    failed+=("$name")
  fi
}

# A tool that could not be had: a failure in CI, a skipped check elsewhere.
missing() {
  if [ "${CI:-}" = "true" ]; then
    log "FAILED: $1 (tool unavailable)"
    failed+=("$1")
  else
    log "skipped: $1 (tool unavailable)"
    skipped+=("$1")
  fi
}

apt_updated=0
# apt_ensure COMMAND PACKAGE...: installs the first package that provides COMMAND.
apt_ensure() {
  local cmd="$1"
  shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update </dev/null >&2 || log "apt-get update failed (continuing)"
    apt_updated=1
  fi
  for pkg in "$@"; do
    as_root apt-get install -y --no-install-recommends "$pkg" </dev/null >&2 && break
  done
  hash -r
  command -v "$cmd" >/dev/null 2>&1
}

command -v deno >/dev/null 2>&1 || {
  log "deno is required (npm install -g deno@2)"
  exit 1
}

# --- Kubernetes ----------------------------------------------------------------------------------
k8s_dirs=(deploy/kubernetes/central deploy/kubernetes/sidecar)

yaml_lint() {
  yamllint -s -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable,
    truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}' deploy/kubernetes
}
if apt_ensure yamllint yamllint; then check "yamllint deploy/kubernetes" yaml_lint; else
  missing "yamllint deploy/kubernetes"
fi

# The resource files of a kustomization directory as one stream, when kustomize cannot run.
raw_resources() {
  local f
  for f in "$1"/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] && continue
    cat "$f"
    echo "---"
  done
}
render() {
  local d name status=0
  for d in "${k8s_dirs[@]}"; do
    name="$(basename "$d")"
    if ! kubectl kustomize "$d" >"$tmp/$name.yaml"; then
      status=1
      raw_resources "$d" >"$tmp/$name.yaml" # the later checks still see the files
    fi
  done
  return "$status"
}
if apt_ensure kubectl kubectl kubernetes-client; then
  check "kubectl kustomize (central, sidecar)" render
else
  missing "kubectl kustomize (central, sidecar)"
  for d in "${k8s_dirs[@]}"; do raw_resources "$d" >"$tmp/$(basename "$d").yaml"; done
fi

rendered=()
for d in "${k8s_dirs[@]}"; do rendered+=("$tmp/$(basename "$d").yaml"); done
check_k8s() {
  deno run --check --no-config --no-lock --allow-read --allow-env --allow-write="$tmp" \
    deploy/tools/check_k8s.ts "$tmp" "${rendered[@]}" 2> >(grep -v -e punycode -e 'node --trace' >&2)
}
check "Kubernetes schemas and references (kubernetes-models)" check_k8s
k8s_types() {
  local d f
  for d in "${k8s_dirs[@]}"; do
    f="$tmp/$(basename "$d").k8s_types.ts"
    [ -e "$f" ] || return 1 # the schema check did not get this far
    deno check --no-config --no-lock --quiet "$f" || return 1
  done
}
check "Kubernetes unknown fields (kubernetes-types + deno check)" k8s_types

# --- dotproxy configs ---------------------------------------------------------------------------
check_configs() {
  local f status=0
  for f in deploy/docker/config.toml "$tmp"/*.toml; do
    [ -e "$f" ] || continue
    deno run --quiet --allow-net --allow-read=".,$tmp" main.ts --check --config "$f" >&2 ||
      status=1
  done
  return "$status"
}
check "dotproxy --check on every shipped config" check_configs

# --- systemd ------------------------------------------------------------------------------------
unit=deploy/systemd/dotproxy.service
# verify insists that ExecStart's binary exists: point the copy at a stub. It reports unknown
# keys and bad values as warnings with status 0, so any output at all is a failure.
systemd_verify() {
  mkdir -p "$tmp/systemd/bin"
  printf '#!/bin/sh\nexit 0\n' >"$tmp/systemd/bin/dotproxy"
  chmod +x "$tmp/systemd/bin/dotproxy"
  sed "s#/usr/local/bin/dotproxy#$tmp/systemd/bin/dotproxy#g" "$unit" >"$tmp/systemd/dotproxy.service"
  local out
  out="$(systemd-analyze verify "$tmp/systemd/dotproxy.service" 2>&1)" || {
    echo "$out" >&2
    return 1
  }
  [ -z "$out" ] || {
    echo "$out" >&2
    return 1
  }
}
# Exposure score at most 2.0 ("OK"): hardening may not regress unnoticed.
systemd_security() {
  systemd-analyze security --offline=true --threshold=20 "$tmp/systemd/dotproxy.service" \
    >"$tmp/security.txt" 2>&1 || {
    grep -E '✗|Overall' "$tmp/security.txt" >&2
    return 1
  }
  tail -n 1 "$tmp/security.txt" >&2
}
if apt_ensure systemd-analyze systemd; then
  check "systemd-analyze verify $unit" systemd_verify
  check "systemd-analyze security $unit (exposure <= 2.0)" systemd_security
else
  missing "systemd-analyze verify $unit"
fi

# --- Dockerfile ---------------------------------------------------------------------------------
dockerfile_lint() {
  "$tmp/npm/node_modules/.bin/dockerfile-utils" lint Dockerfile
}
if command -v npm >/dev/null 2>&1 &&
  npm install --prefix "$tmp/npm" --no-audit --no-fund --silent dockerfile-utils@0.16.3 \
    </dev/null >&2; then
  check "dockerfile-utils lint Dockerfile" dockerfile_lint
else
  missing "dockerfile-utils lint Dockerfile"
fi

# The rules this project holds the image to, beyond syntax.
dockerfile_policy() {
  local status=0 joined final task perm
  joined="$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile)" # continuation lines joined
  final="$(awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' <<<"$joined")"
  if grep -E '^FROM ' <<<"$joined" | grep -Ev '^FROM [^ ]+[:@][^ ]+' | grep -q .; then
    log "Dockerfile: every FROM needs an explicit tag or digest"
    status=1
  fi
  if grep -q ':latest' <<<"$joined"; then
    log "Dockerfile: no :latest tags"
    status=1
  fi
  if ! grep -Eq '^USER [1-9][0-9]*(:[1-9][0-9]*)?$' <<<"$final"; then
    log "Dockerfile: the final stage needs a numeric non-root USER (runAsNonRoot checks it)"
    status=1
  fi
  if ! grep -Eq '^HEALTHCHECK .*"--probe", *"http://127\.0\.0\.1:9153/healthz"' <<<"$final"; then
    log "Dockerfile: the final stage needs a HEALTHCHECK that probes /healthz"
    status=1
  fi
  # The image must bake the same permissions as `deno task compile`.
  task="$(deno eval --quiet 'const j = JSON.parse(Deno.readTextFileSync("deno.json"));
    console.log(j.tasks.compile.match(/--allow-[a-z-]+(=[^ ]+)?/g).join(" "))' 2>/dev/null)"
  if [ -z "$task" ]; then
    log "Dockerfile: could not read the compile task from deno.json"
    status=1
  fi
  for perm in $task; do
    if ! grep -Eq -- "deno compile .*$perm( |$)" <<<"$joined"; then
      log "Dockerfile: deno compile lacks $perm (deno.json tasks.compile has it)"
      status=1
    fi
  done
  return "$status"
}
check "Dockerfile policy (tags, non-root USER, HEALTHCHECK, compile permissions)" dockerfile_policy

# --- summary ------------------------------------------------------------------------------------
log "ok (${#ok[@]}): ${ok[*]:-}"
[ "${#skipped[@]}" -gt 0 ] && log "skipped (${#skipped[@]}): ${skipped[*]}"
if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED (${#failed[@]}): ${failed[*]}"
  exit 1
fi
log "all packaging checks passed"
