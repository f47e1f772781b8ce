"""Results of a recipe run: collected from the exp dir, written as Markdown and PNG plots."""
