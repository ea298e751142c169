"""Turns deploy/k8s/*.yaml into what `podman kube play` can run on one machine, for
scripts/container-test.sh.

podman plays Pods and Deployments, not what a cluster adds around them, so this stands in for
the cluster's parts and leaves the pod specs (images, commands, args, ports, probes, security
contexts, resources, volumes' mount points) as they are:

- a StatefulSet becomes a Deployment with the same pod template (podman has no StatefulSet);
- a Service becomes hostAliases, on every pod, from its cluster DNS names to the static IP of the
  pod it selects (the caller gives each Deployment an IP with `podman kube play --ip`, in order);
- a ConfigMap volume becomes a hostPath directory that the caller lays out as the kubelet does
  (the ..data symlink swapped atomically on an update), so a ConfigMap edit reaches the pod the
  same way;
- a Secret volume becomes a hostPath directory, --secret-dir/<secretName>, that the caller fills
  with the Secret's files (the TLS pair: scripts/gen-demo-cert.sh);
- the ports of the container named --publish get hostPorts on 127.0.0.1, so probes and curl reach
  them from the host; replicas become 1 (podman runs one pod per Deployment);
- each Deployment's name gets --name-prefix, as a namespace would keep it apart: the pods that
  podman names after it cannot collide with anyone else's on this machine.

Usage: kube-for-podman.py OUT.yaml --ips IP,IP,.. --configmap-dir DIR [--secret-dir DIR]
       --publish NAME=PORT:HOSTPORT,.. [--name-prefix PREFIX] MANIFEST...
Prints one line per Deployment: "name ip"; writes each ConfigMap's files into DIR/<configmap>.src/.
"""

import argparse
import os
import sys

import yaml


def load(paths):
    docs = []
    for path in paths:
        with open(path) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    return docs


def parse_publish(spec):
    """'name=8080:18080,name=9091:19091' -> {name: {8080: 18080, 9091: 19091}}"""
    publish = {}
    for item in filter(None, spec.split(",")):
        name, ports = item.split("=")
        container_port, host_port = ports.split(":")
        publish.setdefault(name, {})[int(container_port)] = int(host_port)
    return publish


def service_aliases(services, workloads, ip_of):
    """{pod IP: [the cluster DNS names of every Service that selects that pod]}"""
    aliases = {}
    for svc in services:
        selector = svc["spec"].get("selector", {})
        target = next(
            (w for w in workloads
             if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v
                    for k, v in selector.items())),
            None,
        )
        if target is None:
            continue
        ns = svc["metadata"].get("namespace", "default")
        name = svc["metadata"]["name"]
        aliases.setdefault(ip_of[target["metadata"]["name"]], []).extend(
            [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"])
    return aliases


def adapt_workload(doc, aliases, configmaps, configmap_dir, publish, secret_dir=None):
    """The cluster's parts for one StatefulSet or Deployment; the pod spec stays as written."""
    doc["kind"] = "Deployment"
    doc["spec"].pop("serviceName", None)
    doc["spec"]["replicas"] = 1
    pod = doc["spec"]["template"]["spec"]
    pod["hostAliases"] = [{"ip": ip, "hostnames": names} for ip, names in aliases.items()]
    for vol in pod.get("volumes", []):
        if "configMap" in vol:
            cm_name = vol.pop("configMap")["name"]
            if cm_name not in configmaps:
                sys.exit(f"ConfigMap {cm_name} is not in the manifests")
            vol["hostPath"] = {"path": f"{configmap_dir}/{cm_name}", "type": "Directory"}
        elif "secret" in vol:
            secret_name = vol.pop("secret")["secretName"]
            if secret_dir is None:
                sys.exit(f"Secret {secret_name} is mounted: give --secret-dir")
            vol["hostPath"] = {"path": f"{secret_dir}/{secret_name}", "type": "Directory"}
    for c in pod["containers"]:
        for port in c.get("ports", []):
            host_port = publish.get(c["name"], {}).get(port["containerPort"])
            if host_port:
                port["hostPort"] = host_port
                port["hostIP"] = "127.0.0.1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("manifests", nargs="+")
    ap.add_argument("--ips", required=True)
    ap.add_argument("--configmap-dir", required=True)
    ap.add_argument("--secret-dir", default=None)
    ap.add_argument("--publish", default="")
    ap.add_argument("--name-prefix", default="")
    args = ap.parse_args()

    docs = load(args.manifests)
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    services = [d for d in docs if d["kind"] == "Service"]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    ips = args.ips.split(",")
    if len(ips) < len(workloads):
        sys.exit(f"need {len(workloads)} IPs, got {len(ips)}")
    ip_of = {w["metadata"]["name"]: ip for w, ip in zip(workloads, ips)}
    aliases = service_aliases(services, workloads, ip_of)
    publish = parse_publish(args.publish)
    for doc in workloads:
        adapt_workload(doc, aliases, configmaps, args.configmap_dir, publish, args.secret_dir)
        print(doc["metadata"]["name"], ip_of[doc["metadata"]["name"]])
        doc["metadata"]["name"] = args.name_prefix + doc["metadata"]["name"]

    for name, cm in configmaps.items():
        os.makedirs(f"{args.configmap_dir}/{name}.src", exist_ok=True)
        for key, text in (cm.get("data") or {}).items():
            with open(f"{args.configmap_dir}/{name}.src/{key}", "w") as f:
                f.write(text)

    with open(args.out, "w") as f:
        yaml.safe_dump_all(workloads, f, sort_keys=False)


if __name__ == "__main__":
    main()
