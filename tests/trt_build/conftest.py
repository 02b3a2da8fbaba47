from tests.model.conftest import tokenizer  # noqa: F401 (fixture)
from tests.runtime.conftest import exported  # noqa: F401 (fixture)
