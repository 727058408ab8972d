"""Training curves from metrics.csv: what is read, what is refused, what is drawn."""
import pytest

from repro import grid
from repro.config import RunSpec
from repro.errors import UserError
from repro.report import curves

HEADER = "epoch,train_loss,train_acc,val_loss,val_acc,best,seconds\n"


def _epochs(val_losses):
    """metrics.csv rows as train_run writes them; ``best`` where the val loss improved."""
    rows, best = [], float("inf")
    for epoch, val in enumerate(val_losses, start=1):
        rows.append(f"{epoch},{2.5 / epoch},{10 * epoch},{val},{9 * epoch},{val < best},0.1")
        best = min(best, val)
    return HEADER + "\n".join(rows) + "\n"


def test_read_metrics_and_the_kept_epoch(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(_epochs([2.0, 1.5, 1.7, 1.8]))
    epochs = curves.read_metrics(path)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert [e["best"] for e in epochs] == [True, True, False, False]
    assert curves.kept_epoch(epochs) == 2  # early stopping kept epoch 2's weights


@pytest.mark.parametrize("text, words", [
    ("", "no epochs"),
    ("epoch,train_loss\n1,2.0\n", "no column 'train_acc'"),
    (HEADER + "1,nan,10,2.0,9,True,0.1\n", "epoch 1 is not a row of finite numbers"),
    (HEADER + "2,2.0,10,2.0,9,True,0.1\n", "numbered 1"),
])
def test_a_damaged_metrics_file_is_named_with_its_fix(tmp_path, text, words):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=words) as error:
        curves.read_metrics(path)
    assert str(path) in str(error.value) and "--forcerun" in str(error.value)


def test_a_figure_per_table_with_every_run(tmp_path, paper_config):
    paper_config["grid"]["seeds"] = [0, 1]
    table = grid.tables(paper_config)[2]
    metrics = {}
    for index, run in enumerate(table.runs()):
        path = tmp_path / f"{index}.csv"
        path.write_text(_epochs([2.0, 1.5 + index / 100, 1.7][: 2 + index % 2]))
        metrics[run] = curves.read_metrics(path)
    outputs = [tmp_path / "curves.png", tmp_path / "curves.pdf"]
    curves.plot_curves(table, metrics, "embedded MNIST", outputs)
    assert all(out.stat().st_size > 1000 for out in outputs)
    del metrics[RunSpec("mnist", "at-pgd", 1)]
    with pytest.raises(ValueError, match="no training metrics for"):
        curves.plot_curves(table, metrics, "embedded MNIST", outputs)
