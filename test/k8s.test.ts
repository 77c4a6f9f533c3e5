import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { Deployment } from "kubernetes-models/apps/v1";
import { Service } from "kubernetes-models/v1";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../src/config/config.js";

// deploy/k8s/ without a cluster: every manifest against the Kubernetes schemas
// that kubernetes-models ships (offline, no kubectl), then what a schema cannot
// know: the probes hit our routes, the grace periods fit together, the
// environment parses as our configuration, the Service finds the pods.
//
// The schemas type-check the fields they know but let unknown ones through
// (kubeconform's --strict would not): a misspelt field would vanish silently,
// so each one the deployment relies on is also read back by its path below.

const dir = new URL("../deploy/k8s/", import.meta.url).pathname;

/** The kinds deploy/k8s/ may hold, each with its schema. */
const models: Record<string, new (data: never) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "v1/Service": Service,
};

interface Manifest {
  file: string;
  doc: Record<string, unknown>;
}

async function manifests(): Promise<Manifest[]> {
  const out: Manifest[] = [];
  for (const file of (await readdir(dir)).filter((f) => f.endsWith(".yaml")).sort()) {
    for (const parsed of parseAllDocuments(await readFile(`${dir}${file}`, "utf8"))) {
      assert.deepEqual(parsed.errors, [], file);
      out.push({ file, doc: parsed.toJS() as Record<string, unknown> });
    }
  }
  return out;
}

function validate({ file, doc }: Manifest): void {
  const model = models[`${doc.apiVersion}/${doc.kind}`];
  assert.ok(model, `${file}: ${doc.apiVersion} ${doc.kind} is not a kind this test knows`);
  new model(doc as never).validate();
}

const deploymentOf = (all: Manifest[]) => {
  const found = all.filter((m) => m.doc.kind === "Deployment");
  assert.equal(found.length, 1);
  return new Deployment((found[0] as Manifest).doc as never);
};

describe("deploy/k8s/ manifests", () => {
  it("should all be valid against the Kubernetes schemas", async () => {
    const all = await manifests();
    assert.deepEqual(all.map((m) => `${m.file} ${m.doc.kind}`).sort(), [
      "deployment.yaml Deployment",
      "service.yaml Service",
      "service.yaml Service",
    ]);
    for (const m of all) validate(m);
  });

  it("should reject what the schema forbids, offline (the validator is not a no-op)", async () => {
    const deployment = (await manifests()).find((m) => m.doc.kind === "Deployment") as Manifest;
    const broken = structuredClone(deployment);
    const spec = broken.doc.spec as { template: { spec: { containers: Array<Record<string, unknown>> } } };
    (spec.template.spec.containers[0] as Record<string, unknown>).ports = [{ containerPort: "eighty" }];
    assert.throws(() => validate(broken), /containerPort must be integer/);
    delete (spec.template.spec.containers[0] as Record<string, unknown>).name;
    assert.throws(() => validate(broken), /containers\/0 must have required property name/);
  });

  it("should probe /readyz and /healthz on the container's port, and stop only after preStop and the drain", async () => {
    const all = await manifests();
    const d = deploymentOf(all);
    const pod = d.spec?.template.spec;
    const container = pod?.containers[0];
    assert.ok(pod && container);
    assert.equal(container.readinessProbe?.httpGet?.path, "/readyz");
    assert.equal(container.livenessProbe?.httpGet?.path, "/healthz");
    const portName = container.readinessProbe?.httpGet?.port;
    assert.equal(container.livenessProbe?.httpGet?.port, portName);

    // The environment is our configuration: it must parse, and the port must be the one declared.
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
    const config = parseConfig([], env);
    const port = container.ports?.find((p) => p.name === portName);
    assert.equal(port?.containerPort, config.port);
    const dockerfile = await readFile(new URL("../Dockerfile", import.meta.url), "utf8");
    assert.match(dockerfile, new RegExp(`^EXPOSE ${config.port}$`, "m"));

    const preStopSeconds = container.lifecycle?.preStop?.sleep?.seconds;
    assert.ok(typeof preStopSeconds === "number" && preStopSeconds > 0, "a preStop pause");
    const graceSeconds = pod.terminationGracePeriodSeconds ?? 30;
    assert.ok(
      graceSeconds * 1000 > preStopSeconds * 1000 + config.shutdownGraceMs,
      `terminationGracePeriodSeconds ${graceSeconds} s covers preStop ${preStopSeconds} s + --shutdown-grace ${config.shutdownGraceMs} ms`,
    );
  });

  it("should run as a non-root user on a read-only root filesystem, with resource requests", async () => {
    const d = deploymentOf(await manifests());
    const pod = d.spec?.template.spec;
    const container = pod?.containers[0];
    assert.ok(pod && container);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.ok((pod.securityContext?.runAsUser ?? 0) > 0);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext?.capabilities?.drop, ["ALL"]);
    assert.ok(container.resources?.requests?.cpu);
    assert.ok(container.resources?.requests?.memory);
    const dockerfile = await readFile(new URL("../Dockerfile", import.meta.url), "utf8");
    assert.match(dockerfile, new RegExp(`^USER ${pod.securityContext?.runAsUser}:`, "m"), "the image's user");
  });

  it("should have each Service select the Deployment's pods on the container's named port", async () => {
    const all = await manifests();
    const d = deploymentOf(all);
    const labels = d.spec?.template.metadata?.labels ?? {};
    const portNames = (d.spec?.template.spec?.containers[0]?.ports ?? []).map((p) => p.name);
    const services = all.filter((m) => m.doc.kind === "Service").map((m) => new Service(m.doc as never));
    for (const s of services) {
      for (const [k, v] of Object.entries(s.spec?.selector ?? {})) assert.equal(labels[k], v, s.metadata?.name);
      for (const p of s.spec?.ports ?? []) assert.ok(portNames.includes(String(p.targetPort)), s.metadata?.name);
    }
    assert.deepEqual(
      services.map((s) => [s.metadata?.name, s.spec?.clusterIP]),
      [
        ["stream-service", undefined],
        ["stream-service-headless", "None"],
      ],
    );
  });
});
