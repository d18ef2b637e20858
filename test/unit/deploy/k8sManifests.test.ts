// deploy/k8s validates against the Kubernetes and KEDA schemas (the
// kubernetes-models packages, generated from the Kubernetes OpenAPI and KEDA's
// CRDs; offline, no cluster), and holds together: the Service, the budget and
// the autoscaler select the Deployment's pods, the probes hit the endpoints
// llamux serves, the grace period outlasts the drain, the secrets and the GPU
// are asked for.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import YAML from "yaml";
import { Deployment } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { REPO_ROOT } from "../../integration/helpers/server.js";
import { findHaproxy } from "../../../bench/haproxyProcess.js";
import { haproxyConfig } from "../../../src/cluster/haproxyConfig.js";
import { parseDnsSpec, parseHaproxyConfigArgs } from "../../../src/cluster/haproxyConfigCli.js";

const DIR = path.join(REPO_ROOT, "deploy/k8s");
const binary = findHaproxy();

/** The model class for each apiVersion/kind the manifests may use; any other is refused. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "v1/Service": Service,
  "v1/Secret": Secret,
  "v1/ConfigMap": ConfigMap,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};

interface Manifest {
  file: string;
  apiVersion: string;
  kind: string;
  // Plain parsed YAML; the schema check below is what types it.
  body: any;
}

function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of fs
    .readdirSync(DIR)
    .filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml")
    .sort()) {
    for (const doc of YAML.parseAllDocuments(fs.readFileSync(path.join(DIR, file), "utf8"))) {
      assert.deepEqual(doc.errors, [], `${file}: ${doc.errors.join("; ")}`);
      const body = doc.toJS();
      if (body === null) continue;
      out.push({ file, apiVersion: body.apiVersion, kind: body.kind, body });
    }
  }
  return out;
}

const manifests = loadManifests();
/** The one manifest of this kind (and name, default "llamux"). */
const one = (kind: string, name = "llamux") => {
  const found = manifests.filter((m) => m.kind === kind && m.body.metadata?.name === name);
  assert.equal(found.length, 1, `one ${kind} ${name} expected, found ${found.length}`);
  return found[0]!.body;
};
const envValue = (container: { env?: Array<{ name: string; value?: string }> }, name: string) => container.env?.find((e) => e.name === name)?.value;

describe("deploy/k8s", () => {
  test("every manifest is valid against its Kubernetes or KEDA schema", () => {
    assert.ok(manifests.length >= 5);
    for (const m of manifests) {
      const Model = MODELS[`${m.apiVersion}/${m.kind}`];
      assert.ok(Model, `${m.file}: ${m.apiVersion} ${m.kind} has no schema here`);
      assert.doesNotThrow(() => new Model(m.body as never).validate(), `${m.file}: ${m.kind} ${m.body.metadata?.name}`);
    }
  });

  test("the validator can fail: a wrong type or a missing required field is refused", () => {
    const d = structuredClone(one("Deployment"));
    d.spec.template.spec.terminationGracePeriodSeconds = "sixty";
    assert.throws(() => new Deployment(d).validate(), /terminationGracePeriodSeconds must be integer/);
    const s = structuredClone(one("ScaledObject"));
    delete s.spec.scaleTargetRef.name;
    assert.throws(() => new ScaledObject(s).validate(), /name/);
  });

  test("kustomization.yaml lists every manifest but the example Secret", () => {
    const k = YAML.parse(fs.readFileSync(path.join(DIR, "kustomization.yaml"), "utf8")) as { resources: string[] };
    const files = [...new Set(manifests.map((m) => m.file))].filter((f) => f !== "secret.example.yaml");
    assert.deepEqual([...k.resources].sort(), files.sort());
  });

  test("the Service, the PodDisruptionBudget and the ScaledObject all point at the Deployment's pods", () => {
    const deployment = one("Deployment");
    const labels = deployment.spec.template.metadata.labels;
    const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
    assert.ok(selects(deployment.spec.selector.matchLabels));
    assert.ok(selects(one("Service").spec.selector));
    assert.ok(selects(one("Service", "llamux-replicas").spec.selector));
    assert.ok(selects(one("PodDisruptionBudget").spec.selector.matchLabels));
    const container = deployment.spec.template.spec.containers[0];
    const ports = new Set(container.ports.map((p: { name: string }) => p.name));
    for (const p of one("Service").spec.ports) assert.ok(ports.has(p.targetPort), `Service targets port ${p.targetPort}`);
    const target = one("ScaledObject").spec.scaleTargetRef;
    assert.deepEqual([target.kind, target.name], ["Deployment", deployment.metadata.name]);
  });

  test("the router's HAProxy configuration is the generator's output for its documented arguments, finds the replicas through the headless Service, and HAProxy accepts it", {
    skip: !binary && process.env.CI !== "true" ? "haproxy not installed: skipped outside CI" : false,
  }, () => {
    const text = fs.readFileSync(path.join(DIR, "router.yaml"), "utf8");
    const args = /llamux haproxy-config (.+)/.exec(text)![1]!.trim().split(/\s+/);
    const cfg = one("ConfigMap", "llamux-router").data["haproxy.cfg"];
    assert.equal(cfg, haproxyConfig(parseHaproxyConfigArgs(args)!));
    const headless = one("Service", "llamux-replicas");
    assert.equal(headless.spec.clusterIP, "None");
    const dns = parseDnsSpec(args[args.indexOf("--dns") + 1]!, 1);
    assert.equal(dns.fqdn.split(".")[0], headless.metadata.name);
    const ports = Object.fromEntries(headless.spec.ports.map((p: { name: string; port: number }) => [p.name, p.port]));
    assert.deepEqual([dns.port, dns.agentPort], [ports.http, ports.agent]);
    const container = one("Deployment").spec.template.spec.containers[0];
    assert.equal(envValue(container, "LLAMUX_AGENT_PORT"), String(dns.agentPort));
    assert.ok(container.ports.some((p: { name: string; containerPort: number }) => p.name === "agent" && p.containerPort === dns.agentPort));
    const router = one("Deployment", "llamux-router");
    assert.equal(router.spec.template.spec.volumes[0].configMap.name, "llamux-router");
    assert.ok(binary, "haproxy is not installed (CI installs it with .ci/run)");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-router-check-"));
    try {
      fs.writeFileSync(path.join(dir, "haproxy.cfg"), cfg);
      const r = spawnSync(binary, ["-c", "-f", path.join(dir, "haproxy.cfg")], { encoding: "utf8", timeout: 30_000 });
      assert.equal(r.status, 0, r.stdout + r.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("probes: readiness on /ready, liveness on /health, on the port llamux listens on", () => {
    const container = one("Deployment").spec.template.spec.containers[0];
    assert.equal(container.readinessProbe.httpGet.path, "/ready");
    assert.equal(container.livenessProbe.httpGet.path, "/health");
    const http = container.ports.find((p: { name: string }) => p.name === container.readinessProbe.httpGet.port);
    assert.equal(String(http.containerPort), envValue(container, "LLAMUX_PORT"));
    assert.equal(envValue(container, "LLAMUX_HOST"), "0.0.0.0");
  });

  test("the grace period outlasts the preStop pause plus the drain timeout", () => {
    const pod = one("Deployment").spec.template.spec;
    const container = pod.containers[0];
    const drainMs = Number(envValue(container, "LLAMUX_DRAIN_TIMEOUT_MS"));
    assert.ok(drainMs > 0);
    const preStopSeconds = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
    assert.ok(
      pod.terminationGracePeriodSeconds * 1000 > preStopSeconds * 1000 + drainMs + 5000,
      `${pod.terminationGracePeriodSeconds} s is too short for ${preStopSeconds} s + ${drainMs} ms`,
    );
  });

  test("PostgreSQL, Redis and the secrets come from a Secret; the pod asks for a GPU", () => {
    const container = one("Deployment").spec.template.spec.containers[0];
    for (const name of ["LLAMUX_DATABASE_URL", "LLAMUX_REDIS_URL", "LLAMUX_ADMIN_KEY", "LLAMUX_METRICS_TOKEN"]) {
      const e = container.env.find((x: { name: string }) => x.name === name);
      assert.ok(e?.valueFrom?.secretKeyRef, `${name} must come from a Secret`);
      assert.equal(e.value, undefined);
      const example = manifests.find((m) => m.kind === "Secret")!.body;
      assert.equal(e.valueFrom.secretKeyRef.name, example.metadata.name);
      assert.ok(e.valueFrom.secretKeyRef.key in example.stringData, `the example Secret lacks ${e.valueFrom.secretKeyRef.key}`);
    }
    assert.equal(container.resources.requests["nvidia.com/gpu"], "1");
    assert.equal(container.resources.limits["nvidia.com/gpu"], "1");
  });

  test("autoscaling reads the queue gauge llamux exports", () => {
    const trigger = one("ScaledObject").spec.triggers[0];
    assert.equal(trigger.type, "prometheus");
    assert.match(trigger.metadata.query, /\bllamux_requests_waiting\b/);
    const metrics = fs.readFileSync(path.join(REPO_ROOT, "src/metrics.ts"), "utf8");
    assert.match(metrics, /"llamux_requests_waiting"/);
  });
});
