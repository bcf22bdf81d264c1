/**
 * Offline checks of rendered Kubernetes manifests (`kubectl kustomize DIR > FILE`), for
 * deploy/validate.sh; no cluster is needed:
 *
 * 1. every document parses (duplicate keys are errors) and validates against the Kubernetes
 *    OpenAPI schema of its kind (npm kubernetes-models: types, required fields, enums);
 * 2. unknown fields are caught by TypeScript: a file typing each document with the API types of
 *    npm kubernetes-types is written to OUT/k8s_types.ts for `deno check` (excess property
 *    checks reach every nesting level, which the OpenAPI schema does not);
 * 3. references inside the bundle hold: selectors match pod labels, named ports and probes exist,
 *    mounted ConfigMaps exist, the Prometheus annotation names the admin port, the containers
 *    run non-root with a read-only root and no added privileges;
 * 4. every ConfigMap `config.toml` parses, its listeners and [admin] port agree with the
 *    container ports, and it is written to OUT/ for `dotproxy --check`.
 *
 *   deno run --no-config --no-lock --allow-read --allow-env --allow-write=OUT deploy/tools/check_k8s.ts \
 *     OUT rendered.yaml...
 *
 * Prints one line per problem and exits 1 if there was any.
 */
import { parse as parseToml } from "npm:smol-toml@1.9.1";
import { parseAllDocuments } from "npm:yaml@2.9.1";
import { ConfigMap, Service } from "npm:kubernetes-models@5.1.0/v1";
import { Deployment } from "npm:kubernetes-models@5.1.0/apps/v1";
import { PodDisruptionBudget } from "npm:kubernetes-models@5.1.0/policy/v1";
import { HorizontalPodAutoscaler } from "npm:kubernetes-models@5.1.0/autoscaling/v2";

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

/** A model class of kubernetes-models: construct from a plain object, then validate(). */
// deno-lint-ignore no-explicit-any
type Model = new (o: any) => { validate(): void };

/** Schema model and TypeScript type (module, name) for each kind the manifests may use. */
const KINDS: Record<string, { model: Model; types: [string, string] }> = {
  "v1/ConfigMap": { model: ConfigMap, types: ["core/v1", "ConfigMap"] },
  "v1/Service": { model: Service, types: ["core/v1", "Service"] },
  "apps/v1/Deployment": { model: Deployment, types: ["apps/v1", "Deployment"] },
  "policy/v1/PodDisruptionBudget": {
    model: PodDisruptionBudget,
    types: ["policy/v1", "PodDisruptionBudget"],
  },
  "autoscaling/v2/HorizontalPodAutoscaler": {
    model: HorizontalPodAutoscaler,
    types: ["autoscaling/v2", "HorizontalPodAutoscaler"],
  },
};

const problems: string[] = [];
const problem = (where: string, what: string) => problems.push(`${where}: ${what}`);

function matches(selector: Obj | undefined, labels: Obj | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function podContainers(d: Obj): Obj[] {
  const spec = d.spec?.template?.spec ?? {};
  return [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
}

function checkDeployment(where: string, d: Obj, configMaps: Map<string, Obj>): void {
  const tpl = d.spec?.template ?? {};
  const pod = tpl.spec ?? {};
  if (!matches(d.spec?.selector?.matchLabels, tpl.metadata?.labels)) {
    problem(where, "spec.selector.matchLabels does not match the pod template labels");
  }
  for (const v of pod.volumes ?? []) {
    if (v.configMap && !configMaps.has(v.configMap.name)) {
      problem(where, `volume ${v.name} mounts ConfigMap ${v.configMap.name}, not in the bundle`);
    }
  }
  const podNonRoot = pod.securityContext?.runAsNonRoot === true;
  const allPorts = new Set<string>();
  for (const c of podContainers(d)) {
    const at = `${where} container ${c.name}`;
    const named = new Map<string, Obj>(
      (c.ports ?? []).filter((p: Obj) => p.name).map((
        p: Obj,
      ) => [p.name, p]),
    );
    for (const p of c.ports ?? []) allPorts.add(`${p.containerPort}/${p.protocol ?? "TCP"}`);
    for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const port = c[kind]?.httpGet?.port;
      if (typeof port === "string" && !named.has(port)) {
        problem(at, `${kind} uses port ${port}, which the container does not name`);
      }
    }
    const sc = c.securityContext ?? {};
    if (!podNonRoot && sc.runAsNonRoot !== true) problem(at, "does not set runAsNonRoot");
    if (sc.readOnlyRootFilesystem !== true) problem(at, "root filesystem is writable");
    if (sc.allowPrivilegeEscalation !== false) problem(at, "allows privilege escalation");
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) {
      problem(at, "does not drop ALL capabilities");
    }
    const extra = (sc.capabilities?.add ?? []).filter((cap: string) => cap !== "NET_BIND_SERVICE");
    if (extra.length > 0) problem(at, `adds capabilities ${extra.join(", ")}`);
  }
  const scrapePort = tpl.metadata?.annotations?.["prometheus.io/port"];
  if (scrapePort !== undefined && !allPorts.has(`${scrapePort}/TCP`)) {
    problem(where, `prometheus.io/port ${scrapePort} is not a TCP container port`);
  }
}

/** The ports a dotproxy config listens on, as `port/PROTO`, and its admin port. */
function configPorts(toml: Obj): { dns: Set<string>; loopbackOnly: boolean; admin?: number } {
  const dns = new Set<string>();
  let loopbackOnly = true;
  for (const l of toml.listeners ?? []) {
    const m = /^(udp|tcp):\/\/(\[[^\]]+\]|[^:]+):(\d+)$/.exec(String(l.url));
    if (!m) continue;
    dns.add(`${m[3]}/${m[1].toUpperCase()}`);
    if (!/^(127\.|\[::1\])/.test(m[2])) loopbackOnly = false;
  }
  const admin = /:(\d+)$/.exec(String(toml.admin?.address ?? ""));
  return { dns, loopbackOnly, admin: admin ? Number(admin[1]) : undefined };
}

async function checkBundle(out: string, file: string): Promise<void> {
  const text = await Deno.readTextFile(file);
  const docs: Obj[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    for (const e of doc.errors) problem(file, `YAML: ${e.message}`);
    const value = doc.toJS();
    if (value !== null) docs.push(value);
  }
  const bundle = file.replace(/^.*\//, "").replace(/\.ya?ml$/, "");
  const configMaps = new Map<string, Obj>();
  const deployments: Obj[] = [];
  const typeLines: string[] = [];
  docs.forEach((o, i) => {
    const kindKey = `${o.apiVersion}/${o.kind}`;
    const where = `${bundle} ${o.kind ?? "?"}/${o.metadata?.name ?? "?"}`;
    const kind = KINDS[kindKey];
    if (!kind) {
      problem(where, `no schema for ${kindKey}: add it to deploy/tools/check_k8s.ts`);
      return;
    }
    try {
      new kind.model(o).validate();
    } catch (err) {
      problem(where, `schema: ${err instanceof Error ? err.message : String(err)}`);
    }
    const [mod, type] = kind.types;
    typeLines.push(
      `// ${where}\nexport const doc${i}: import("npm:kubernetes-types@1.30.0/${mod}.d.ts").${type} = ${
        JSON.stringify(o)
      };`,
    );
    if (o.kind === "ConfigMap") configMaps.set(o.metadata.name, o);
    if (o.kind === "Deployment") deployments.push(o);
  });
  await Deno.writeTextFile(`${out}/${bundle}.k8s_types.ts`, typeLines.join("\n") + "\n");

  for (const d of deployments) {
    checkDeployment(`${bundle} Deployment/${d.metadata.name}`, d, configMaps);
  }
  for (const o of docs) {
    const where = `${bundle} ${o.kind}/${o.metadata?.name}`;
    if (o.kind === "Service") {
      const target = deployments.find((d) =>
        matches(o.spec?.selector, d.spec?.template?.metadata?.labels)
      );
      if (!target) {
        problem(where, "selector matches no Deployment's pods");
        continue;
      }
      for (const p of o.spec?.ports ?? []) {
        const tp = p.targetPort ?? p.port;
        const found = podContainers(target).some((c) =>
          (c.ports ?? []).some((cp: Obj) =>
            (cp.name === tp || cp.containerPort === tp) &&
            (cp.protocol ?? "TCP") === (p.protocol ?? "TCP")
          )
        );
        if (!found) problem(where, `port ${p.name}: targetPort ${tp}/${p.protocol} is not exposed`);
      }
    }
    if (
      o.kind === "PodDisruptionBudget" &&
      !deployments.some((d) =>
        matches(o.spec?.selector?.matchLabels, d.spec?.template?.metadata?.labels)
      )
    ) {
      problem(where, "selector matches no Deployment's pods");
    }
    if (o.kind === "HorizontalPodAutoscaler") {
      const ref = o.spec?.scaleTargetRef ?? {};
      if (ref.kind !== "Deployment" || !deployments.some((d) => d.metadata.name === ref.name)) {
        problem(where, `scaleTargetRef ${ref.kind}/${ref.name} is not in the bundle`);
      }
    }
  }

  for (const [name, cm] of configMaps) {
    const where = `${bundle} ConfigMap/${name}`;
    const text = cm.data?.["config.toml"];
    if (typeof text !== "string") {
      problem(where, "has no config.toml");
      continue;
    }
    let toml: Obj;
    try {
      toml = parseToml(text);
    } catch (err) {
      problem(where, `config.toml: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    await Deno.writeTextFile(`${out}/${bundle}.${name}.toml`, text);
    const users = deployments.filter((d) =>
      (d.spec?.template?.spec?.volumes ?? []).some((v: Obj) => v.configMap?.name === name)
    );
    if (users.length === 0) problem(where, "is mounted by no Deployment");
    const ports = configPorts(toml);
    for (const d of users) {
      const c = podContainers(d).find((c) =>
        (c.volumeMounts ?? []).some((m: Obj) => m.mountPath === "/etc/dotproxy")
      );
      if (!c) {
        problem(where, `no container of ${d.metadata.name} mounts it at /etc/dotproxy`);
        continue;
      }
      const exposed = new Set(
        (c.ports ?? []).map((p: Obj) => `${p.containerPort}/${p.protocol ?? "TCP"}`),
      );
      if (!ports.loopbackOnly) {
        for (const p of ports.dns) {
          if (!exposed.has(p)) problem(where, `listener ${p} is not a container port of ${c.name}`);
        }
      }
      if (ports.admin === undefined) {
        problem(where, "has no [admin] address, so probes cannot work");
      } else if (!exposed.has(`${ports.admin}/TCP`)) {
        problem(where, `[admin] port ${ports.admin} is not a container port of ${c.name}`);
      }
    }
  }
}

const [out, ...files] = Deno.args;
if (!out || files.length === 0) {
  console.error("usage: check_k8s.ts OUT_DIR RENDERED.yaml...");
  Deno.exit(2);
}
for (const f of files) await checkBundle(out, f);
for (const p of problems) console.error(`k8s: ${p}`);
Deno.exit(problems.length > 0 ? 1 : 0);
