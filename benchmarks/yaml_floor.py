"""The yardstick of a build: write the same objects with libyaml's dumper and nothing else.

Usage: ``python benchmarks/yaml_floor.py OBJECTS.pickle OUTPUT_DIR``. The
pickle holds ``[(relative path, object), ...]`` of one build; each object is
dumped with PyYAML's C dumper (sorted keys, block style) into its file. A
build cannot be faster than this: it must at least write its objects.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import yaml


def main() -> None:
    objects = pickle.loads(Path(sys.argv[1]).read_bytes())
    out = Path(sys.argv[2])
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    for path, data in objects:
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            yaml.dump(data, Dumper=dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=120),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
