import os
import time

from cog import BasePredictor, ConcatenateIterator


class Predictor(BasePredictor):
    def predict(self, release: str) -> ConcatenateIterator[str]:
        """Yield a token, then wait (60 s at most) until the file `release` exists: a test sees it stream."""
        yield "first"
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield " second"
