"""Progress a person can read (diffusion/progress.py): bars on a terminal, a few plain lines in a log."""
import io

from tqdm.auto import tqdm

from dualdiff_ros.diffusion import progress
from dualdiff_ros.diffusion.progress import LineProgress, progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_one_plain_line_for_short_work():
    out = io.StringIO()
    bar = progress_bar(range(40), desc="fine-tune", file=out)
    assert isinstance(bar, LineProgress)
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")
    text = out.getvalue()
    assert seen == list(range(40)) and "\r" not in text
    assert text.count("\n") == 1 and text.startswith("fine-tune: 100% 40/40 it in ") and "loss=0.0250" in text


def test_longer_work_gets_a_line_per_quarter(monkeypatch):
    monkeypatch.setattr(progress, "MIN_GAP_SECONDS", 0.0)
    out = io.StringIO()
    bar = progress_bar(total=100, desc="navigate_to", unit="task", file=out)
    for _ in range(10):
        bar.update(10)
    bar.close()
    bar.close()  # a second close prints nothing
    lines = out.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "navigate_to:  30% 30/100 task", "navigate_to:  50% 50/100 task", "navigate_to:  80% 80/100 task",
        "navigate_to: 100% 100/100 task"]


def test_a_resumed_run_counts_from_where_it_was():
    out = io.StringIO()
    list(progress_bar(range(5, 10), desc="general", total=10, initial=5, file=out))
    assert out.getvalue().startswith("general: 100% 10/10 it")


def test_a_terminal_gets_the_tqdm_bar_and_disabled_prints_nothing():
    assert isinstance(progress_bar(range(3), desc="x", file=Terminal()), tqdm)
    out = io.StringIO()
    assert list(progress_bar(range(3), desc="x", disable=True, file=out)) == [0, 1, 2]
    assert out.getvalue() == ""
