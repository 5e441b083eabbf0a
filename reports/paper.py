"""The paper's reported numbers (``reports/paper_numbers.toml``), for showing beside ours."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.toml")
#: The comparison columns the paper reports, in its order.
PAPER_COLUMNS = ("bbh", "gsm8k", "folio")


@dataclass(frozen=True)
class PaperNumbers:
    """Reported accuracies in %.

    Attributes:
        source: where the numbers come from.
        models: display name of each of the paper's task models, by Hugging Face id.
        comparison: ``{model id: {method: {column: accuracy}}}`` (columns: bbh, gsm8k, folio).
        transfer: ``{(source id, target id): {method: accuracy}}`` (5-task BBH averages).
    """

    source: str
    models: dict[str, str]
    comparison: dict[str, dict[str, dict[str, float]]]
    transfer: dict[tuple[str, str], dict[str, float]]

    def model_name(self, model: str) -> str:
        return self.models.get(model, model)


@lru_cache(maxsize=1)
def paper_numbers(path: Path = PAPER_NUMBERS) -> PaperNumbers:
    """The numbers in ``path`` (the packaged ``paper_numbers.toml`` by default)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    transfer = {(t["source"], t["target"]): dict(t["accuracy"]) for t in data["transfer"]}
    return PaperNumbers(source=data["source"], models=dict(data["models"]),
                        comparison={m: {k: dict(v) for k, v in methods.items()}
                                    for m, methods in data["comparison"].items()},
                        transfer=transfer)
