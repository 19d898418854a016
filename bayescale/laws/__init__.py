"""Stage 1: law files → Law (catalogue), the formula compiler, prior expressions."""
