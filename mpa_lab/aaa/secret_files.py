"""``python -m mpa_lab.aaa.secret_files TOPOLOGY``: a fresh shared secret in
every ``domains.ID.radius.servers[].secret_file`` of the topology that does
not exist yet (0600, directories created), one secret per domain; files
already there are left as they are.

For a controller run without the lab (docker-compose.yml's ``controller``
service): the controller exits 2 when a secret file it needs is missing.
Secrets made here are shared with no RADIUS server, so pre-authentication
is refused (``pana_aaa_unreachable``, or a RADIUS answer under another
secret dropped) until the operator gives the real ones (docs/docker.md).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from mpa_lab.aaa.pki import write_private

SECRET_BYTES = 24    # 32 characters; config_radius takes 16 to 128


def write_missing_secrets(topology) -> list[str]:
    """The secret files written, in order."""
    written = []
    for _, domain in sorted(topology.domains.items()):
        if domain.radius is None:
            continue
        secret = secrets.token_urlsafe(SECRET_BYTES).encode() + b"\n"
        for entry in domain.radius.servers:
            path = Path(entry.secret_file)
            if path.exists():
                continue
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(path, secret)
            written.append(str(path))
    return written


def main(argv=None) -> int:
    from mpa_sdn.config import load_or_exit
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mpa_lab.aaa.secret_files TOPOLOGY", file=sys.stderr)
        return 2
    for path in write_missing_secrets(load_or_exit(args[0])):
        print(f"secret_files: a new RADIUS shared secret in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
