"""reorder: rewrite scored training shards in STR, SAW or baseline order."""

__version__ = "0.1.0"
