import os
import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, release: str) -> str:
        """Print, then wait until the file `release` exists: lets a test see logs while it runs."""
        print("waiting for the release file", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
        return "released" if os.path.exists(release) else "gave up"
