"""The `rsrag` command line: one typer app, with a module per command or command group.

    rsrag index build|add|delete|info|list   (index.py)      rsrag search      (search.py)
    rsrag ask                                (ask.py)        rsrag knowledge   (knowledge.py)
    rsrag chat                               (chat.py)       rsrag localize, rsrag ground (localize.py)
    rsrag change, change-search, timeline    (change.py)
    rsrag caption, rsrag vqa                 (models.py)     rsrag serve, rsrag router (serve.py)
    rsrag eval retrieval|zeroshot|caption|vqa|qa (eval.py)   rsrag train       (train.py)
    rsrag eval dialogue|abstain|match|localize|change          rsrag encoders list (encoders.py)
    rsrag eval resolution                                     rsrag data prepare (data.py)

Owns parsing options, printing tables and JSON, and exit codes: every command turns the errors a
user can act on into one `error: ...` line and exit status 2 through the one wrapper
(`common.user_errors`), and the evaluation commands write their JSON results through the one writer
(`common.report` / `common.write_result`). No other package prints or parses a command line.

May import: everything in rsrag (the command line is the top layer); nothing in rsrag imports it.
Modules load only typer at import time and import the heavy packages inside the commands, so
`rsrag --help` stays fast.
"""

from __future__ import annotations

import typer

from rsrag.cli.ask import ask_command
from rsrag.cli.change import change_command, change_search_command, timeline_command
from rsrag.cli.chat import chat_command
from rsrag.cli.data import app as data_app
from rsrag.cli.encoders import app as encoders_app
from rsrag.cli.eval import app as eval_app
from rsrag.cli.index import app as index_app
from rsrag.cli.knowledge import app as knowledge_app
from rsrag.cli.localize import ground_command, localize_command
from rsrag.cli.models import caption_command, vqa_command
from rsrag.cli.search import search_command
from rsrag.cli.serve import router_command, serve_command
from rsrag.cli.train import app as train_app

app = typer.Typer(help="rsrag: multimodal RAG and vector search for remote-sensing imagery.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")
app.add_typer(encoders_app, name="encoders")
app.add_typer(index_app, name="index")
app.command("search")(search_command)
app.command("ask")(ask_command)
app.command("chat")(chat_command)
app.add_typer(knowledge_app, name="knowledge")
app.command("caption")(caption_command)
app.command("vqa")(vqa_command)
app.command("serve")(serve_command)
app.command("router")(router_command)
app.command("change")(change_command)
app.command("change-search")(change_search_command)
app.command("timeline")(timeline_command)
app.command("localize")(localize_command)
app.command("ground")(ground_command)


def main() -> None:
    """The `rsrag` console script."""
    app()
