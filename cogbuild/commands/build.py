"""cogbuild build: the model directory's image into the local store (an OCI image layout)."""

from __future__ import annotations

import click

from ..build import BuildOptions, BuildResult, build
from ..errors import UsageError
from ..images import fetch_cached_layers, host_platform, parse_destination
from ..layers.descriptor import Descriptor
from ..layers.tarball import Compression
from ..lock import Lock, write_lock
from ..project import Project, open_store, parse_platforms
from ..registry.archive import export_layout, image_blobs, write_archive
from ..registry.layout import Layout
from ..settings import Settings, settings_of
from ..shared_cache import cache_repository
from ..ui import progress_printer, result
from .options import cache_option, secret_option


def build_project(project: Project, tag: str | None, platforms: list[str] | None, variants: list[str] | None,
                  compression: Compression, progress, bytecode: bool = True, secrets: tuple[str, ...] = (),
                  update_run: bool = False, cache: str | None = None,
                  insecure: bool = False, settings: Settings | None = None) -> tuple[str, BuildResult]:
    settings = settings or settings_of()
    epoch = settings.source_date_epoch()  # a bad SOURCE_DATE_EPOCH fails before any work
    repository = cache_repository(cache or settings.cache_repo, insecure)  # checked before any work
    lock = project.ensure_lock(platforms, progress, settings=settings)
    store = open_store(settings.store_root)
    store.write_blob(project.lock_path.read_bytes())  # `show` finds the lock by the image's lock-digest label

    def save_lock(recorded: Lock) -> str:  # build.run layers or built wheels were recorded: cog.lock changed
        write_lock(recorded, project.lock_path)
        store.write_blob(project.lock_path.read_bytes())
        progress(f"recorded build outputs (build.run layers, built wheels) in {project.lock_path.name}")
        return project.lock_digest()

    options = BuildOptions(platforms=platforms, variants=variants, compression=compression, bytecode=bytecode,
                           update_run=update_run, save_lock=save_lock, cache_repository=repository,
                           source_date_epoch=epoch, debian_snapshot=settings.debian_snapshot,
                           cache_root=settings.cache_root)
    if secrets:
        from ..runsteps import parse_secrets

        options.secrets = parse_secrets(list(secrets))
    outcome = build(project.config, lock, project.lock_digest(), store, options, progress)
    name = tag or project.image_name
    store.tag(name, outcome.descriptor)
    for variant, desc in outcome.variants.items():
        store.tag(f"{name}-{variant}", desc)
    return name, outcome


@click.command("build")
@click.option("-f", "--file", "cog_yaml", type=click.Path(), help="Path to cog.yaml (default: ./cog.yaml).")
@click.option("-t", "--tag", help="Name in the local store (default: <directory>:latest).")
@click.option("--variant", type=click.Choice(["cpu", "gpu", "all"]), default=None,
              help="Which variant to build (default: what the lock has).")
@click.option("--platform", "platform", help="Comma-separated, e.g. linux/amd64,linux/arm64.")
@click.option("--compression", default="gzip", show_default=True, help="gzip[:LEVEL] (libdeflate), gzip-zlib[:LEVEL] (the system zlib, as before), zstd[:LEVEL] or none.")
@click.option("-o", "--output", help="Also write the image to DIR or oci:DIR (OCI layout), oci-archive:FILE or "
                                     "docker-archive:FILE (for `podman load` / `docker load`; this host's "
                                     "platform, or the one --platform names).")
@click.option("--bytecode/--no-bytecode", default=True, show_default=True,
              help="Byte-compile Python files with the image's own interpreter (images for this host's "
                   "architecture only).")
@click.option("--use-cog-base-image/--no-use-cog-base-image", "use_cog_base_image", default=None,
              help="Accepted for Cog's scripts; no effect: cogbuild composes its own base layers (OS, Python, "
                   "CUDA wheels), each shared between models like Cog's base images.")
@click.option("--separate-weights", is_flag=True,
              help="Accepted for Cog's scripts; no effect: weights (cog.yaml `weights:` and files over 10 MB) "
                   "always get layers of their own.")
@secret_option
@cache_option
@click.option("--update-run", is_flag=True,
              help="Accept build.run outputs that differ from the digests cog.lock records, and record them.")
@click.argument("directory", required=False, default=".")
@click.pass_context
def command(ctx: click.Context, cog_yaml: str | None, tag: str | None, variant: str | None,
            platform: str | None, compression: str, output: str | None, bytecode: bool,
            use_cog_base_image: bool | None, separate_weights: bool, secrets: tuple[str, ...], cache: str | None,
            update_run: bool, directory: str) -> None:
    """Build the model in DIRECTORY into an OCI image, without Docker; print its digest.

    The image is named TAG, else cog.yaml's `image:` (or `model:` repository), else <directory>:latest.

    \b
    Examples:
      cogbuild build                       # ./cog.yaml, linux/amd64
      cogbuild build examples/hello -t hello:dev
      cogbuild build --platform linux/amd64,linux/arm64
      cogbuild build --secret id=hf,src=$HOME/.hf-token   # for a build.run step that mounts it
      cogbuild build --cache registry.example.com/team/cogbuild-cache   # share layers between CI runners
    """
    project = Project.load(cog_yaml, directory)
    variants = None if variant in (None, "all") else [variant]
    name, outcome = build_project(project, tag, parse_platforms(platform), variants,
                                  parse_compression(compression), progress_printer(ctx), bytecode, secrets,
                                  update_run, cache, settings=settings_of(ctx))
    if output:
        write_output(open_store(settings_of(ctx).store_root), output, name, outcome.descriptor,
                     parse_platforms(platform), variants)
    progress_printer(ctx)(f"Image built as {name}")
    result(outcome.descriptor.digest)


def parse_compression(text: str) -> Compression:
    try:
        return Compression.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def write_output(store: Layout, output: str, name: str, desc: Descriptor, platforms: list[str] | None = None,
                 variants: list[str] | None = None) -> None:
    """Export the built image to `build -o`'s destination.

    A docker-archive holds one manifest, chosen like `cogbuild run` chooses: this host's platform, unless
    the build named exactly one platform, and the cpu variant unless the build was gpu only."""
    fetch_cached_layers(store, image_blobs(store, desc))
    destination = parse_destination(output)
    if destination.kind == "layout":
        export_layout(store, desc, name, destination.path)
        return
    platform = platforms[0] if platforms and len(platforms) == 1 else host_platform()
    variant = variants[0] if variants and len(variants) == 1 else "cpu"
    write_archive(store, desc, name, destination.path, docker=destination.kind == "docker-archive",
                  platform=platform, variant=variant)
