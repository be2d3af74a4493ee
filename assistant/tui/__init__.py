"""The Textual app behind `memex chat`: chat with your notes, see sources, reflect on a period."""
