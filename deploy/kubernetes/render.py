#!/usr/bin/env python3
"""Render a kustomization offline, for the subset of kustomize this repository uses.

kustomize (or `kubectl kustomize`) is the tool to use; it is not packaged by Debian (its
kubernetes-client 1.20 predates Components) nor by PyPI, so CI renders the Component with
this small implementation of exactly the features deploy/kubernetes uses, and checks the
result. Where kustomize is installed, deploy/check.sh also renders with it and requires
the same objects, so the two cannot drift apart unnoticed.

Supported (anything else is an error, never silently ignored):
  Kustomization / Component: resources (files and directories), components,
    configMapGenerator (files, literals, options.labels, behavior create/replace/merge),
    patches (strategic merge or JSON 6902; inline `patch` or `path`; target by kind,
    group, version, name and equality labelSelector; like kustomize, a target that
    matches nothing is no error), namespace, images (name, newName, newTag, digest:
    kustomize's image-reference matching and rewriting, on every `image` of a list
    under `containers` or `initContainers` at any depth, as its images transformer).
  Generated ConfigMaps get kustomize's content-hash suffix (same algorithm, so the same
  name), and references to them from pod templates are rewritten.
  Order within one kustomization, as kustomize's: resources, components, generators,
  patches, namespace, images.

    python3 deploy/kubernetes/render.py DIR            # YAML on stdout
    python3 deploy/kubernetes/render.py DIR -o FILE
Needs PyYAML.
"""
import copy
import hashlib
import json
import os
import re
import sys

import yaml

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "components", "patches",
                        "configMapGenerator", "namespace", "images"}
GEN_KEY = "__generated_name"  # internal marker: the generator's name, before hashing

# Strategic-merge keys of the lists we patch (from the Kubernetes API's patchMergeKey).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
    "volumeMounts": "mountPath", "imagePullSecrets": "name", "envFrom": None,
}
CONTAINER_PORT_KEY = "containerPort"
SERVICE_PORT_KEY = "port"
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class RenderError(Exception):
    pass


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization_file(d):
    for n in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        p = os.path.join(d, n)
        if os.path.isfile(p):
            return p
    raise RenderError(f"{d}: no kustomization.yaml")


# ---- hashing (kustomize api/hasher: name is hashed as "" since v4, see encodeConfigMap) --
def go_json(obj):
    s = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    # Go's json.Marshal escapes these for HTML safety
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def config_map_hash(cm):
    m = {"kind": "ConfigMap", "name": "", "data": cm.get("data", {})}
    if cm.get("binaryData"):
        m["binaryData"] = cm["binaryData"]
    h = hashlib.sha256(go_json(m).encode()).hexdigest()[:10]
    return "".join({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}.get(c, c) for c in h)


# ---- patches ----------------------------------------------------------------------------
def smp(base, patch, key=None):
    """Strategic merge of `patch` into `base` (both parsed YAML), returning the result."""
    if isinstance(patch, dict):
        if not isinstance(base, dict):
            return copy.deepcopy(patch)
        out = dict(base)
        for k, v in patch.items():
            if k.startswith("$"):
                raise RenderError(f"strategic-merge directive {k} is not supported")
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = smp(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(patch, list) and isinstance(base, list):
        mkey = MERGE_KEYS.get(key)
        if key == "ports":
            mkey = CONTAINER_PORT_KEY if any(CONTAINER_PORT_KEY in p for p in patch + base) \
                else SERVICE_PORT_KEY
        if mkey is None:
            return copy.deepcopy(patch)
        # kustomize's order: the patch's items first (merged), then the untouched ones
        by_key = {b.get(mkey): b for b in base}
        merged = [smp(by_key[p[mkey]], p, None) if p.get(mkey) in by_key else copy.deepcopy(p)
                  for p in patch]
        patched = {p.get(mkey) for p in patch}
        return merged + [copy.deepcopy(b) for b in base if b.get(mkey) not in patched]
    return copy.deepcopy(patch)


def pointer(path):
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json6902(obj, ops):
    obj = copy.deepcopy(obj)
    for op in ops:
        parts = pointer(op["path"])
        parent = obj
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(idx, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[idx] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[idx]
            else:
                raise RenderError(f"JSON patch op {kind!r} is not supported")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise RenderError(f"JSON patch replace: {op['path']} does not exist")
                parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[last]
            else:
                raise RenderError(f"JSON patch op {kind!r} is not supported")
    return obj


def selector_matches(sel, labels):
    for term in filter(None, (t.strip() for t in sel.split(","))):
        if "=" not in term or "!=" in term:
            raise RenderError(f"labelSelector {sel!r}: only k=v terms are supported")
        k, v = (x.strip() for x in term.replace("==", "=").split("=", 1))
        if labels.get(k) != v:
            return False
    return True


def targets(objs, target):
    unknown = set(target) - {"kind", "name", "labelSelector", "group", "version"}
    if unknown:
        raise RenderError(f"patch target fields {sorted(unknown)} are not supported")
    for o in objs:
        if "kind" in target and o["kind"] != target["kind"]:
            continue
        if "name" in target and o["metadata"]["name"] != target["name"]:
            continue
        if "group" in target or "version" in target:
            group, _, version = o["apiVersion"].rpartition("/")
            if target.get("group", group) != group or target.get("version", version) != version:
                continue
        if "labelSelector" in target and not selector_matches(
                target["labelSelector"], o["metadata"].get("labels") or {}):
            continue
        yield o


def apply_patches(objs, patches, base):
    for p in patches or []:
        if set(p) - {"path", "patch", "target"}:
            raise RenderError(f"patch fields {sorted(set(p) - {'path', 'patch', 'target'})} not supported")
        text = p["patch"] if "patch" in p else open(os.path.join(base, p["path"])).read()
        body = yaml.safe_load(text)
        if isinstance(body, list):
            if "target" not in p:
                raise RenderError("a JSON 6902 patch needs a target")
            hit = list(targets(objs, p["target"]))
            for o in hit:
                objs[objs.index(o)] = json6902(o, body)
        else:
            target = p.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
            hit = list(targets(objs, target))
            for o in hit:
                merged = smp(o, {k: v for k, v in body.items() if k not in ("metadata",)})
                meta = {k: v for k, v in body.get("metadata", {}).items() if k != "name"}
                merged["metadata"] = smp(o["metadata"], meta)
                objs[objs.index(o)] = merged


# ---- images (kustomize api/image and api/filters/imagetag) ----------------------------------
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}


def image_matched(image, name):
    # kustomize builds this regexp from the entry's name unescaped; names are restricted
    # (apply_images) to characters that mean themselves, and ".", which then matches any
    # character, as in kustomize.
    return re.fullmatch(name + r"(:[a-zA-Z0-9_.{}-]*)?(@[a-zA-Z][a-zA-Z0-9]*:[a-zA-Z0-9_.{}-]*)?",
                        image) is not None


def image_split(image):
    """kustomize image.Split: (name, tag, digest); a registry's :port is not a tag."""
    slash = image.find("/")
    base = slash if slash > 0 else 0
    search = image[base:]
    i_d, i_c = search.find("@"), search.find(":")
    if i_c < 0 and i_d < 0:
        return image, "", ""
    if i_d >= 0 and (i_d < i_c or i_c < 0):
        return image[:base + i_d], "", image[base + i_d + 1:]
    if i_d >= 0 and i_c >= 0:
        return image[:base + i_c], image[base + i_c + 1:base + i_d], image[base + i_d + 1:]
    return image[:base + i_c], image[base + i_c + 1:], ""


def new_image(image, entry):
    if not image_matched(image, entry["name"]):
        return image
    name, tag, digest = image_split(image)
    name = entry.get("newName") or name
    new_tag, new_digest = str(entry.get("newTag") or ""), entry.get("digest") or ""
    if new_tag and new_digest:
        tag, digest = new_tag, new_digest
    elif new_tag:
        tag, digest = new_tag, ""
    elif new_digest:
        tag, digest = "", new_digest
    return name + (":" + tag if tag else "") + ("@" + digest if digest else "")


def apply_images(objs, images):
    for entry in images or []:
        if set(entry) - IMAGE_FIELDS or "name" not in entry:
            raise RenderError(f"images entry {entry}: only {sorted(IMAGE_FIELDS)} are supported, name required")
        if not re.fullmatch(r"[A-Za-z0-9./_:-]+", entry["name"]):
            raise RenderError(f"images name {entry['name']!r}: a plain image name (no digest or pattern)")

        def walk(node):
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v)
                    if k in ("containers", "initContainers") and isinstance(v, list):
                        for c in v:
                            if isinstance(c, dict) and isinstance(c.get("image"), str):
                                c["image"] = new_image(c["image"], entry)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        for o in objs:
            if o.get("kind") != "CustomResourceDefinition":
                walk(o)


# ---- generators ---------------------------------------------------------------------------
def generate_config_maps(objs, gens, base, mergeable=None):
    """`mergeable`: the objects a behavior replace/merge may target. kustomize does not let
    a kustomization replace a ConfigMap generated by its own components (only one from its
    resources), and neither does this."""
    for g in gens or []:
        if set(g) - {"name", "files", "literals", "options", "behavior"}:
            raise RenderError(f"configMapGenerator fields {sorted(g)} not all supported")
        data = {}
        for f in g.get("files", []):
            key, _, path = f.rpartition("=")
            key = key or os.path.basename(path)
            full = os.path.normpath(os.path.join(base, path))
            if not full.startswith(os.path.normpath(base) + os.sep):
                raise RenderError(f"{f}: kustomize only loads files in or below {base}")
            with open(full) as fh:
                data[key] = fh.read()
        for lit in g.get("literals", []):
            k, _, v = lit.partition("=")
            data[k] = v
        opts = g.get("options") or {}
        if set(opts) - {"labels"}:
            raise RenderError(f"configMapGenerator options {sorted(opts)} not all supported")
        behavior = g.get("behavior", "create")
        pool = objs if mergeable is None else mergeable
        existing = [o for o in pool if o.get(GEN_KEY) == g["name"] and o["kind"] == "ConfigMap"]
        if behavior == "create":
            if existing:
                raise RenderError(f"ConfigMap {g['name']} generated twice (use behavior: replace/merge)")
            cm = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": g["name"]}, "data": data, GEN_KEY: g["name"]}
            if opts.get("labels"):
                cm["metadata"]["labels"] = dict(opts["labels"])
            objs.append(cm)
        elif behavior in ("replace", "merge"):
            if not existing:
                raise RenderError(f"ConfigMap {g['name']}: behavior {behavior} but none generated before")
            cm = existing[0]
            cm["data"] = data if behavior == "replace" else dict(cm.get("data", {}), **data)
            if opts.get("labels"):
                cm["metadata"].setdefault("labels", {}).update(opts["labels"])
        else:
            raise RenderError(f"configMapGenerator behavior {behavior!r}")


def pod_specs(o):
    if o["kind"] in POD_TEMPLATE_KINDS:
        yield o["spec"]["template"]["spec"]
    elif o["kind"] == "CronJob":
        yield o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif o["kind"] == "Pod":
        yield o["spec"]


def finish(objs):
    """Hash-suffix generated ConfigMaps and rewrite the references to them."""
    renamed = {}
    for o in objs:
        if GEN_KEY in o:
            ns = o["metadata"].get("namespace")
            new = f"{o.pop(GEN_KEY)}-{config_map_hash(o)}"
            renamed[(ns, o["metadata"]["name"])] = new
            o["metadata"]["name"] = new
    for o in objs:
        ns = o["metadata"].get("namespace")
        for spec in pod_specs(o):
            for v in spec.get("volumes", []):
                if "configMap" in v:
                    v["configMap"]["name"] = renamed.get((ns, v["configMap"]["name"]), v["configMap"]["name"])
                for src in v.get("projected", {}).get("sources", []):
                    if "configMap" in src:
                        src["configMap"]["name"] = renamed.get((ns, src["configMap"]["name"]),
                                                               src["configMap"]["name"])
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("configMapKeyRef")
                    if ref:
                        ref["name"] = renamed.get((ns, ref["name"]), ref["name"])
                for e in c.get("envFrom", []):
                    ref = e.get("configMapRef")
                    if ref:
                        ref["name"] = renamed.get((ns, ref["name"]), ref["name"])
    return objs


# ---- build ----------------------------------------------------------------------------------
def accumulate(d, want_kind):
    d = os.path.abspath(d)
    k = load_yaml_docs(kustomization_file(d))[0]
    kind = k.get("kind", "Kustomization")
    if kind != want_kind:
        raise RenderError(f"{d}: is a {kind}, expected a {want_kind}")
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(f"{d}: unsupported fields {sorted(unknown)} (use kustomize)")
    objs = []
    for r in k.get("resources", []):
        p = os.path.join(d, r)
        if os.path.isdir(p):
            objs.extend(accumulate(p, "Kustomization"))
        else:
            full = os.path.normpath(p)
            if not full.startswith(d + os.sep):
                raise RenderError(f"{d}: resource file {r} is outside the kustomization")
            objs.extend(load_yaml_docs(full))
    from_resources = list(objs)
    for c in k.get("components", []):
        objs = accumulate_component(os.path.join(d, c), objs)
    generate_config_maps(objs, k.get("configMapGenerator"), d, mergeable=from_resources)
    apply_patches(objs, k.get("patches"), d)
    if k.get("namespace"):
        for o in objs:
            o["metadata"]["namespace"] = k["namespace"]
    apply_images(objs, k.get("images"))
    return objs


def accumulate_component(c, objs):
    """A Component: its resources join the parent's, then its generators and patches run
    over everything accumulated so far (kustomize's order)."""
    c = os.path.abspath(c)
    k = load_yaml_docs(kustomization_file(c))[0]
    if k.get("kind") != "Component":
        raise RenderError(f"{c}: components must be kind Component")
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(f"{c}: unsupported fields {sorted(unknown)} (use kustomize)")
    objs = list(objs)
    for r in k.get("resources", []):
        objs.extend(load_yaml_docs(os.path.join(c, r)))
    generate_config_maps(objs, k.get("configMapGenerator"), c)
    apply_patches(objs, k.get("patches"), c)
    if k.get("namespace"):
        raise RenderError(f"{c}: namespace in a Component is not supported")
    apply_images(objs, k.get("images"))
    return objs


def build(d):
    return finish(accumulate(d, "Kustomization"))


def main(argv):
    args = argv[1:]
    out = None
    if "-o" in args:
        i = args.index("-o")
        out = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: render.py DIR [-o FILE]", file=sys.stderr)
        return 2
    try:
        objs = build(args[0])
    except (RenderError, OSError, KeyError, ValueError, IndexError) as e:
        print(f"render.py: {args[0]}: {e}", file=sys.stderr)
        return 1
    text = yaml.safe_dump_all(objs, sort_keys=True, default_flow_style=False, width=1000)
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
