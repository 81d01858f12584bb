"""OCI image layout on disk and the OCI distribution client (push, pull, login): OCI only, nothing of Cog.

Map of the package:
    layout.py          the local store: an OCI image layout, atomic writes, verified reads
    reference.py       `host/repo:tag@sha256:…` parsing, Docker defaults, loopback detection
    auth.py            credentials (Docker config, credential helpers) and Basic/Bearer challenges (stdlib only)
    wire.py            one HTTP/1.1 exchange on a socket: the light client's and token requests' transport
    light.py           questions only (manifest HEAD/GET, blob HEAD) without loading requests: unchanged
                       pushes and cache lookups
    http_policy.py     one retry/timeout policy for every HTTP fetch (registry and downloads); same_origin
    client.py          one registry's HTTP API: auth, retries with backoff, one-sentence errors (errors.refusal)
    transfer.py        one blob: HEAD/mount/upload (resumable chunks) and verified download
    remote.py          push_image / pull_image: whole images and indexes, manifests as exact bytes
    referrers.py       artifacts attached to an image, referrers API or fallback tag (what they hold:
                       cogbuild/lock_artifacts.py)
    attachments.py     sigstore attachments (`sha256-<hex>.sig` / `.att` tags)
    login.py           `cogbuild login`: check credentials, store them like `docker login`
    blob_locations.py  which repositories hold a blob, for cross-repository mounts
"""
