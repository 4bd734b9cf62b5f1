#!/usr/bin/env python3
"""Renders deploy/kubernetes the way `kustomize build` does, for the subset
of kustomize those kustomizations use, where no kustomize is installed.

deploy/validate.sh prefers a real renderer (`kustomize`, or `kubectl
kustomize`) and, when one is there, checks that this one renders the same
resources. Supported, and nothing else (any other field is an error, so a
kustomization that outgrows this file says so instead of rendering wrong):

- `resources`: YAML files (one or more documents) and folders holding a
  kustomization.yaml (an overlay's base), in order;
- `labels`: `pairs` added to every resource's metadata.labels; with
  `includeTemplates`, also to the pod templates of workloads; with
  `includeSelectors`, also to selectors (not supported: an error);
- `images`: `name` matched against each container's image (name part),
  replaced by `newName` and/or given `newTag`.

Output: the resources as a YAML stream, sorted by kind and name
(kustomize orders them otherwise; validate.sh compares them as sets).

Usage: kustomize_lite.py DIR
"""

import sys
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "labels", "images"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def fail(message):
    sys.exit(f"kustomize_lite: {message}")


def load_kustomization(folder):
    path = folder / "kustomization.yaml"
    if not path.is_file():
        fail(f"{folder} has no kustomization.yaml")
    k = yaml.safe_load(path.read_text()) or {}
    unknown = set(k) - SUPPORTED
    if unknown:
        fail(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
    return k


def build(folder, seen=()):
    folder = folder.resolve()
    if folder in seen:
        fail(f"cycle through {folder}")
    k = load_kustomization(folder)
    out = []
    for entry in k.get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            out.extend(build(target, seen + (folder,)))
        elif target.is_file():
            if folder not in target.parents:
                fail(f"{entry}: a file resource must be in or below {folder}")
            docs = [d for d in yaml.safe_load_all(target.read_text()) if d is not None]
            out.extend(docs)
        else:
            fail(f"{folder}: resource {entry} does not exist")
    for label in k.get("labels", []):
        apply_labels(out, label)
    for image in k.get("images", []):
        apply_image(out, image)
    names = [(r.get("kind"), r.get("metadata", {}).get("name")) for r in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        fail(f"{folder}: resources defined twice: {sorted(dupes)}")
    return out


def apply_labels(resources, label):
    unknown = set(label) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown or label.get("includeSelectors"):
        fail(f"labels: only pairs and includeTemplates are implemented, not {sorted(unknown) or 'includeSelectors'}")
    pairs = label.get("pairs", {})
    for r in resources:
        r.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if label.get("includeTemplates") and r.get("kind") in WORKLOADS:
            template = r.setdefault("spec", {}).setdefault("template", {})
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def split_image(image):
    """`name[:tag][@digest]` -> (name, rest), rest being ':tag' or '@digest' or ''."""
    at = image.find("@")
    if at >= 0:
        return image[:at], image[at:]
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def apply_image(resources, image):
    unknown = set(image) - {"name", "newName", "newTag"}
    if unknown:
        fail(f"images: fields this renderer does not implement: {sorted(unknown)}")
    for r in resources:
        spec = r.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, rest = split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "newTag" in image:
                rest = f":{image['newTag']}"
            container["image"] = name + rest


def main():
    if len(sys.argv) != 2:
        fail("usage: kustomize_lite.py DIR")
    resources = build(Path(sys.argv[1]))
    resources.sort(key=lambda r: (r.get("kind", ""), r.get("metadata", {}).get("name", "")))
    yaml.safe_dump_all(resources, sys.stdout, sort_keys=True, default_flow_style=False)


if __name__ == "__main__":
    main()
