/**
 * The Kubernetes manifests' split-DNS configs, read as dotproxy reads them: the sidecar sends
 * cluster names and the cluster's reverse zones to the cluster DNS and the rest to the public
 * upstreams; the central manifest's "dotproxy in front" variant is valid once uncommented.
 */
import assert from "node:assert/strict";
import { isConfigError, parseConfig } from "../../lib/config/load.ts";
import type { Config } from "../../lib/config/schema.ts";
import { nameFromString } from "../../lib/dns/wire.ts";
import { buildRouting, isRoutingProblem } from "../../lib/route/routing.ts";
import { routingSettings } from "../../lib/config/sections/routing.ts";
import { routeLabel } from "../../lib/route/router.ts";

/** The `config.toml: |` block of a ConfigMap manifest, unindented. */
function configToml(manifest: string): string {
  const lines = manifest.split("\n");
  const start = lines.findIndex((l) => l.trim() === "config.toml: |");
  assert.ok(start >= 0, "no config.toml block");
  return lines.slice(start + 1).map((l) => l.replace(/^ {4}/, "")).join("\n");
}

async function parse(text: string): Promise<Config> {
  const c = await parseConfig(text, {
    path: "configmap",
    baseDir: "/etc/dotproxy",
    readFile: () => Promise.reject(new Error("no files")),
  });
  if (isConfigError(c)) assert.fail(`${c.key}: ${c.message}`);
  return c;
}

/** The route label of each name under `config`. */
function routes(config: Config, names: string[]): string[] {
  const built = buildRouting(
    routingSettings({ ...config, groups: new Set(config.upstreams.map((u) => u.group)) }),
  );
  if (isRoutingProblem(built)) assert.fail(JSON.stringify(built));
  return names.map((n) => routeLabel(built.router.route(nameFromString(n))));
}

const read = (path: string) => Deno.readTextFileSync(new URL(`../../${path}`, import.meta.url));

Deno.test("the sidecar routes cluster names and reverse zones to the cluster DNS over UDP", async () => {
  const config = await parse(configToml(read("deploy/kubernetes/sidecar/configmap.yaml")));
  const cluster = config.upstreams.filter((u) => u.group === "cluster");
  assert.deepEqual(cluster.map((u) => u.url), ["udp://10.96.0.10:53"]);
  assert.deepEqual(
    routes(config, [
      "kubernetes.default.svc.cluster.local",
      "10-244-1-5.default.pod.cluster.local",
      "10.0.96.10.in-addr.arpa",
      "5.1.244.10.in-addr.arpa",
      "1.0.20.172.in-addr.arpa",
      "7.1.168.192.in-addr.arpa",
      "example.com",
      "localhost",
      "cluster.local.example.com",
    ]),
    [
      "cluster",
      "cluster",
      "cluster",
      "cluster",
      "cluster",
      "cluster",
      "default",
      "local",
      "default",
    ],
  );
});

Deno.test("the central manifest's dotproxy-in-front variant is valid once uncommented", async () => {
  const manifest = read("deploy/kubernetes/central/configmap.yaml");
  const text = configToml(manifest);
  const start = text.indexOf("# [[upstreams]]");
  const end = text.indexOf('# group = "cluster"', text.indexOf("# [[routes]]"));
  assert.ok(start > 0 && end > start, "variant 2 not found");
  const variant = text.slice(0, start) +
    text.slice(start, end + 20).replace(/^# ?/gm, "") + text.slice(end + 20);
  const config = await parse(variant);
  assert.deepEqual(routes(config, ["api.default.svc.cluster.local", "example.com"]), [
    "cluster",
    "default",
  ]);
  // As shipped (variant 1, CoreDNS in front): no routes.
  assert.deepEqual((await parse(text)).routes, []);
});
