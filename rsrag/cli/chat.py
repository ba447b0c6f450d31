"""`rsrag chat`: a conversation with a library in the terminal (the same state as the service's
`conversation_id`): follow-ups resolve against what was said and shown.

    > :image harbor.jpg find images like this
    > describe the second one
    > is there a port near it?
    > :quit
"""

from __future__ import annotations

import shlex
from typing import Optional

import typer

from rsrag.cli.common import LIBRARY_OPTION, ROOT_OPTION, user_errors

HELP = ":image PATH [question]  ask about an image;  :reset  forget the conversation;  :quit  leave"


def chat_command(
    index: str = LIBRARY_OPTION,
    root: Optional[str] = ROOT_OPTION,
    generator: str = typer.Option("extractive", "--generator", "-g", help="extractive, openai, ollama, hf, caption or vqa."),
    url: Optional[str] = typer.Option(None, "--url", help="openai / ollama: server URL."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (openai, ollama) or local folder (hf)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai: variable holding the API key."),
    k: int = typer.Option(5, "--k", help="Evidence items per answer."),
) -> None:
    """Talk to a library: questions, images and follow-ups in one conversation (:image PATH, :reset, :quit)."""
    from rsrag.index import Library
    from rsrag.rag import Answer, AskOptions, Conversation

    cfg = {key: value for key, value in (("url", url), ("model", model), ("api_key_env", api_key_env)) if value}
    options = AskOptions(generator=generator, k=k, generator_config=cfg)
    with user_errors():
        library = Library.open(root, index)
    conversation = Conversation()
    typer.secho(HELP, dim=True, err=True)
    while True:
        try:
            line = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:
            continue
        if line in (":quit", ":q", ":exit"):
            break
        if line == ":reset":
            conversation = Conversation()
            continue
        image = None
        if line.startswith(":image"):
            parts = shlex.split(line)
            if len(parts) < 2:
                typer.secho("usage: :image PATH [question]", err=True)
                continue
            image, line = parts[1], " ".join(parts[2:])
        try:
            with user_errors():  # one error line; the conversation goes on
                for piece in conversation.stream(library, line or None, image, options):
                    if isinstance(piece, Answer):
                        typer.echo("")
                        for c in piece.citations:
                            typer.secho(f"  [{c['n']}] {c['chunk_id']} ({c.get('name')})", dim=True)
                    else:
                        typer.echo(piece, nl=False)
        except typer.Exit:
            continue
