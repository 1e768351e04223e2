"""CSV output shared by the benchmark tools."""
import csv
import dataclasses
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

Row = Union[Mapping[str, Any], Any]  # a dict or a dataclass instance


def _as_dict(row: Row) -> Mapping[str, Any]:
    return dataclasses.asdict(row) if dataclasses.is_dataclass(row) else row


def write_csv(path: str, rows: Iterable[Row], fieldnames: Optional[Sequence[str]] = None) -> None:
    """Write ``rows`` (dataclass instances or dicts) to ``path`` with a header line.

    Args:
        path: The CSV file to (over)write.
        rows: The rows; at least one.
        fieldnames: The columns in order. Defaults to the first row's fields; a
            row missing a column leaves its cell empty.
    """
    dicts = [_as_dict(r) for r in rows]
    if not dicts:
        raise ValueError(f'write_csv: rows must not be empty (writing {path})')
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames or dicts[0]))
        writer.writeheader()
        writer.writerows(dicts)
