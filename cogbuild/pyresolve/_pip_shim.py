"""Run pip with environment markers evaluated for the target image instead of this host.

pip's --python-version/--platform options choose wheel tags for another platform, but pip still
evaluates markers such as `platform_machine == "x86_64"` against the interpreter running it. Every
marker evaluation in pip goes through its vendored packaging.markers.default_environment(), so
replacing that one function makes pip resolve as if it ran inside the image.

Usage: python -I _pip_shim.py '<marker environment as JSON>' <pip arguments...>
"""

import json
import sys


def main() -> int:
    environment = json.loads(sys.argv[1])
    from pip._vendor.packaging import markers

    # pip types the environment as a TypedDict; this is a dict of the same keys, for the target, not this host
    markers.default_environment = lambda: dict(environment)  # type: ignore[assignment,return-value]
    from pip._internal.cli.main import main as pip_main

    return pip_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
