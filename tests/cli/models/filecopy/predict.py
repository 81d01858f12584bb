import tempfile

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.prefix = b"copied:"

    def predict(self, image: Path = Input(description="Any file"),
                upper: bool = Input(description="Upper-case the text", default=False)) -> Path:
        data = image.read_bytes()
        out = Path(tempfile.mkdtemp()) / f"out{image.suffix}"
        out.write_bytes(self.prefix + (data.upper() if upper else data))
        return out
