"""cogbuild push: build the model if it changed (instant from cache otherwise), then push it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from ..push_record import (DEFAULT_COMPRESSION, PushRecord, fingerprint, push_options, read_record, record_name,
                           record_store, unchanged_push, write_record)
from ..layers.descriptor import Descriptor
from ..registry.reference import Reference, parse_reference
from ..settings import Settings, settings_of
from ..ui import progress_printer, result
from .options import cache_option, secret_option

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from ..project import Project
    from ..registry.layout import Layout


@click.command("push")
@click.argument("ref", required=False)
@click.option("-f", "--file", "cog_yaml", type=click.Path(), help="Path to cog.yaml (default: ./cog.yaml).")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
@click.option("--compression", default=DEFAULT_COMPRESSION, show_default=True,
              help="gzip[:LEVEL] (libdeflate), gzip-zlib[:LEVEL] (the system zlib, as before), zstd[:LEVEL] or none.")
@click.option("--sign-key", type=click.Path(path_type=Path),
              help="Sign each pushed manifest with this private key (from `cogbuild keygen` or cosign; default "
                   "$COGBUILD_SIGN_KEY); "
                   "the passphrase comes from COGBUILD_SIGN_PASSWORD or COSIGN_PASSWORD, else a prompt.")
@secret_option
@cache_option
@click.pass_context
def command(ctx: click.Context, ref: str | None, cog_yaml: str | None, insecure: bool, compression: str,
            sign_key: Path | None, secrets: tuple[str, ...], cache: str | None) -> None:
    """Build the model in the current directory and push it to REF; print REF@sha256:… (its version ID).

    Without REF, the image goes where cog.yaml's `image:` (or `model:` repository, as :latest) says.

    \b
    Examples:
      cogbuild push 127.0.0.1:5000/hello:v1
      cogbuild push ghcr.io/me/my-model:latest -f models/a/cog.yaml
      cogbuild push                             # to cog.yaml's image: or model:
      cogbuild push 127.0.0.1:5000/hello:v1 --cache 127.0.0.1:5000/cache   # layers mounted, not uploaded
      cogbuild push 127.0.0.1:5000/hello:v1 --sign-key cogbuild.key
    """
    # The key is opened before the build, so a wrong passphrase costs nothing.
    settings = settings_of(ctx)
    sign_key = sign_key or settings.sign_key
    key = _open_key(sign_key, settings.sign_password) if sign_key else None
    options = push_options(compression, cache, secrets)
    records, name = record_store(settings), record_name(cog_yaml, ref, insecure)
    previous = read_record(records, name)
    if key is None and (pushed := unchanged_push(previous, settings, options, insecure)):
        result(pushed)  # built and pushed from these inputs
        return
    from ..project import Project  # cog.yaml's parser, the lock, and then the build modules: for a changed image

    project = Project.load(cog_yaml)
    ref = ref or project.config.default_image_name
    if not ref:
        raise UsageError("name where to push: `cogbuild push REF`, or `image:` / `model:` in cog.yaml")
    reference = parse_reference(ref)
    root, outside = project.config.root, _outside_inputs(project)
    before, files = fingerprint(root, outside, ref, settings, options, previous.files if previous else {})
    record = _build_and_push(ctx, settings, project, reference, insecure, compression, secrets, cache, key, sign_key)
    after, record.files = fingerprint(root, outside, ref, settings, options, files)
    if after == before:  # nothing changed while the build ran (a first push locks, changing cog.lock)
        record.root, record.ref, record.outside, record.fingerprint = str(root), ref, outside, after
        write_record(records, name, record)
    result(f"{ref.split('@')[0]}@{record.descriptor.digest}")


def _outside_inputs(project: Project) -> list[str]:
    """Files and directories cog.yaml names outside the model directory (requirements, local weights)."""
    from ..plan import local_weight_source

    root = project.config.root.resolve()
    paths = project.config.input_files() + [local_weight_source(root, weight, source)
                                            for weight in project.config.weights for source in weight.sources]
    return sorted({str(p.resolve()) for p in paths if not p.resolve().is_relative_to(root)})


def _build_and_push(ctx: click.Context, settings: Settings, project: Project, reference: Reference, insecure: bool,
                    compression: str, secrets: tuple[str, ...], cache: str | None,
                    key: EllipticCurvePrivateKey | None, sign_key: Path | None) -> PushRecord:
    """Build (instantly from the layer cache when nothing changed) and push; what was pushed, to record."""
    from ..cache import mount_hints_dir
    from ..lock_artifacts import attach_lock_and_sbom
    from ..project import open_store
    from ..registry.remote import push_image, pushed_names, variant_tag
    from ..ui import blob_progress
    from .build import build_project, parse_compression

    progress = progress_printer(ctx)
    created = settings.source_date_epoch()  # the image and its SBOM are dated alike
    _, outcome = build_project(project, None, None, None, parse_compression(compression), progress,
                               secrets=secrets, cache=cache, insecure=insecure, settings=settings)
    progress(f"pushing to {reference.registry}/{reference.repository}")
    with blob_progress(f"pushing {reference.repository}", ctx) as bar:
        store = open_store(settings.store_root)
        push_image(store, outcome.descriptor, reference, insecure=insecure, variants=outcome.variants,
                   progress=bar, hints=mount_hints_dir(settings.cache_root))
    # Reviewers and scanners find what went into the image next to it: the lock and an SBOM made from it.
    attached = attach_lock_and_sbom(reference, outcome.descriptor, project.lock_path.read_bytes(),
                                    outcome.lock.artifacts(), insecure=insecure, created=created)
    if key:
        tagged = [(reference, outcome.descriptor)] + [(reference.with_tag(variant_tag(reference.tag, suffix)), desc)
                                                      for suffix, desc in outcome.variants.items()]
        for name, desc in tagged:
            _sign_and_attest(store, project, name, desc, key, insecure)
        progress(f"signed {len(tagged)} tag(s) and their provenance with {sign_key}")
    return PushRecord("", "", [], "", {}, dict(pushed_names(reference, outcome.descriptor, outcome.variants)),
                      outcome.descriptor.to_json(), [d.digest for d in attached])


def _open_key(path: Path, passphrase: str | None) -> EllipticCurvePrivateKey:
    from ..signing import load_private_key, read_passphrase  # cryptography loads only when signing

    return load_private_key(path, read_passphrase(f"open {path}", passphrase))


def _sign_and_attest(store: Layout, project: Project, ref: Reference, top: Descriptor, key: EllipticCurvePrivateKey,
                     insecure: bool) -> None:
    """A signature for each manifest under `top`, and a signed provenance statement for `top`."""
    from ..lock import read_lock
    from ..provenance import attest_image, code_layer_digests, provenance_statement
    from ..registry.remote import plan_from_layout
    from ..signing import sign_manifests

    manifests = list(reversed(plan_from_layout(store, top).manifests))  # the top one first
    sign_manifests(ref, manifests, key, insecure=insecure)
    statement = provenance_statement(ref.name, [m.digest for m in manifests], project.config.path,
                                     code_layer_digests(store, top), read_lock(project.lock_path))
    attest_image(ref, top, statement, key, insecure=insecure)
