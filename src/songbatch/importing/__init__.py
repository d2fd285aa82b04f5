"""`songbatch import`: a book (EPUB, Markdown, plain text) -> an audiobook manifest and one
text file per chapter, ready to edit and render."""
