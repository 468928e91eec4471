"""mvsep-watch: a watch-folder daemon for the MVSEP music-separation API."""

__version__ = "0.1.0"
