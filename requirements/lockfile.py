"""The lock files' helper for the Makefile (standard library only, Python 3.11+).

    python requirements/lockfile.py check          fail if a lock is missing or stale
    python requirements/lockfile.py platform       fail unless this is Python 3.11, Linux x86_64
    python requirements/lockfile.py stamp          write pyproject.toml's digest into the locks
    python requirements/lockfile.py diff OLD_DIR   print the pins that changed since OLD_DIR

Each lock starts with the SHA-256 of pyproject.toml's dependency lists (requires-python,
dependencies, optional-dependencies), written by `make lock`. Any change to those lists, or a
lock written by hand or by pip-compile alone, no longer matches and `check` fails.
"""

import hashlib
import json
import platform
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCKS = [ROOT / "requirements" / "test.txt", ROOT / "requirements" / "bench.txt"]
MARK = "# pyproject.toml dependencies sha256: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def digest() -> str:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lists = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    text = json.dumps(lists, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def recorded(lock: Path) -> str | None:
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(MARK):
            return line[len(MARK) :].strip()
    return None


def check() -> int:
    want = digest()
    problems = []
    for lock in LOCKS:
        name = lock.relative_to(ROOT)
        if not lock.exists():
            problems.append(f"{name} is missing")
        elif recorded(lock) is None:
            problems.append(f"{name} has no '{MARK.strip()}' line: it was not made by `make lock`")
        elif recorded(lock) != want:
            problems.append(
                f"{name} is stale: pyproject.toml's dependency lists changed after it was made"
            )
    if problems:
        print("The lock does not match pyproject.toml's dependency lists:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("Run `make lock`, then commit requirements/ with pyproject.toml.", file=sys.stderr)
        return 1
    return 0


def check_platform() -> int:
    here = (sys.version_info[:2], sys.platform, platform.machine())
    if here != ((3, 11), "linux", "x86_64"):
        print(
            f"The lock is made for Python 3.11 on Linux x86_64, not Python "
            f"{here[0][0]}.{here[0][1]} on {here[1]} {here[2]}: run `make lock` there "
            f"(PY=python3.11 for the virtualenv).",
            file=sys.stderr,
        )
        return 1
    return 0


def stamp() -> int:
    line = MARK + digest()
    for lock in LOCKS:
        kept = [x for x in lock.read_text(encoding="utf-8").splitlines() if not x.startswith(MARK)]
        lock.write_text("\n".join([line, *kept]) + "\n", encoding="utf-8")
    return 0


def pins(lock: Path) -> dict[str, str]:
    if not lock.exists():
        return {}
    found = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def diff(old_dir: Path) -> int:
    for lock in LOCKS:
        before, after = pins(old_dir / lock.name), pins(lock)
        changes = [
            f"{name}: {before.get(name, '(new)')} -> {after.get(name, '(removed)')}"
            for name in sorted(before.keys() | after.keys())
            if before.get(name) != after.get(name)
        ]
        print(f"{lock.relative_to(ROOT)}:", *changes or ["no version changed"], sep="\n  ")
    return 0


def main(argv: list[str]) -> int:
    match argv:
        case ["check"]:
            return check()
        case ["platform"]:
            return check_platform()
        case ["stamp"]:
            return stamp()
        case ["diff", old_dir]:
            return diff(Path(old_dir))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
