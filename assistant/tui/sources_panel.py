"""The sources of the selected answer: path, date and snippet; Enter opens the text."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class SourcesPanel(Vertical):
    class Open(Message):
        def __init__(self, source) -> None:
            super().__init__()
            self.source = source

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sources: list = []

    def compose(self) -> ComposeResult:
        yield Label("Sources", classes="panel-title")
        yield OptionList(id="source-list")

    def show(self, sources) -> None:
        self.sources = list(sources)
        options = self.query_one(OptionList)
        options.clear_options()
        if not self.sources:
            options.add_option(Option(Text("No sources for this message.", style="dim"), disabled=True))
            return
        for i, source in enumerate(self.sources):
            # The file's name first and its folder beside the date: a narrow panel then
            # folds names rarely, and never a folder into the middle of a name.
            folder, _, name = source.path.rpartition("/")
            label = Text()
            label.append(f"{i + 1}. {name}\n", style="bold")
            label.append(f"{source.date or 'undated'}", style="italic")
            label.append(f" · {folder}/\n" if folder else "\n", style="dim")
            snippet = source.snippet if len(source.snippet) <= 160 else source.snippet[:159] + "…"
            label.append(snippet, style="dim")
            options.add_option(Option(label, id=f"source-{i}"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        index = int(event.option.id.removeprefix("source-"))
        self.post_message(self.Open(self.sources[index]))
