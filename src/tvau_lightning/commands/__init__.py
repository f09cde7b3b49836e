"""The people's commands of ``tvau`` (analyze, chat, cache-features, merge-lora, …): one module per command,
each parsing its arguments and calling the library — no logic of its own. ``tvau_lightning.cli`` lists them."""
