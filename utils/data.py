"""The sha256 manifest of everything shipped in data/ and images/.

python -m utils.data          rewrite data/MANIFEST.sha256
python -m utils.data --check  verify it (exit 1 and name each file that differs)
"""
import argparse
import hashlib
import sys

from .core import REPO_ROOT

MANIFEST = REPO_ROOT / "data" / "MANIFEST.sha256"
SHIPPED = ("data", "images")
BUDGET_MIB = 30


def shipped_files():
    """Every file under data/ and images/ except the manifest, as repo-relative POSIX paths."""
    files = []
    for top in SHIPPED:
        for path in sorted((REPO_ROOT / top).rglob("*")):
            if path.is_file() and path != MANIFEST and "__pycache__" not in path.parts:
                files.append(path.relative_to(REPO_ROOT).as_posix())
    return files


def sha256(path):
    digest = hashlib.sha256()
    with open(REPO_ROOT / path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest():
    lines = [f"{sha256(p)}  {p}\n" for p in shipped_files()]
    MANIFEST.write_text("".join(lines))
    return len(lines)


def read_manifest():
    if not MANIFEST.exists():
        raise FileNotFoundError(f"{MANIFEST.relative_to(REPO_ROOT)} is missing: run python -m utils.data")
    entries = {}
    for number, line in enumerate(MANIFEST.read_text().splitlines(), 1):
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"data/MANIFEST.sha256 line {number} is not '<sha256>  <path>': {line!r}")
        entries[path] = digest
    return entries


def check_manifest():
    """A list of problems (empty when every shipped file is listed with its hash)."""
    listed, present = read_manifest(), set(shipped_files())
    problems = [f"not in the manifest: {p}" for p in sorted(present - set(listed))]
    problems += [f"listed but missing: {p}" for p in sorted(set(listed) - present)]
    problems += [f"hash differs: {p}" for p in sorted(present & set(listed)) if sha256(p) != listed[p]]
    return problems


def shipped_mib():
    return sum((REPO_ROOT / p).stat().st_size for p in shipped_files()) / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify instead of rewriting")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_manifest()
        for p in problems:
            print(p)
        print(f"{'FAILED' if problems else 'ok'}: {len(read_manifest())} files, "
              f"{shipped_mib():.1f} MiB of {BUDGET_MIB} MiB")
        return 1 if problems else 0
    count = write_manifest()
    print(f"wrote data/MANIFEST.sha256: {count} files, {shipped_mib():.1f} MiB of {BUDGET_MIB} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
