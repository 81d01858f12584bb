"""A predictor in the seed's style: cog.Model with @cog.input decorators."""

import cog


class HelloModel(cog.Model):
    def setup(self):
        self.prefix = "hello "

    @cog.input("name", type=str, help="Who to greet")
    @cog.input("times", type=int, default=1, min=1, max=3)
    @cog.input("mood", type=str, default="calm", options=["calm", "loud"])
    @cog.input("picture", type=cog.Path, default=None, help="Optional file")
    def predict(self, name, times, mood, picture):
        text = (self.prefix + name) * times
        if mood == "loud":
            text = text.upper()
        if picture is not None:
            text += " + " + picture.read_text()
        return text


class FileModel(cog.Model):
    @cog.input("text", type=str)
    def predict(self, text):
        out = cog.Path("/tmp") / "seed-output.txt"
        out.write_text(text[::-1])
        return out


class Identity(cog.Model):
    @cog.input("picture", type=cog.Path)
    def predict(self, picture):
        return picture
