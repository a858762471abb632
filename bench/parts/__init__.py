"""The benchmark parts; each module has ``run(ctx) -> list[Row]`` (see ``bench.__main__``)."""
