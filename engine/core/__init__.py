"""The pure core: an event and `now` in, decisions out. No I/O, no clock reads."""
