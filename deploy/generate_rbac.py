"""Write deploy/kubernetes/rbac.yaml from the checks' declared permissions (see studiodoctor.preflight.rbac).

Run: .venv/bin/python deploy/generate_rbac.py [--namespace studio] [--traefik-namespace kube-system] [--check]
--check exits 1 when the file on disk differs from what the checks need (for CI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "kubernetes" / "rbac.yaml"


def generate(namespace: str = "studio", traefik_namespace: str = "kube-system") -> str:
    from studiodoctor.preflight.rbac import manifests, render_yaml
    from studiodoctor.registry import default_registry

    return render_yaml(manifests(default_registry.load_plugins(), namespace, traefik_namespace))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespace", default="studio", help="Studio's namespace (kubernetes.namespace)")
    parser.add_argument("--traefik-namespace", default="kube-system", help="kubernetes.traefik_namespace")
    parser.add_argument("--check", action="store_true", help="only compare with the file on disk")
    args = parser.parse_args()
    text = generate(args.namespace, args.traefik_namespace)
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'STALE: run deploy/generate_rbac.py'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
